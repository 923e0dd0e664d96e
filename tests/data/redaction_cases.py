"""A labeled test set for convo.redact: sentences with known sensitive values, and look-alikes
that must be left alone.

``cases()`` returns a list of dicts: ``text``, ``labels`` (a list of ``(kind, value)``; each
value occurs once in the text) and ``category`` (the kind for a positive case; what the
look-alike is for a negative one, whose ``labels`` is empty). Values that need a checksum are
generated from a fixed seed with checksum code written here, independently of convo's, so a
bug in convo's validators cannot hide in the data. Card and ID numbers are synthetic; phone
numbers use fictional ranges where the country has one (555-01xx, +44 20 7946 0xxx, ...).
"""

from __future__ import annotations

import datetime
import random
import string
from typing import Any

SEED = 20241123

# -- checksums (independent of convo.redact) ---------------------------------------------------


def luhn_digit(payload: str) -> str:
    """The check digit that makes ``payload + digit`` pass the Luhn test."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # these get doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def gb11643_char(first17: str) -> str:
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    remainder = sum(int(c) * w for c, w in zip(first17, weights)) % 11
    return "10X98765432"[remainder]


# -- value generators --------------------------------------------------------------------------

CARD_PREFIXES = [  # (prefix, length, grouping)
    ("4", 16, (4, 4, 4, 4)), ("4", 13, (4, 4, 4, 1)), ("4", 19, (4, 4, 4, 4, 3)),
    ("51", 16, (4, 4, 4, 4)), ("55", 16, (4, 4, 4, 4)), ("2221", 16, (4, 4, 4, 4)), ("2720", 16, (4, 4, 4, 4)),
    ("34", 15, (4, 6, 5)), ("37", 15, (4, 6, 5)), ("6011", 16, (4, 4, 4, 4)), ("65", 16, (4, 4, 4, 4)),
    ("3530", 16, (4, 4, 4, 4)), ("36", 14, (4, 6, 4)), ("62", 16, (4, 4, 4, 4)), ("62", 19, (4, 4, 4, 4, 3)),
    ("2201", 16, (4, 4, 4, 4)), ("6759", 19, (4, 4, 4, 4, 3)), ("5018", 16, (4, 4, 4, 4)),
]
PROVINCES = [11, 12, 13, 31, 32, 33, 35, 37, 41, 42, 44, 45, 50, 51, 53, 61, 62, 65]


def _group(digits: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i : i + n])
        i += n
    return sep.join(out)


def card(rng: random.Random, valid: bool = True) -> tuple[str, str, tuple[int, ...]]:
    prefix, length, sizes = rng.choice(CARD_PREFIXES)
    payload = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = luhn_digit(payload)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return payload + check, prefix, sizes


def cn_id(rng: random.Random, valid: bool = True, x_check: bool = False) -> str:
    while True:
        born = datetime.date(1935, 1, 1) + datetime.timedelta(days=rng.randint(0, 27000))
        first = f"{rng.choice(PROVINCES)}{rng.randint(1, 99):02d}{rng.randint(1, 99):02d}{born:%Y%m%d}{rng.randint(0, 999):03d}"
        check = gb11643_char(first)
        if x_check == (check == "X"):
            break
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return first + check


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        t = "".join(rng.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in t) and any(c.isalpha() for c in t):
            return t


# -- sentence templates ------------------------------------------------------------------------

TEMPLATES = [
    "Please charge {v} for the renewal.",
    "My details: {v}, thanks!",
    "{v}",
    "The customer wrote: \"use {v} from now on\".",
    "请使用{v}处理这笔订单。",
    "联系方式：{v}。",
    "- item: {v}\n- status: pending",
    "Log line 2024-05-01T10:00:00Z user=42 value={v} ok",
]


def _pos(cases: list[dict[str, Any]], rng: random.Random, kind: str, value: str, text: str | None = None) -> None:
    text = text if text is not None else rng.choice(TEMPLATES).format(v=value)
    cases.append({"text": text, "labels": [(kind, value)], "category": kind})


def _neg(cases: list[dict[str, Any]], category: str, text: str) -> None:
    cases.append({"text": text, "labels": [], "category": category})


def cases() -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    out: list[dict[str, Any]] = []

    # CARD: 40 positives in three formats; 40 Luhn-invalid look-alikes.
    for i in range(40):
        digits, _, sizes = card(rng)
        value = [digits, _group(digits, sizes, " "), _group(digits, sizes, "-")][i % 3]
        _pos(out, rng, "CARD", value)
    for i in range(40):
        digits, _, sizes = card(rng, valid=False)
        value = [digits, _group(digits, sizes, " "), _group(digits, sizes, "-")][i % 3]
        _neg(out, "card-luhn-invalid", rng.choice(TEMPLATES).format(v=value))

    # CN_ID: 30 positives (some ending in X, one lowercase x); 30 with a wrong check character,
    # 6 with an impossible date or province.
    for i in range(30):
        value = cn_id(rng, x_check=i % 5 == 0)
        if i == 5:
            value = value[:-1] + "x"
        _pos(out, rng, "CN_ID", value, rng.choice(["身份证号：{v}", "ID {v} verified.", "公民身份号码{v}，请核对。", "{v}"]).format(v=value))
    for _ in range(30):
        _neg(out, "cn-id-checksum-invalid", rng.choice(["身份证号：{v}", "ID {v} verified.", "{v}"]).format(v=cn_id(rng, valid=False)))
    for first17 in ["11010519990230123", "44030620990101123", "99010119800101123", "00010119800101123",
                    "11010518991231123", "31011519801301123"]:  # Feb 30, future, province 99/00, 1899, month 13
        _neg(out, "cn-id-impossible", f"证件号 {first17 + gb11643_char(first17)}")

    # SSN: 30 positives; 25 never-issued numbers.
    for i in range(30):
        value = ssn(rng)
        if i % 5 == 4:
            value = value.replace("-", " ")
        _pos(out, rng, "SSN", value, rng.choice(["SSN {v}", "Social security number: {v}.", "her ssn is {v}", "{v}"]).format(v=value))
    for digits in ["123456789", "078051120", "219099999"]:
        _pos(out, rng, "SSN", digits, f"SSN: {digits}")
    for value in ["000-12-3456", "666-12-3456", "900-12-3456", "999-45-6789", "987-65-4321", "123-00-4567",
                  "123-45-0000", "000-00-0000", "666-66-6666", "950-10-1234", "234-00-1234", "345-67-0000",
                  "000-45-6789", "666-01-0001", "912-34-5678", "456-00-7890", "567-89-0000", "931-11-1111",
                  "666-99-9999", "000-99-9999"]:
        _neg(out, "ssn-invalid", f"SSN {value} on file")
    for text in ["SSN: 000123456", "ssn 666123456", "Social security number 912345678",
                 "zip 94103-1234", "tracking number 123456789 shipped"]:
        _neg(out, "ssn-invalid", text)

    # EMAIL: 30 positives; 15 look-alikes.
    locals_ = ["ann", "first.last", "user+tag", "a_b-c", "USER123", "x", "li.wei", "o'hara".replace("'", ""), "test.e-mail"]
    domains = ["example.com", "sub.example.co.uk", "my-domain.io", "EXAMPLE.ORG", "mail.example.net", "xn--fiqs8s.cn",
               "example.museum", "corp.example"]
    for i in range(30):
        value = f"{locals_[i % len(locals_)]}{i if i % 2 else ''}@{domains[i % len(domains)]}"
        _pos(out, rng, "EMAIL", value, rng.choice(["Email {v} today.", "<{v}>", "mailto:{v}", "请发邮件到{v}。", "cc: {v}, thanks"]).format(v=value))
    for text in ["Follow @anthropic for news", "user@ is incomplete", "decorate with @property", "a@b is not an address",
                 "write to name at example dot com", "npm i react@18.2.0", "see foo@bar.123", "node@20.11.1 is required",
                 "x @ example.com", "price@ 3.50", "email me@", "@@example.com", "join #team at 10",
                 "pin pkg@latest", "tar.gz@v1"]:
        _neg(out, "email-lookalike", text)

    # PHONE: 40 positives; 30 look-alikes.
    phones = ["+44 20 7946 0958", "+44 (0)20 7946 0123", "+33 1 23 45 67 89", "+49 30 12345678", "+81 3-1234-5678",
              "+61 2 9876 5432", "+91 98765 43210", "+86 138 0013 8000", "+1 (415) 555-2671", "+55 11 91234-5678",
              "+7 495 123-45-67", "+27 21 123 4567", "+852 2123 4567", "+14155552671", "+86-139-1234-5678",
              "(212) 555-0147", "212-555-0147", "212.555.0147", "1-800-555-0199", "212 555 0147", "(646)555-0182",
              "1 (617) 555-0123", "303-555-0110", "718.555.0133", "13812345678", "138 1234 5678", "138-1234-5678",
              "+86 13912345678", "0086 15012345678", "008618612345678", "15912345678", "17711112222", "19876543210",
              "+34 612 34 56 78", "+39 06 1234 5678", "+82 2-312-3456", "+65 6123 4567", "+353 1 234 5678",
              "+31 20 123 4567", "+64 9 123 4567"]
    for value in phones:
        _pos(out, rng, "PHONE", value, rng.choice(["Call {v} after 5pm.", "Tel: {v}", "电话{v}，随时联系。", "{v}", "phone={v};"]).format(v=value))
    for text in ["Meeting on 2024-01-15 at 10:30", "dates 01/15/2024 and 15.01.2024", "call 911 now", "ext. 1234",
                 "+5 points for style", "up +20% this year", "order 12345678901", "Room 1203, floor 12", "3 + 4 = 7",
                 "10 20 30 40 50", "years 1999-2024", "pages 123-145", "$1,234,567.89", "id 20240115-0001",
                 "build 2024.01.15.1234", "zip 94103", "score 12-34-56", "ratio 3:2:1", "lot 123-456-7890",
                 "code 012-345-6789", "ref 11012345678", "+0 12 345 678", "version 10.0.19045",
                 "the 5 555 5555 pattern", "1234 5678", "A-123-456-7890", "PIN 123456", "+123", "+12 34", "sum 2+2=4"]:
        _neg(out, "phone-lookalike", text)

    # IP: 30 positives; 25 look-alikes.
    ips = ["10.0.0.1", "192.168.1.254", "8.8.8.8", "172.16.254.1", "203.0.113.7", "255.255.255.255", "0.0.0.0",
           "127.0.0.1", "198.51.100.23", "100.64.0.1", "2001:db8::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
           "fe80::1ff:fe23:4567:890a", "::ffff:192.0.2.128", "2001:db8:0:0:1:0:0:1", "2606:4700:4700::1111",
           "fe80::a%eth0", "2001:db8::ff00:42:8329", "::ffff:10.0.0.1", "FE80::0202:B3FF:FE1E:8329"]
    for value in ips:
        _pos(out, rng, "IP", value, rng.choice(["from {v} at 10:00", "host={v}", "服务器地址{v}已封禁", "[{v}]:443", "{v}"]).format(v=value))
    for value in ["10.1.2.3", "192.0.2.44", "2001:db8:a::7"]:
        _pos(out, rng, "IP", value, f"GET /index.html from {value} port 8080")
    for value in ["172.31.0.9", "203.0.113.250", "2001:db8:1234::5", "192.168.100.100", "8.8.4.4", "::ffff:203.0.113.9",
                  "10.255.255.254"]:
        _pos(out, rng, "IP", value, f"allow {value};")
    for text in ["Version 1.2.3.4.5 released", "256.1.2.3 is out of range", "network 192.168.1", "v1.2.3.4 is tagged",
                 "1.2.3.4.5.6", "at 12:30:45 sharp", "MAC 00:1A:2B:3C:4D:5E", "std::vector<int>", "a[::2] slices",
                 "Foo::Bar::Baz", "10.0.0.256 bad", "pi is 3.14159", "date 2024.01.15", "2001:db8::1::2 is invalid",
                 "12:34:56:78 hex", "1.2.3", "ratio 4:3", "1.2.3.4a", "999.999.999.999", "git tag 10.20.30.40.50",
                 "a::b::c", "time 23:59:59.999", "1::2::3", "see section 4.3.2.1.7", "file v2.0.0.1b"]:
        _neg(out, "ip-lookalike", text)

    # API_KEY: 30 positives; 20 look-alikes.
    keys = []
    for _ in range(4):
        keys.append("sk-ant-api03-" + token(rng, 93, string.ascii_letters + string.digits + "-_") + "AA")
    keys.append("sk-ant-admin01-" + token(rng, 93, string.ascii_letters + string.digits + "-_") + "AA")
    for _ in range(4):
        keys.append("sk-proj-" + token(rng, 156, string.ascii_letters + string.digits + "-_"))
    keys.append("sk-svcacct-" + token(rng, 120, string.ascii_letters + string.digits + "-_"))
    for _ in range(3):
        keys.append("sk-" + token(rng, 20) + "T3BlbkFJ" + token(rng, 20))
    for prefix in ["AKIA", "ASIA", "AKIA", "ASIA"]:
        keys.append(prefix + token(rng, 16, string.ascii_uppercase + "234567"))
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "ghp_"]:
        keys.append(prefix + token(rng, 36))
    for _ in range(2):
        keys.append("github_pat_" + token(rng, 22) + "_" + token(rng, 59))
    for value in keys:
        _pos(out, rng, "API_KEY", value, rng.choice(["export KEY={v}", "api_key = \"{v}\"", "密钥是{v}", "{v}"]).format(v=value))
    jwt = "eyJhbGciOiJIUzI1NiJ9." + token(rng, 40) + "." + token(rng, 43, string.ascii_letters + string.digits + "-_")
    for value, text in [(jwt, f"Authorization: Bearer {jwt}"), (t := token(rng, 40), f"curl -H 'authorization: bearer {t}'"),
                        (t2 := token(rng, 32), f"use BEARER {t2} for the call")]:
        _pos(out, rng, "API_KEY", value, text)
    for text in ["pip install scikit-learn (sk-learn)", "sk-12 short", "AKIA1234 is too short", "ghp_short",
                 "Bearer token auth is required", "the bearer of bad news", "set sk-your-api-key-here",
                 "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "github_pat_ prefix only", "ANTHROPIC_API_KEY=",
                 "YOUR_API_KEY", "sk-ant-...", "Bearer <token>", "AKIAEXAMPLE", "task-antelope-migration-plan",
                 "desk-proj-2024", "bearer: none", "the ghost_of_tokens_past", "sk-this-is-not-a-real-key-just-words",
                 "Bearer abcdefghijklmnopqrstuvwxyz"]:
        _neg(out, "api-key-lookalike", text)

    # Everyday text with numbers: dates, versions, order numbers, ISBNs, amounts.
    for text in ["Version 1.2.3.4.5 ships on 2024-03-15.", "ISBN 978-3-16-148410-0", "ISBN 0-306-40615-2",
                 "ISBN-13: 9780306406157", "Order #112-3456789-1234567 has shipped", "Order ORD-2024-000123",
                 "Invoice INV-20240115-0042 is due", "Total: $12,345.67", "Flight UA 1234 at 10:45",
                 "Tracking 1Z999AA10123456784", "Account 0001234567 (sort code 12-34-56)", "ref 4000-1234-567",
                 "python 3.11.7 on linux", "Build 20240115.3 passed", "sha 3f2a9c1e7b", "commit a1b2c3d4e5f6",
                 "temperature 36.6 and 98.6", "coordinates 37.7749, -122.4194", "2024年1月15日 10:30",
                 "订单号 202401150001234", "the years 1914-1918 and 1939-1945", "uuid 123e4567-e89b-12d3-a456-426614174000",
                 "part no. 4711-0815-42", "serial 5100 2000 3000", "lot 62 1234 5678", "counts 4111 1111 and 1111",
                 "timestamps 1700000000123 and 1700000000456", "call extension 4-5-6"]:
        _neg(out, "everyday-numbers", text)

    # Mixed: several kinds in one text.
    c1, _, _ = card(rng)
    id1 = cn_id(rng)
    s1 = ssn(rng)
    out.append({"text": f"Name: Li Wei, ID {id1}, mobile 13912345678, email li.wei@example.cn, card {c1}.",
                "labels": [("CN_ID", id1), ("PHONE", "13912345678"), ("EMAIL", "li.wei@example.cn"), ("CARD", c1)],
                "category": "mixed"})
    out.append({"text": f"SSN {s1}; from 203.0.113.9 with key AKIAIOSFODNN7EXAMPL2 (call +1 212 555 0147)",
                "labels": [("SSN", s1), ("IP", "203.0.113.9"), ("API_KEY", "AKIAIOSFODNN7EXAMPL2"), ("PHONE", "+1 212 555 0147")],
                "category": "mixed"})
    return out
