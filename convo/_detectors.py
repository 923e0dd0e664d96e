"""The built-in detectors of :mod:`convo.redact`: one regex per shape, and a check per regex.

A pattern finds candidates quickly; its check (a checksum, a date, a network's prefix, a valid
address) turns away the lookalikes, so a candidate becomes a finding only when both agree. The
kinds and their rules are described in :mod:`convo.redact`.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import re
from collections.abc import Callable

__all__ = ["BUILTIN", "KINDS", "Check", "Span", "ascii_table", "cn_id_ok", "luhn_ok", "whole"]

KINDS = ("API_KEY", "EMAIL", "CARD", "CN_ID", "SSN", "IP", "PHONE")  # order breaks exact ties

# Each pattern starts with a literal or a character class, so the regex engine can skip ahead
# to places where it may match (3-30x faster than a leading lookbehind); the boundary checks
# follow the first character. Boundaries are ASCII only, so a number next to Chinese text counts.


def _starts(first: str, not_before: str = "[0-9A-Za-z_+]", group: bool = True) -> str:
    """``first``, not preceded by a ``not_before`` character (nor by a digit group, ``group``)."""
    out = f"{first}(?<!{not_before}{first})"
    return out + (rf"(?<!\d[ .-]{first})" if group else "")


_END = r"(?![0-9A-Za-z_])(?![ .-]?\d)"  # not followed by a word, a number or another digit group

#: Numbers end at a non-digit: a card or an ID may touch a word ("card4111...", "...1111exp1226").
_NUM_END = r"(?!\d)(?![ .-]?\d)"
_CARD = re.compile(_starts("[2-6]", "[0-9_+]") + r"(?:(?:[ -]{1,2}|\n)?\d){12,18}" + _NUM_END)
_SSN = re.compile(_starts(r"\d", "[0-9_+]") + r"\d\d(?P<sep>[- ]{1,2})\d\d(?P=sep)\d{4}" + _NUM_END)
_SSN_NAMED = re.compile(  # nine digits (grouped or not) right after the words
    _starts("[Ss]", "[0-9_]", False)
    + r"(?i:sn|ocial security(?: number| no\.?)?)\s*(?:#|no\.?)?\s*[:=]?\s*"
    r"(?P<value>\d{3}(?P<sep>[- ]?)\d\d(?P=sep)\d{4})(?!\d)"
)
_EMAIL = re.compile(_starts("[A-Za-z0-9._%+-]", "[A-Za-z0-9._%+-]", False) + r"[A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_PHONE_INTL = re.compile(_starts(r"\+", "[0-9_+]", group=False) + r"\d+(?:[ .-]?\(\d{1,4}\)[ .-]?\d+|[ .-]\d+)*+(?!\d)")
_PHONE_US = re.compile(
    _starts("[1(]", "[0-9_+]") + r"(?:(?<=1)[ .-]?\()?(?<=\()\d{3}\)[ .-]?\d{3}[ .-]\d{4}" + _NUM_END  # (415) 555-2671
    + "|" + _starts(r"\d", "[0-9_+]") + r"(?:(?<=1)[ .-]\d{3}|\d\d)(?:(?P<sep>[.-])\d{3}(?P=sep)\d{4}| \d{3} \d{4})"
    + _NUM_END
)
_PHONE_BARE_US = re.compile(_starts("[2-9]", "[0-9_+]") + r"\d\d[2-9]\d{6}" + _NUM_END)  # 4155552671
#: National numbers with a trunk 0, grouped: 020 7946 0958, 01 23 45 67 89, 0161-496-0000, 030 12345678,
#: (02) 9876 5432.
_PHONE_NATIONAL = re.compile(
    _starts("0", "[0-9_+.]") + r"[1-9]\d{0,4}(?:(?P<sep>[ .-])\d{2,8})(?:(?P=sep)\d{2,8}){0,3}" + _NUM_END
    + "|" + _starts(r"\(", "[0-9_+]", False) + r"0[1-9]\d{0,3}\) ?\d{2,8}(?:[ .-]\d{2,8}){0,3}" + _NUM_END  # (02) 9876 5432
)
_PHONE_CN = re.compile(_starts("[01]", "[0-9_+]") + r"(?:(?<=0)0 ?86[ -]?1|(?<=1))[3-9]\d(?:[ -]?\d{4}){2}" + _NUM_END)
_CN_ID = re.compile(_starts("[1-9]", "[0-9_]", False) + r"\d{16}[\dXx](?!\d)")
_IPV4 = re.compile(_starts(r"\d", "[0-9A-Za-z_.]", False) + r"\d{0,2}(?:\.\d{1,3}){3}(?![0-9A-Za-z_]|\.\d)")
_IPV6 = re.compile(
    _starts("[0-9A-Fa-f:]", "[0-9A-Za-z_:.]", False) + r"(?:(?<=:)|[0-9A-Fa-f]{0,3}:)(?:[0-9A-Fa-f]{0,4}:){1,6}"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z_:]|\.\d)"
)
_KEY_TAIL = r"(?![A-Za-z0-9_-])"
_API_KEY = re.compile(
    _starts("sk-", "[A-Za-z0-9_-]", False)
    + r"(?:ant-[A-Za-z0-9_-]{20,}|(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,})" + _KEY_TAIL
    + "|" + _starts("g", "[A-Za-z0-9_-]", False) + r"(?:h[pousr]_[A-Za-z0-9]{30,}|ithub_pat_[A-Za-z0-9_]{22,})" + _KEY_TAIL
    + "|" + _starts("A", "[A-Za-z0-9]", False) + r"(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])"
)
_BEARER = re.compile(_starts("[Bb]", "[A-Za-z0-9_]", False) + r"(?i:earer)\s+(?P<value>[A-Za-z0-9._~+/-]{16,}=*)(?![A-Za-z0-9._~+/=-])")

_PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                        50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91})
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def luhn_ok(digits: str) -> bool:
    doubled = [int(c) * 2 - 9 * (int(c) > 4) for c in digits[-2::-2]]
    return (sum(map(int, digits[::-2])) + sum(doubled)) % 10 == 0


def cn_id_ok(s: str) -> bool:
    """A resident ID: province code, a birth date from 1900 to today, GB 11643 check character."""
    s = s.upper()
    if len(s) != 18 or not s[:17].isdigit() or int(s[:2]) not in _PROVINCES:
        return False
    try:
        born = datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    if not datetime.date(1900, 1, 1) <= born <= datetime.date.today():
        return False
    return _ID_CHECK[sum(int(c) * w for c, w in zip(s, _ID_WEIGHTS)) % 11] == s[17]


Span = tuple[int, int] | None


#: How cards are printed: groups of four (the last may be shorter), or Amex/Diners 4-6-5 / 4-6-4.
_CARD_GROUPS = re.compile(r"\d{4}(?:[ -]\d{4})*[ -]\d{1,4}|\d{4}[ -]\d{6}[ -]\d{4,5}")


def _network_ok(d: str) -> bool:
    """A prefix some card network issues, with a length it issues (Visa, Mastercard, Maestro,
    Amex, Diners, JCB, Discover, UnionPay, Mir, RuPay, ...)."""
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    if d[0] in "56":
        return True  # Mastercard 51-55 and Maestro 50, 56-69 (12-19 digits), Discover, UnionPay
    if d[:2] in ("34", "37"):
        return n == 15
    if d[:2] in ("36", "38", "39") or "300" <= d[:3] <= "305":
        return n >= 14
    if "3528" <= d[:4] <= "3589" or "2200" <= d[:4] <= "2204":
        return n >= 16
    return "2221" <= d[:4] <= "2720" and n == 16


def _card(m: re.Match[str]) -> Span:
    text = re.sub(r"[ \n-]+", lambda g: "-" if "-" in g.group() else " ", m.group())  # "  " and "\n" print as " "
    digits = re.sub(r"\D", "", text)
    if len(set(digits)) == 1 or not _network_ok(digits) or not luhn_ok(digits):
        return None
    if digits != text and not _CARD_GROUPS.fullmatch(text):
        return None  # grouped like an order or account number, not like a card
    if len(text) == 18 and int(text[:2]) in _PROVINCES:
        return None  # shaped like a resident ID (which has its own checksum), not like a card
    return m.span()


def _ssn(m: re.Match[str]) -> Span:
    value = m.group("value") if "value" in m.re.groupindex else m.group()
    digits = re.sub(r"\D", "", value)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return None
    return m.span("value") if "value" in m.re.groupindex else m.span()


def _email(m: re.Match[str]) -> Span:
    labels = m.group().rsplit("@", 1)[1].split(".")
    if any(not lab or lab[0] == "-" or lab[-1] == "-" for lab in labels):
        return None
    tld = labels[-1]
    if len(tld) >= 2 and (tld.isalpha() or tld.startswith("xn--")):
        return m.span()
    letters = re.match(r"[A-Za-z]{2,}", tld)  # "ann@example.com4111...": the address ends where its TLD does
    return (m.start(), m.end() - len(tld) + letters.end()) if letters and len(labels) > 1 else None


def _phone_intl(m: re.Match[str]) -> Span:
    digits = re.sub(r"\D", "", m.group())
    return m.span() if 8 <= len(digits) <= 15 and digits[0] != "0" else None


def _phone_bare_us(m: re.Match[str]) -> Span:
    """Ten bare digits read as a NANP number: area code with a middle digit 0-8, no N11 exchange."""
    d = m.group()
    return m.span() if d[1] != "9" and d[4:6] != "11" else None


def _phone_national(m: re.Match[str]) -> Span:
    digits = re.sub(r"\D", "", m.group())
    return m.span() if 10 <= len(digits) <= 11 else None


def _phone_us(m: re.Match[str]) -> Span:
    national = re.sub(r"\D", "", m.group())[-10:]  # area code and exchange start with 2-9
    return m.span() if national[0] in "23456789" and national[3] in "23456789" else None


def _ip(m: re.Match[str]) -> Span:
    text = m.group()
    try:
        if ":" not in text:
            ipaddress.IPv4Address(text)
            return m.span()
        ipaddress.IPv6Address(text)
    except ValueError:
        return None
    groups = [g for g in text.split("%")[0].split(":") if g]
    return m.span() if len(groups) >= 2 else None


def _token(m: re.Match[str]) -> Span:
    """Random tokens hold digits and letters; a word-only 'key' is a placeholder in docs."""
    if "value" in m.re.groupindex:
        token, span = m.group("value"), m.span("value")
    else:
        token, span = m.group(), m.span()
        if token[:4] in ("AKIA", "ASIA"):
            return span
        token = token.split("_", 1)[-1] if token.startswith("g") else token[3:]
    has_digit = any(c.isdigit() for c in token)
    return span if has_digit and any(c.isalpha() for c in token) else None


def whole(m: re.Match[str]) -> Span:
    """The check of a pattern that needs none (custom kinds, Chinese mobiles): all of the match."""
    return m.span()


Check = Callable[[re.Match[str]], Span]
#: kind -> (pattern, check, a substring the text must hold for the pattern to match, or "")
BUILTIN: dict[str, list[tuple[re.Pattern[str], Check, str]]] = {
    "API_KEY": [(_API_KEY, _token, ""), (_BEARER, _token, "")],
    "EMAIL": [(_EMAIL, _email, "@")],
    "CARD": [(_CARD, _card, "")],
    "CN_ID": [(_CN_ID, lambda m: m.span() if cn_id_ok(m.group()) else None, "")],
    "SSN": [(_SSN, _ssn, ""), (_SSN_NAMED, _ssn, "")],
    "IP": [(_IPV4, _ip, "."), (_IPV6, _ip, ":")],
    "PHONE": [(_PHONE_INTL, _phone_intl, "+"), (_PHONE_US, _phone_us, ""), (_PHONE_CN, whole, ""),
              (_PHONE_BARE_US, _phone_bare_us, ""), (_PHONE_NATIONAL, _phone_national, "0")],
}


@functools.cache
def ascii_table() -> dict[int, int]:
    """One-to-one replacements that let the patterns read other scripts' digits and spaces:
    every Unicode decimal digit (full-width ``４``, Arabic-Indic, ...) as its ASCII digit,
    full-width ``Ｘ``/``ｘ``, ``－`` and ``＠``, and no-break, thin and ideographic spaces as
    ``" "``. Lengths stay the same, so offsets into the result are offsets into the original."""
    import unicodedata

    table: dict[int, int] = {}
    for code in range(128, 0x20000):  # every decimal digit is in the first two planes
        value = unicodedata.decimal(chr(code), None)
        if value is not None:
            table[code] = ord(str(value))
    for code in (0x00A0, 0x2007, 0x2009, 0x202F, 0x3000):
        table[code] = ord(" ")
    table.update({0xFF38: ord("X"), 0xFF58: ord("x"), 0xFF0D: ord("-"), 0x2010: ord("-"), 0x2011: ord("-"),
                  0xFF20: ord("@"), 0xFF0E: ord(".")})
    return table

