import json
import math
import os
import stat

import pytest

import convo
from convo import (
    ContextOverflowError,
    Conversation,
    ConversationFileError,
    InvalidConfigError,
    InvalidInputError,
    InvalidMessageError,
    check_history,
    count_tokens,
)
from convo.tokens import CachedCounter, OfflineCounter, calibration_of

MODEL = "claude-sonnet-4-6"


def chat(n=20, budget=100_000, system="You are terse.", **kw):
    conv = Conversation(system, model=MODEL, budget=budget, **kw)
    for i in range(n):
        conv.add_user(f"Question {i}: " + "why is the sky blue? " * 5)
        conv.add_assistant(f"Answer {i}: " + "because of Rayleigh scattering. " * 5)
    return conv


def fits(conv, request):
    """convo's promise: the estimate, corrected by what the model's responses taught the counter
    (a process-wide counter: other tests' responses teach it too), plus max_tokens fits the budget."""
    used = count_tokens(request["messages"], system=request.get("system"), tools=request.get("tools"), counter=conv.counter)
    cal = calibration_of(conv.counter)
    factor = cal.factor(conv.model) if cal is not None else 1.0
    return used * factor + request["max_tokens"] <= conv.budget + 1e-6


def test_request_is_ready_for_the_sdk():
    conv = Conversation("You are terse.", model=MODEL, budget=8000)
    conv.add_user("Hello")
    req = conv.request(max_tokens=256, temperature=0)
    assert req == {
        "model": MODEL,
        "max_tokens": 256,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Hello"}],
        "temperature": 0,
    }


def test_no_system_prompt_means_no_system_key():
    conv = Conversation(model=MODEL, budget=8000)
    conv.add_user("Hi")
    assert "system" not in conv.request()


def test_window_drops_oldest_exchanges_and_fits():
    conv = chat(n=100, budget=3000)
    conv.add_user("And the sunset?")
    req = conv.request(max_tokens=500)
    assert fits(conv, req)
    assert req["messages"][0]["role"] == "user"
    assert req["messages"][-1]["content"] == "And the sunset?"
    assert len(req["messages"]) < len(conv.messages)
    check_history(req["messages"])
    # The kept part is the newest suffix of the history.
    assert req["messages"] == [m.to_api() for m in conv.messages[-len(req["messages"]) :]]


def test_tokens_reports_the_fitted_request():
    conv = chat(n=100, budget=3000)
    conv.add_user("next")
    req = conv.request()
    assert conv.tokens == count_tokens(req["messages"], system=req["system"], counter=conv.counter)
    assert conv.tokens < conv.total_tokens


def test_pinned_messages_survive_trimming():
    conv = Conversation("sys", model=MODEL, budget=2000)
    conv.add_user("My name is Ada and I use Python 3.11.", pinned=True)
    conv.add_assistant("Noted.")
    for i in range(60):
        conv.add_user(f"filler {i} " * 20)
        conv.add_assistant(f"ok {i} " * 20)
    conv.pin(5)
    req = conv.request(max_tokens=300)
    contents = [m["content"] for m in req["messages"]]
    assert contents[0] == "My name is Ada and I use Python 3.11." and contents[1] == "Noted."
    assert conv.messages[4].content in contents and conv.messages[5].content in contents
    assert fits(conv, req)
    assert conv.pinned == [0, 1, 4, 5]
    conv.unpin(0)
    assert conv.pinned == [4, 5]


def test_tool_use_stays_with_its_result():
    conv = Conversation(model=MODEL, budget=1200)
    for i in range(30):
        conv.add_user(f"weather in city {i}? " * 3)
        conv.add_assistant([{"type": "tool_use", "id": f"toolu_{i}", "name": "weather", "input": {"city": str(i)}}])
        conv.add_user([{"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": "sunny " * 10}])
        conv.add_assistant(f"It is sunny in {i}.")
    conv.add_user("thanks")
    for max_tokens in (100, 300, 600, 900):
        req = conv.request(max_tokens=max_tokens)
        check_history(req["messages"])
        assert fits(conv, req)


def test_overflow_when_the_last_turn_cannot_fit():
    conv = Conversation("sys", model=MODEL, budget=300)
    conv.add_user("word " * 400)
    with pytest.raises(ContextOverflowError) as info:
        conv.request(max_tokens=100)
    assert info.value.allowed == 300 and info.value.needed > 300
    assert "budget" in str(info.value)


@pytest.mark.parametrize("ratio", [0.8, 1.3])
def test_a_calibrated_counter_fits_and_overflows_in_the_servers_tokens(ratio):
    counter = CachedCounter(OfflineCounter())
    calibration_of(counter).observe(MODEL, 1000, int(1000 * ratio))  # as if a response had said so
    conv = chat(n=60, budget=2000, counter=counter)
    conv.add_user("And the sunset?")
    req = conv.request(max_tokens=300)
    assert fits(conv, req) and len(req["messages"]) < len(conv.messages)
    plain = chat(n=60, budget=2000, counter=CachedCounter(OfflineCounter()))
    plain.add_user("And the sunset?")
    kept = len(plain.request(max_tokens=300)["messages"])
    assert (len(req["messages"]) > kept) if ratio < 1 else (len(req["messages"]) < kept)  # more or less room
    big = Conversation("sys", model=MODEL, budget=300, counter=counter)
    big.add_user("word " * 400)
    with pytest.raises(ContextOverflowError) as info:
        big.request(max_tokens=100)
    raw = count_tokens(big.messages, system="sys", counter=counter)
    assert info.value.allowed == 300 and info.value.needed == 100 + math.ceil(raw * ratio)
    assert f"x{ratio:.3f}" in str(info.value)


def test_undo_drops_the_last_exchange():
    conv = chat(n=3)
    removed = conv.undo()
    assert [m.role for m in removed] == ["user", "assistant"]
    assert len(conv) == 4
    conv.add_user("again")
    conv.undo()
    assert len(conv) == 4
    empty = Conversation(model=MODEL, budget=1000)
    with pytest.raises(InvalidInputError, match="nothing to undo"):
        empty.undo()


def test_fork_is_independent():
    conv = chat(n=2)
    twin = conv.fork()
    twin.add_user("only in the fork")
    twin.pin(0)
    assert len(conv) == 4 and len(twin) == 5
    assert conv.pinned == [] and twin.pinned == [0, 1]
    assert conv.total_tokens < twin.total_tokens


def test_reset_keeps_settings():
    conv = chat(n=2)
    conv.reset()
    assert len(conv) == 0 and conv.total_tokens == conv.tokens
    conv.add_user("fresh")
    assert conv.request()["messages"] == [{"role": "user", "content": "fresh"}]


def test_extend_is_all_or_nothing():
    conv = chat(n=1)
    with pytest.raises(InvalidMessageError):
        conv.extend([{"role": "user", "content": "ok"}, {"role": "user", "content": ""}])
    assert len(conv) == 2
    conv.extend([{"role": "user", "content": "ok"}, {"role": "assistant", "content": "fine"}])
    assert len(conv) == 4


def test_prefill_is_sent_as_the_last_assistant_turn():
    conv = Conversation(model=MODEL, budget=1000)
    conv.add_user("Give JSON")
    conv.add_assistant("{")
    assert conv.request()["messages"][-1] == {"role": "assistant", "content": "{"}


# -- bad input: a typed error, a useful message, nothing changed ---------------------------


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"budget": -5}, "budget must be positive"),
        ({"budget": 0}, "budget must be positive"),
        ({"budget": 10.5}, "budget must be an int"),
        ({"budget": True}, "budget must be an int"),
        ({"budget": 8000, "model": ""}, "model must be"),
        ({"budget": 8000, "system": 42}, "system must be a str"),
        ({"budget": 8000, "system": [{"type": "image"}]}, "invalid system prompt"),
        ({"budget": 8000, "strategy": "window"}, "strategy must be callable"),
        ({"budget": 8000, "max_tokens": 0}, "max_tokens must be positive"),
        ({"budget": 20, "system": "a long system prompt " * 10}, "system prompt alone takes"),
    ],
)
def test_bad_settings(kwargs, fragment):
    kwargs.setdefault("model", MODEL)
    system = kwargs.pop("system", None)
    with pytest.raises(InvalidConfigError, match=fragment):
        Conversation(system, **kwargs)


def snapshot(conv):
    return (conv.to_dict(), conv.total_tokens, conv.tokens)


@pytest.mark.parametrize(
    "action, error",
    [
        (lambda c: c.add_user(""), InvalidMessageError),
        (lambda c: c.add_user(None), InvalidMessageError),
        (lambda c: c.add({"role": "system", "content": "x"}), InvalidMessageError),
        (lambda c: c.add_user([{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]), InvalidMessageError),
        (lambda c: c.add_assistant([{"type": "tool_result", "tool_use_id": "x"}]), InvalidMessageError),
        (lambda c: c.add_user({"role": "assistant", "content": "x"}), InvalidMessageError),
        (lambda c: c.pin(99), InvalidInputError),
        (lambda c: c.pin("0"), InvalidInputError),
        (lambda c: c.request(max_tokens=-1), InvalidConfigError),
        (lambda c: c.request(messages=[]), InvalidConfigError),
        (lambda c: c.request(system="other"), InvalidConfigError),
        (lambda c: c.request(max_tokens=100_000), ContextOverflowError),
        (lambda c: c.request(max_tokens=200_000), convo.ModelRuleError),  # above the model's maximum output
    ],
)
def test_bad_input_changes_nothing(action, error):
    conv = chat(n=3)
    before = snapshot(conv)
    with pytest.raises(error):
        action(conv)
    assert snapshot(conv) == before


def test_orphan_tool_result_and_missing_results_are_refused():
    conv = Conversation(model=MODEL, budget=8000)
    conv.add_user("q")
    conv.add_assistant([{"type": "tool_use", "id": "t1", "name": "f", "input": {}}])
    with pytest.raises(InvalidMessageError, match="tool_result for each"):
        conv.add_user("I forgot the result")
    with pytest.raises(InvalidMessageError, match="already used"):
        conv.add_user([{"type": "tool_result", "tool_use_id": "t1", "content": "1"}]) or conv.add_assistant(
            [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]
        )


def test_empty_conversation_cannot_make_a_request():
    with pytest.raises(InvalidMessageError, match="add a user message first"):
        Conversation(model=MODEL, budget=1000).request()


# -- files ---------------------------------------------------------------------------------


def rich_conversation():
    conv = Conversation([{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
                        model=MODEL, budget=9000, max_tokens=333)
    conv.add_user("Remember: I am Ada. 我叫艾达。", pinned=True)
    conv.add_assistant([{"type": "thinking", "thinking": "ok", "signature": "s1"}, {"type": "text", "text": "Hi Ada"}])
    conv.add_user("Weather?")
    conv.add_assistant([{"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo", "n": [1, 2.5]}}])
    conv.add_user([{"type": "tool_result", "tool_use_id": "t1", "content": "cold", "is_error": False}])
    conv.add_assistant("It is cold.")
    return conv


def test_save_and_load_round_trip_exactly(tmp_path):
    conv = rich_conversation()
    path = tmp_path / "chat.json"
    conv.save(path)
    loaded = Conversation.load(path)
    assert loaded.to_dict() == conv.to_dict()
    assert loaded.messages == conv.messages
    assert loaded.request() == conv.request()
    assert (loaded.model, loaded.budget, loaded.max_tokens, loaded.pinned) == (MODEL, 9000, 333, [0, 1])
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "convo.conversation" and data["version"] == 1


def test_save_is_atomic_and_private(tmp_path):
    path = tmp_path / "chat.json"
    conv = rich_conversation()
    conv.save(path)
    conv.add_user("more")
    conv.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["chat.json"]  # no temp file left behind
    assert Conversation.load(path).messages[-1].content == "more"
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


def test_save_to_a_missing_folder(tmp_path):
    with pytest.raises(ConversationFileError, match="cannot write"):
        rich_conversation().save(tmp_path / "nope" / "chat.json")


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b'{"format": "convo.conversation", "version": 1, "model": "m", "bud', "not valid JSON"),
        (b'{"messages": []}', "not a convo conversation"),
        (b"[1, 2, 3]", "not a convo conversation"),
        (b'{"format": "convo.conversation", "version": 99}', "version 99"),
        (b'{"format": "convo.conversation", "version": 1, "budget": 10}', "missing the 'model'"),
        ((b'{"format": "convo.conversation", "version": 1, "model": "m", "budget": 100, "messages": '
          b'[{"role": "assistant", "content": "hi"}]}'), "first message must be a user"),
        (b'{"format": "convo.conversation", "version": 1, "model": "m", "budget": -1, "messages": []}', "budget"),
        (b"\xff\xfe\x00binary", "not UTF-8"),
    ],
)
def test_loading_bad_files(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConversationFileError, match=fragment):
        Conversation.load(path)


def test_loading_a_missing_file(tmp_path):
    with pytest.raises(ConversationFileError, match="does not exist"):
        Conversation.load(tmp_path / "absent.json")


def test_repr_is_short():
    r = repr(chat(n=2))
    assert "Conversation(" in r and "turns=2" in r and "Question" not in r


def test_exported_from_top_level():
    assert convo.Conversation is Conversation


def test_prompt_cache_setting_round_trips(tmp_path):
    conv = Conversation("sys", model=MODEL, budget=9000, prompt_cache="1h")
    conv.add_user("hello")
    conv.save(tmp_path / "c.json")
    assert Conversation.load(tmp_path / "c.json").prompt_cache == "1h"


_PIECES = [
    {"role": "user", "content": "hello there"},
    {"role": "assistant", "content": "hi"},
    {"role": "assistant", "content": [{"type": "text", "text": "let me look"},
                                      {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "x"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"},
                                 {"type": "text", "text": "and more"}]},
    {"role": "user", "content": "   "},
]


def test_extend_is_the_same_as_adding_one_by_one_or_adds_nothing():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.sampled_from(range(len(_PIECES))), max_size=7), st.booleans())
    def check(picks, pin):
        base = Conversation("Be brief.", model=MODEL, budget=50_000)
        base.add_user("start")
        base.add_assistant("ok")
        if pin:
            base.pin(-1)  # the turn new messages may join is pinned: its running totals must follow
        batch = [_PIECES[i] for i in picks]
        one_by_one, failed = base.fork(), False
        try:
            for m in batch:
                one_by_one.add(m)
        except convo.InvalidMessageError:
            failed = True
        at_once = base.fork()
        try:
            at_once.extend(batch)
        except convo.InvalidMessageError:
            assert failed and at_once.to_dict() == base.to_dict() and at_once.tokens == base.tokens
            return
        assert not failed
        assert at_once.to_dict() == one_by_one.to_dict()
        assert at_once.tokens == one_by_one.tokens and at_once.pinned == one_by_one.pinned
        if at_once.messages[-1].role != "user":
            return
        full = at_once.tokens + at_once.max_tokens
        for fraction in (1.0, 0.9, 0.8, 0.7):  # tighter budgets: what is kept depends on the pins' totals
            at_once.budget = one_by_one.budget = int(full * fraction)
            outcomes = []
            for conv in (at_once, one_by_one):
                try:
                    outcomes.append(conv.request()["messages"])
                except convo.ContextOverflowError as exc:
                    outcomes.append(str(exc))
            assert outcomes[0] == outcomes[1]

    check()
