import pytest

import convo
from convo import InvalidMessageError, Message, check_history, to_message

from .helpers import png_block


def test_plain_dicts_become_models_and_round_trip():
    raw = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
    }
    msg = to_message(raw)
    assert isinstance(msg, Message)
    assert msg.tool_use_ids() == ["toolu_1"]
    assert msg.to_api() == raw


def test_unknown_fields_pass_through():
    raw = {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
    assert to_message(raw).to_api() == raw


def test_bare_content_with_role():
    assert to_message("hi", role="user").content == "hi"
    msg = to_message([{"type": "text", "text": "a"}, png_block(10, 10)], role="user")
    assert [b.type for b in msg.blocks] == ["text", "image"]
    assert to_message({"type": "text", "text": "x"}, role="assistant").text == "x"


def test_to_api_is_a_fresh_copy():
    msg = to_message({"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {"a": 1}}]})
    d = msg.to_api()
    d["content"][0]["input"]["a"] = 2
    assert msg.to_api()["content"][0]["input"] == {"a": 1}


def test_sdk_response_object_becomes_assistant_message():
    from anthropic.types import Message as SDKMessage

    resp = SDKMessage.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-6",
            "content": [{"type": "text", "text": "Hello!", "citations": None}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }
    )
    msg = to_message(resp)
    assert msg.role == "assistant" and msg.text == "Hello!"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"role": "system", "content": "x"}, "Conversation(system="),
        ({"role": "bot", "content": "x"}, "unknown role 'bot'"),
        ({"content": "x"}, "no 'role'"),
        ({"role": "user", "content": ""}, "empty"),
        ({"role": "user", "content": "   \n"}, "empty"),
        ({"role": "user", "content": []}, "empty content list"),
        ({"role": "user", "content": 42}, "must be a string or a list"),
        ({"role": "user", "content": None}, "must be a string or a list"),
        ({"role": "user", "content": [{"type": "text", "text": ""}]}, "empty"),
        ({"role": "user", "content": [{"type": "video"}]}, "does not match any of the expected tags"),
        ({"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}, "cannot appear in a user"),
        ({"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "a"}]}, "cannot appear in a assistant"),
        ({"role": "assistant", "content": [png_block(2, 2)]}, "cannot appear"),
        ({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}]}, "empty"),
        ({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "!!notb64"}}]}, "base64"),
        ({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "aGk="}}]}, "media_type"),
        ({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "tool_result", "tool_use_id": "t"}]}, "must come before"),
        ("hello", "must be a dict"),
    ],
)
def test_bad_messages_raise_typed_errors_that_say_what_to_do(raw, fragment):
    with pytest.raises(InvalidMessageError) as info:
        to_message(raw)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, convo.ConvoError)


def _tool_call(i="t1"):
    return {"role": "assistant", "content": [{"type": "tool_use", "id": i, "name": "f", "input": {}}]}


def _tool_result(i="t1"):
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": i, "content": "42"}]}


def test_history_rules():
    ok = [{"role": "user", "content": "q"}, _tool_call(), _tool_result(), {"role": "assistant", "content": "a"}]
    assert len(check_history(ok)) == 4
    cases = [
        ([{"role": "assistant", "content": "a"}], "first message must be a user"),
        ([_tool_result()], "answers no tool_use"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, _tool_result()], "answers no tool_use"),
        ([{"role": "user", "content": "q"}, _tool_call(), {"role": "user", "content": "x"}], "tool_result for each"),
        ([{"role": "user", "content": "q"}, _tool_call(), {"role": "assistant", "content": "x"}], "tool_result for each"),
        ([{"role": "user", "content": "q"}, _tool_call(), _tool_result(), _tool_call()], "already used"),
    ]
    for history, fragment in cases:
        with pytest.raises(InvalidMessageError, match=fragment):
            check_history(history)
