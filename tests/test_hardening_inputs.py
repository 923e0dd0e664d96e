"""Issue 19, invalid requests and untyped errors: Conversation.request() never builds a request
the API refuses (item 12), and bad inputs stay inside the error tree (item 14): tampered files,
save into a directory, lone surrogates, objects and sets, NaN sampling parameters; and the
small one: stale temp files left by a killed save are cleaned on the next save."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

import convo
from convo import Conversation, ConversationFileError, ConvoError, InvalidInputError, ModelRuleError
from tests.helpers import MODEL, quick_client

ASK = [{"role": "user", "content": "Say hi"}]


def conversation(**kw):
    conv = Conversation(model=MODEL, **kw)
    conv.add_user("Start the answer for me")
    return conv


# -- item 12 -------------------------------------------------------------------------------


def test_item12_a_final_assistant_turn_with_trailing_whitespace_is_sent_stripped(fresh):
    conv = Conversation(model="claude-haiku-4-5")  # a model that takes a prefill
    conv.add_user("Finish the sentence")
    conv.add_assistant("The answer is   ")
    request = conv.request()
    assert request["messages"][-1]["content"] == "The answer is"
    assert conv.messages[-1].content == "The answer is   "  # the history keeps the turn as it was
    client = quick_client(fresh)
    client.create(**request)  # the simulator, which enforces the API's rule, accepts it
    conv.add_assistant([{"type": "text", "text": "more\n"}])
    assert conv.request()["messages"][-1]["content"][-1]["text"] == "more"


def test_item12_a_thinking_block_in_the_final_turn_while_thinking_is_off_is_refused():
    conv = conversation()
    conv.add_assistant([{"type": "thinking", "thinking": "Let me think", "signature": "sig"}])
    with pytest.raises(ConvoError, match="thinking is off"):
        conv.request()
    assert conv.request(thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)["thinking"]


def test_item12_max_tokens_above_the_model_limit_is_typed_and_names_the_limit():
    conv = conversation()
    with pytest.raises(ModelRuleError, match="128000"):
        conv.request(max_tokens=10**9)
    with pytest.raises(ModelRuleError):
        Conversation(model=MODEL, max_tokens=10**9)


def test_item14_create_max_tokens_above_the_limit_is_typed(fresh):
    client = quick_client(fresh)
    with pytest.raises(ModelRuleError, match="128000"):
        client.create(messages=ASK, max_tokens=10**9)


# -- item 14: numbers, objects and text the JSON encoder would refuse -----------------------------


@pytest.mark.parametrize("params", [
    {"temperature": math.nan}, {"top_p": math.inf}, {"temperature": -math.inf},
    {"tools": [{"name": "f", "input_schema": {"type": "object", "properties": {"a": {"enum": {1, 2}}}}}]},
    {"tools": [{"name": "f", "input_schema": {"type": "object", "default": object()}}]},
    {"metadata": {"user_id": "ann\ud800"}},
    {"stop_sequences": ["end\udfff"]},
])
def test_item14_unsendable_parameters_are_typed_on_every_path(fresh, params):
    client = quick_client(fresh)
    with pytest.raises(InvalidInputError):
        client.create(messages=ASK, max_tokens=10, **params)
    with pytest.raises(InvalidInputError), client.stream(messages=ASK, max_tokens=10, **params) as s:
        s.get_final_message()
    with pytest.raises(InvalidInputError):
        conversation().request(**params)
    assert not [r for r in fresh.requests if r.path.startswith("/v1/messages")]  # nothing was sent


@pytest.mark.parametrize("tools", ["abc", [1, 2], {"name": "f"}])
def test_item14_tools_that_are_not_a_list_of_definitions_are_refused(tools):
    with pytest.raises(InvalidInputError, match="tools"):
        conversation().request(tools=tools)


@pytest.mark.parametrize("content", ["caf\ud800e", [{"type": "text", "text": "a\udfffb"}]])
def test_item14_lone_surrogates_are_refused_when_added_and_when_sent(fresh, content):
    conv = Conversation(model=MODEL)
    with pytest.raises(InvalidInputError, match="surrogate"):
        conv.add_user(content)
    assert len(conv) == 0
    with pytest.raises(InvalidInputError, match="surrogate"):
        Conversation("sys\ud800", model=MODEL)
    client = quick_client(fresh)
    with pytest.raises(InvalidInputError, match="surrogate"):
        client.create(messages=[{"role": "user", "content": content}], max_tokens=10)
    with pytest.raises(InvalidInputError, match="surrogate"):
        client.count_tokens([{"role": "user", "content": content}])


@pytest.mark.parametrize("bad", [object(), {1, 2}, b"bytes", math.nan])
def test_item14_objects_in_blocks_are_typed(bad):
    conv = conversation()
    with pytest.raises(InvalidInputError):
        conv.add_assistant([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": bad}}])
    with pytest.raises(InvalidInputError):
        conv.add_user([{"type": "text", "text": bad}])


# -- item 14: files ---------------------------------------------------------------------------


def _saved(tmp_path, change):
    conv = conversation()
    conv.add_assistant("Hi")
    path = tmp_path / "chat.json"
    conv.save(path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("change", [
    lambda d: d.__setitem__("strategy", "window"),
    lambda d: d.__setitem__("strategy", {"type": "or_else", "strategies": "abc"}),
    lambda d: d.__setitem__("strategy", {"type": "or_else", "strategies": ["abc", 5]}),
    lambda d: d.__setitem__("strategy", {"type": "server_edits", "fallback": "abc"}),
    lambda d: d.__setitem__("strategy", {"type": "server_edits", "fallback": [1]}),
    lambda d: d.__setitem__("version", True),
    lambda d: d.__setitem__("version", -5),
    lambda d: d.__setitem__("version", 0),
    lambda d: d.__setitem__("version", 1.0),
    lambda d: d.__setitem__("version", "1"),
    lambda d: d.__setitem__("messages", [{"role": "user", "content": [{"type": "text", "text": ["x"]}]}]),
    lambda d: d.__setitem__("summary", {"text": "s", "turns": True}),
    lambda d: d.__setitem__("pinned", [[0]]),
], ids=lambda f: "")
def test_item14_tampered_files_raise_the_file_error(tmp_path, change):
    with pytest.raises(ConversationFileError):
        Conversation.load(_saved(tmp_path, change))


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_item14_a_deeply_nested_file_is_a_file_error(tmp_path, depth):
    path = tmp_path / "deep.json"
    head = f'{{"format": "convo.conversation", "version": 1, "model": "{MODEL}", "budget": 1000, "messages": '
    path.write_text(head + "[" * depth + "]" * depth + "}")
    with pytest.raises(ConversationFileError):
        Conversation.load(path)


def test_item14_save_into_a_directory_is_a_file_error(tmp_path):
    with pytest.raises(ConversationFileError, match="directory"):
        conversation().save(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_small_stale_temp_files_of_a_killed_save_are_removed_on_the_next_save(tmp_path):
    path = tmp_path / "chat.json"
    stale = tmp_path / ".chat.json.abc123.tmp"
    stale.write_text("x" * 100_000)  # what a kill -9 during save leaves
    old = time.time() - 3600
    os.utime(stale, (old, old))
    young = tmp_path / ".chat.json.def456.tmp"  # another process's save in progress: left alone
    young.write_text("y")
    other = tmp_path / ".notes.json.aaa.tmp"  # another file's: left alone
    other.write_text("z")
    os.utime(other, (old, old))
    conversation().save(path)
    assert not stale.exists() and young.exists() and other.exists()
    assert Conversation.load(path).messages[0].text == "Start the answer for me"


# -- item 13 ---------------------------------------------------------------------------------

from hypothesis import given, settings
from hypothesis import strategies as st


@given(
    tools=st.integers(1, 4), words=st.integers(1, 20), budget=st.integers(300, 900), turns=st.integers(0, 8),
    ttl=st.sampled_from([True, "1h"]), system=st.sampled_from([None, "Be terse."]), max_tokens=st.integers(16, 64),
)
@settings(max_examples=150, deadline=None)
def test_item13_prompt_cache_with_tools_and_no_system_stays_within_budget(tools, words, budget, turns, ttl, system, max_tokens):
    from convo.messages import to_message, to_system
    from convo.tokens import default_counter

    defs = [{"name": f"tool_{i}", "description": "Looks up " * words,
             "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}} for i in range(tools)]
    try:
        conv = Conversation(system, model=MODEL, budget=budget, max_tokens=max_tokens, prompt_cache=ttl)
        for i in range(turns):
            conv.add_user(f"Question {i} " + "word " * (i * 3 % 17 + 1))
            conv.add_assistant(f"Answer {i}")
        conv.add_user("And the last question")
        request = conv.request(tools=defs)
    except ConvoError:
        return  # the must-keep part does not fit: refused, which is right
    assert "cache_control" in request["tools"][-1] or system
    counted = default_counter().count_request(
        [to_message(m) for m in request["messages"]], system=to_system(request.get("system")), tools=request["tools"]
    )
    assert counted + request["max_tokens"] <= budget


@pytest.mark.parametrize("option", [{"timeout": float("nan")}, {"timeout": float("inf")}, {"timeout": -1},
                                    {"timeout": "5"}, {"cache_ttl": float("nan")}, {"cache_ttl": 0}])  # fmt: skip
def test_item14_client_numbers_are_finite_and_positive(option):
    from convo import Client

    with pytest.raises(convo.InvalidConfigError) as info:
        Client(api_key="k", **option)
    assert next(iter(option)) in str(info.value)
    client = Client(api_key="k", timeout=5)
    name, value = next(iter(option.items()))
    with pytest.raises(convo.InvalidConfigError):
        setattr(client, name, value)  # a live setting is checked the same way, and keeps its value
    assert client.timeout == 5 and client.cache_ttl is None
