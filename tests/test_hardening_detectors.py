"""Issue 19, item 6: detectors that survive the shapes the suite did not write. Each sensitive
kind is generated valid (checksums, networks, dates), written in the ways people write it
(grouped, unbroken, full-width digits, odd separators, touching a word) and embedded in random
text; after redaction nothing of it may be left."""

from __future__ import annotations

import datetime
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convo import Redactor
from convo._detectors import luhn_ok

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_[0-9]+\]")
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
SEPARATORS = [" ", "-", "\n", "\u00a0", "  "]

_PROVINCES = [11, 12, 13, 31, 32, 33, 44, 51, 61, 65]
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _luhn_complete(body: str) -> str:
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError("unreachable")


@st.composite
def cards(draw) -> str:
    network = draw(st.sampled_from(["visa", "mc", "amex", "discover"]))
    prefix, length = {"visa": ("4", 16), "mc": (str(draw(st.integers(51, 55))), 16),
                      "amex": (draw(st.sampled_from(["34", "37"])), 15), "discover": ("6011", 16)}[network]
    body = prefix + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - len(prefix) - 1,
                                          max_size=length - len(prefix) - 1)))
    number = _luhn_complete(body)
    if len(set(number)) == 1:
        number = _luhn_complete(prefix + "1" * (length - len(prefix) - 2) + "2")
    style = draw(st.sampled_from(["bare", "grouped"]))
    if style == "grouped":
        sep = draw(st.sampled_from(SEPARATORS))
        cuts = (4, 10) if length == 15 else (4, 8, 12)
        parts = [number[a:b] for a, b in zip((0, *cuts), (*cuts, length))]
        number = sep.join(parts)
    return number


@st.composite
def ssns(draw) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    value = f"{area:03d}{draw(st.integers(1, 99)):02d}{draw(st.integers(1, 9999)):04d}"
    style = draw(st.sampled_from(["dashed", "spaced", "named-bare", "named-dashed"]))
    dashed = f"{value[:3]}-{value[3:5]}-{value[5:]}"
    return {"dashed": dashed, "spaced": f"{value[:3]} {value[3:5]} {value[5:]}",
            "named-bare": "SSN" + draw(st.sampled_from(["", " ", ": ", "#"])) + value,
            "named-dashed": "SSN" + dashed}[style]


@st.composite
def cn_ids(draw) -> str:
    born = draw(st.dates(datetime.date(1940, 1, 1), datetime.date(2010, 12, 31)))
    body = f"{draw(st.sampled_from(_PROVINCES))}{draw(st.integers(1, 9999)):04d}{born:%Y%m%d}{draw(st.integers(0, 999)):03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _WEIGHTS)) % 11]


@st.composite
def phones(draw) -> str:
    area = f"{draw(st.integers(2, 9))}{draw(st.integers(0, 8))}{draw(st.integers(0, 9))}"
    exchange = f"{draw(st.integers(2, 9))}{draw(st.integers(2, 9))}{draw(st.integers(0, 9))}"
    line = f"{draw(st.integers(0, 9999)):04d}"
    pairs = [f"{draw(st.integers(0, 99)):02d}" for _ in range(4)]
    return draw(st.sampled_from([
        f"{area}{exchange}{line}", f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}", f"+1 {area} {exchange} {line}",
        f"020 {exchange}{line[0]} {line}", f"0{draw(st.integers(1, 9))} " + " ".join(pairs),
        f"+44 20 {exchange}{line[0]} {line}", f"(0{draw(st.integers(2, 9))}) {exchange}{line[0]} {line}",
    ]))


@st.composite
def emails(draw) -> str:
    local = draw(st.from_regex(r"[a-z0-9][a-z0-9._]{0,8}[a-z0-9]", fullmatch=True))
    return f"{local}@{draw(st.from_regex(r'[a-z]{2,9}', fullmatch=True))}.{draw(st.sampled_from(['com', 'org', 'de', 'io']))}"


NUMERIC = {"CARD": cards(), "SSN": ssns(), "CN_ID": cn_ids(), "PHONE": phones()}
#: Words a number may touch ("card4111...", "...1111exp"), and punctuation around it: no digits.
WORDY = st.text(st.sampled_from("abcdefxyzKLMN ,;:!?()'\"\n"), max_size=12)


def _no_digits_left(redacted: str) -> bool:
    return not re.search(r"\d", PLACEHOLDER.sub("", redacted))


@pytest.mark.parametrize("kind", sorted(NUMERIC))
@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_item6_every_numeric_kind_is_found_in_random_surroundings(kind, data):
    value = data.draw(NUMERIC[kind])
    if kind in ("CARD", "CN_ID") and data.draw(st.booleans()):
        value = value.translate(FULL_WIDTH)
    before, after = data.draw(WORDY), data.draw(WORDY)
    text = before + value + after
    redacted = Redactor(mode="placeholder").redact(text)
    assert _no_digits_left(redacted.text), (text, redacted.text)
    assert value not in redacted.text


@given(card=cards(), email=emails(), glue=st.sampled_from(["x", "/", " and ", "y.", "_"]), before=WORDY, after=WORDY)
@settings(max_examples=150, deadline=None)
def test_item6_a_card_touching_an_email_loses_neither(card, email, glue, before, after):
    text = before + " " + card + glue + email + " " + after
    redacted = Redactor(mode="placeholder").redact(text).text
    assert _no_digits_left(redacted), (text, redacted)
    assert "@" not in PLACEHOLDER.sub("", redacted)


@given(values=st.lists(st.one_of(*NUMERIC.values(), emails()), min_size=2, max_size=4),
       glues=st.lists(st.sampled_from([", ", "; ", " or ", "/", " (", ") "]), min_size=3, max_size=3))
@settings(max_examples=150, deadline=None)
def test_item6_several_values_in_a_row_are_all_found(values, glues):
    text = "".join(v + glues[i % len(glues)] for i, v in enumerate(values))
    redacted = Redactor(mode="placeholder").redact(text)
    rest = PLACEHOLDER.sub("", redacted.text)
    assert not re.search(r"\d", rest) and "@" not in rest, (text, redacted.text)
    assert "".join(redacted.mapping.get(p, p)
                   for p in re.split(r"(\[[A-Z_]+_\d+\])", redacted.text)) == text  # restores exactly


@pytest.mark.parametrize(("text", "expected"), [
    ("4111 1111 1111 1111xann@example.com", "[CARD][EMAIL]"), ("card4111111111111111", "card[CARD]"),
    ("4111111111111111exp1226", "[CARD]exp1226"), ("４１１１ １１１１ １１１１ １１１１", "[CARD]"),
    ("ID １１０１０５１９４９１２３１００２Ｘ", "ID [CN_ID]"), ("4111\n1111\n1111\n1111", "[CARD]"),
    ("4111\u00a01111\u00a01111\u00a01111", "[CARD]"), ("4111  1111  1111  1111", "[CARD]"),
    ("SSN123-45-6789", "SSN[SSN]"), ("call 020 7946 0958", "call [PHONE]"),
    ("appelez le 01 23 45 67 89", "appelez le [PHONE]"), ("4155552671", "[PHONE]"),
    ("ring (02) 9876 5432", "ring [PHONE]"), ("Tel. 030 12345678", "Tel. [PHONE]"), ("03-1234-5678", "[PHONE]"),
])
def test_item6_the_reported_shapes(text, expected):
    assert Redactor().redact(text).text == expected


@pytest.mark.parametrize("text", [
    "build 20230615", "released 2023-06-15 at 10:00", "order 1234567890", "version 0.10.2023.1",
    "timestamp 1700000000", "see page 12 and 13", "call 911", "ISBN 978-3-16-148410-0",
])
def test_item6_lookalikes_stay(text):
    assert Redactor().redact(text).text == text
