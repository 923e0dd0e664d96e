"""Tests for convo.redact: the labeled data set, the modes, requests, and streamed restoring."""

from __future__ import annotations

import copy
import importlib.util
import itertools
import re
from collections import Counter
from pathlib import Path

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo import InvalidConfigError, InvalidInputError
from convo.redact import KINDS, Finding, Redactor, restore, restore_message

_spec = importlib.util.spec_from_file_location("redaction_cases", Path(__file__).parent / "data" / "redaction_cases.py")
redaction_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(redaction_cases)
CASES = redaction_cases.cases()
CHECKSUM_INVALID = {"card-luhn-invalid", "cn-id-checksum-invalid", "cn-id-impossible", "ssn-invalid"}


def found(redactor: Redactor, text: str) -> set[tuple[str, str]]:
    return {(f.kind, text[f.start : f.end]) for f in redactor.scan(text)}


# -- the labeled set ---------------------------------------------------------------------------


def test_the_labeled_set_is_big_enough():
    positives = [c for c in CASES if c["labels"]]
    negatives = [c for c in CASES if not c["labels"]]
    assert len(positives) >= 200 and len(negatives) >= 200
    per_kind = Counter(kind for c in positives for kind, _ in c["labels"])
    assert set(per_kind) == set(KINDS)
    assert min(per_kind.values()) >= 25
    for case in positives:
        for _, value in case["labels"]:
            assert case["text"].count(value) == 1, case


def test_recall_is_at_least_99_percent_for_every_kind():
    redactor = Redactor()
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    missed = []
    for case in CASES:
        got = found(redactor, case["text"])
        for label in case["labels"]:
            totals[label[0]] += 1
            if label in got:
                hits[label[0]] += 1
            else:
                missed.append((label, case["text"]))
    for kind in KINDS:
        assert hits[kind] / totals[kind] >= 0.99, (kind, missed)


def test_no_false_positive_on_checksum_invalid_numbers():
    redactor = Redactor()
    checked = [c for c in CASES if c["category"] in CHECKSUM_INVALID]
    assert len(checked) >= 90
    flagged = [(c["text"], found(redactor, c["text"])) for c in checked if redactor.scan(c["text"])]
    assert flagged == []


def test_precision_on_the_labeled_set():
    redactor = Redactor()
    false_positives = []
    for case in CASES:
        extra = found(redactor, case["text"]) - set(case["labels"])
        false_positives += [(case["category"], value) for value in extra]
    assert len(false_positives) <= 2, false_positives


# -- detectors, one rule at a time -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("4111 1111 1111 1111", "CARD"),
        ("3782-822463-10005", "CARD"),
        ("123-45-6789", "SSN"),
        ("SSN: 123456789", "SSN"),
        ("a.b+c@mail.example.org", "EMAIL"),
        ("+44 20 7946 0958", "PHONE"),
        ("(415) 555-2671", "PHONE"),
        ("电话13812345678", "PHONE"),
        ("11010519491231002X", "CN_ID"),
        ("192.168.0.1", "IP"),
        ("2001:db8::8a2e:370:7334", "IP"),
        ("AKIAIOSFODNN7EXAMPLE", "API_KEY"),
        ("Authorization: Bearer abc123def456ghi789jkl", "API_KEY"),
    ],
)
def test_each_kind_is_found(text, kind):
    assert [f.kind for f in Redactor().scan(text)] == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "11010519491231002 1",  # not 18 characters
        "110105194912310021",  # wrong check character
        "110105194902300027",  # February 30
        "000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000",
        "version 1.2.3.4.5", "256.1.1.1", "a[::2]", "12:30:45", "std::map",
        "sk-your-api-key-here", "Bearer tokens are great", "2024-01-15", "ISBN 978-3-16-148410-0",
        "call 123-456-7890",  # no US area code starts with 1
    ],
)
def test_look_alikes_are_left_alone(text):
    assert Redactor().scan(text) == []


def test_findings_do_not_overlap_and_point_into_the_original():
    text = "mail 13812345678@qq.com, card 4111111111111111, ip 10.0.0.1"
    findings = Redactor().scan(text)
    assert [(f.kind, text[f.start : f.end]) for f in findings] == [
        ("EMAIL", "13812345678@qq.com"), ("CARD", "4111111111111111"), ("IP", "10.0.0.1")
    ]
    assert all(isinstance(f, Finding) for f in findings)


# -- modes and options -------------------------------------------------------------------------


def test_mask_mode_writes_the_kind():
    r = Redactor().redact("ann@example.com called from +86 138 0013 8000 with key sk-ant-api03-" + "a1" * 20)
    assert r.text == "[EMAIL] called from [PHONE] with key [API_KEY]"
    assert r.mapping == {}
    assert [f.kind for f in r.findings] == ["EMAIL", "PHONE", "API_KEY"]


def test_placeholder_mode_numbers_values_and_reuses_them():
    text = "ann@example.com, bob@example.com, again ann@example.com, 10.0.0.1"
    r = Redactor(mode="placeholder").redact(text)
    assert r.text == "[EMAIL_1], [EMAIL_2], again [EMAIL_1], [IP_1]"
    assert r.mapping == {"[EMAIL_1]": "ann@example.com", "[EMAIL_2]": "bob@example.com", "[IP_1]": "10.0.0.1"}
    assert restore(r.text, r.mapping) == text


def test_placeholders_never_collide_with_text_that_looks_like_one():
    text = "The template says [EMAIL_1]; the real one is ann@example.com."
    r = Redactor(mode="placeholder").redact(text)
    assert r.text == "The template says [EMAIL_1]; the real one is [EMAIL_2]."
    assert restore(r.text, r.mapping) == text


def test_a_mapping_can_be_extended_across_texts():
    redactor = Redactor(mode="placeholder")
    first = redactor.redact("ann@example.com")
    second = redactor.redact("bob@example.com and ann@example.com", first.mapping)
    assert second.text == "[EMAIL_2] and [EMAIL_1]"
    assert first.mapping == {"[EMAIL_1]": "ann@example.com"}  # not changed by the second call


def test_kinds_and_custom_patterns():
    redactor = Redactor(kinds=["email"], custom={"employee_id": r"EMP-\d{6}", "project": re.compile(r"Project \w+")})
    r = redactor.redact("EMP-123456 on Project Falcon, ann@example.com, 10.0.0.1")
    assert r.text == "[EMPLOYEE_ID] on [PROJECT], [EMAIL], 10.0.0.1"
    p = Redactor(kinds="ip", mode="placeholder", custom={"emp": r"EMP-\d+"}).redact("EMP-1 EMP-2 EMP-1 10.0.0.1")
    assert p.text == "[EMP_1] [EMP_2] [EMP_1] [IP_1]"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "hash"},
        {"kinds": ["passport"]},
        {"custom": {"bad name": r"x"}},
        {"custom": {"email": r"x"}},
        {"custom": {"x": r"("}},
    ],
)
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(InvalidConfigError):
        Redactor(**kwargs)


def test_redact_takes_text():
    with pytest.raises(InvalidInputError):
        Redactor().redact({"role": "user"})  # type: ignore[arg-type]


# -- requests ----------------------------------------------------------------------------------

SECRET = "sk-ant-api03-" + "Zx9" * 30


def _request() -> dict:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "system": "Support agent. Escalate to lead@example.com.",
        "metadata": {"user_id": "u-1"},
        "messages": [
            {"role": "user", "content": "I am ann@example.com, card 4111 1111 1111 1111."},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "ann@example.com is the user", "signature": "sig"},
                {"type": "text", "text": "Let me look up ann@example.com."},
                {"type": "tool_use", "id": "t1", "name": "lookup",
                 "input": {"email": "ann@example.com", "tags": ["vip", "ip 10.0.0.1"], "n": 3}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": f"key {SECRET}"}]},
                {"type": "tool_result", "tool_use_id": "t2", "content": "phone +1 415 555 2671"},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "SSN 123-45-6789"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "text", "text": "Thanks!"},
            ]},
        ],
    }


def test_redact_request_covers_every_text_and_leaves_the_input_alone():
    request = _request()
    before = copy.deepcopy(request)
    redacted, mapping = Redactor(mode="placeholder").redact_request(request)
    assert request == before
    assert redacted["system"] == "Support agent. Escalate to [EMAIL_1]."
    user, assistant, results = redacted["messages"]
    assert user["content"] == "I am [EMAIL_2], card [CARD_1]."
    assert assistant["content"][0]["thinking"] == "ann@example.com is the user"  # signed: untouched
    assert assistant["content"][1]["text"] == "Let me look up [EMAIL_2]."
    assert assistant["content"][2]["input"] == {"email": "[EMAIL_2]", "tags": ["vip", "ip [IP_1]"], "n": 3}
    assert results["content"][0]["content"][0]["text"] == "key [API_KEY_1]"
    assert results["content"][1]["content"] == "phone [PHONE_1]"
    assert results["content"][2]["source"]["data"] == "SSN [SSN_1]"
    assert results["content"][3] == before["messages"][2]["content"][3]
    assert redacted["metadata"] == {"user_id": "u-1"}
    assert mapping["[EMAIL_2]"] == "ann@example.com" and mapping["[API_KEY_1]"] == SECRET
    assert redacted["messages"][0] is not request["messages"][0]


def test_redact_request_in_mask_mode_has_no_mapping():
    redacted, mapping = Redactor().redact_request(_request())
    assert mapping == {}
    assert redacted["messages"][0]["content"] == "I am [EMAIL], card [CARD]."
    assert SECRET not in repr(redacted)


@given(st.recursive(
    st.one_of(st.text(max_size=20), st.integers(), st.none(), st.sampled_from(["ann@example.com", "10.0.0.1"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=10,
))
@settings(max_examples=100, deadline=None)
def test_redact_request_never_mutates_tool_inputs(value):
    request = {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"v": value}}]}]}
    before = copy.deepcopy(request)
    Redactor(mode="placeholder").redact_request(request)
    assert request == before


# -- restoring ---------------------------------------------------------------------------------

MAPPING = {"[EMAIL_1]": "ann@example.com", "[EMAIL_12]": "bob@example.com", "[CN_ID_1]": "11010519491231002X"}
PIECES = st.sampled_from(["[", "]", "[EMAIL_1]", "[EMAIL_12]", "[EMAIL_1", "[CN_ID_1]", "[CN_", "EMAIL", "_1", "x", " ", "[[", "你好"])


@given(pieces=st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=30), cuts=st.lists(st.integers(0, 200), max_size=12))
@settings(max_examples=300, deadline=None)
def test_streamed_restoring_equals_restoring_the_whole(pieces, cuts):
    text = "".join(pieces)
    bounds = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    deltas = [text[a:b] for a, b in itertools.pairwise(bounds)]
    restorer = Redactor(mode="placeholder").restorer(MAPPING)
    assert "".join(restorer.feed(d) for d in deltas) + restorer.flush() == restore(text, MAPPING)


def test_restorer_holds_back_only_a_possible_placeholder():
    restorer = Redactor(mode="placeholder").restorer(MAPPING)
    assert restorer.feed("Write to [EM") == "Write to "
    assert restorer.feed("AIL_1") == ""
    assert restorer.feed("] or [x]") == "ann@example.com or [x]"
    assert restorer.feed(" [") == " "
    assert restorer.flush() == "["


SENSITIVE = st.sampled_from(["ann@example.com", "4111 1111 1111 1111", "+1 415 555 2671", "10.0.0.1", "[EMAIL_1]", "[IP_1]"])


@given(st.lists(st.one_of(SENSITIVE, st.text(max_size=8)), max_size=12))
@settings(max_examples=200, deadline=None)
def test_placeholder_redaction_round_trips(parts):
    text = " ".join(parts)
    r = Redactor(mode="placeholder").redact(text)
    assert restore(r.text, r.mapping) == text


def test_restore_message_restores_text_and_tool_calls():
    message = anthropic.types.Message.model_validate({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [
            {"type": "text", "text": "I will mail [EMAIL_1]."},
            {"type": "tool_use", "id": "t1", "name": "send", "input": {"to": ["[EMAIL_1]"], "cc": "[EMAIL_12]"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1},
    })
    restored = restore_message(message, MAPPING)
    assert isinstance(restored, anthropic.types.Message)
    assert restored.content[0].text == "I will mail ann@example.com."
    assert restored.content[1].input == {"to": ["ann@example.com"], "cc": "bob@example.com"}
    assert message.content[0].text == "I will mail [EMAIL_1]."
    as_dict = restore_message(message.model_dump(mode="json"), MAPPING)
    assert as_dict["content"][0]["text"] == "I will mail ann@example.com."
