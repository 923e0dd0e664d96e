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
    msg = to_message(
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {"a": 1}}]}
    )
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
        ({"role": "user", "content": [{"text": "no type"}]}, "content.0.type: Field required"),
        ({"role": "user", "content": [{"type": 42}]}, "content.0.type: Input should be a valid string"),
        (
            {"role": "user", "content": [{"type": "text", "text": " "}, {"type": "text", "text": "\n"}]},
            "only whitespace",
        ),
        (
            {"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]},
            "cannot appear in a user",
        ),
        (
            {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "a"}]},
            "cannot appear in a assistant",
        ),
        ({"role": "assistant", "content": [png_block(2, 2)]}, "cannot appear"),
        (
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}],
            },
            "empty",
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "!!notb64"}}
                ],
            },
            "base64",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "aGk="}}],
            },
            "media_type",
        ),
        (
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "tool_result", "tool_use_id": "t"}]},
            "must come before",
        ),
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
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, _tool_result()],
            "answers no tool_use",
        ),
        ([{"role": "user", "content": "q"}, _tool_call(), {"role": "user", "content": "x"}], "tool_result for each"),
        (
            [{"role": "user", "content": "q"}, _tool_call(), {"role": "assistant", "content": "x"}],
            "tool_result for each",
        ),
        ([{"role": "user", "content": "q"}, _tool_call(), _tool_result(), _tool_call()], "already used"),
    ]
    for history, fragment in cases:
        with pytest.raises(InvalidMessageError, match=fragment):
            check_history(history)


# -- every block type the API returns or accepts ---------------------------------------------

SEARCH_TURN = {
    "role": "assistant",
    "content": [
        {"type": "text", "text": "Let me search."},
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "Oslo weather"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": [
            {"type": "web_search_result", "url": "https://example.com/oslo", "title": "Oslo",
             "encrypted_content": "EqgfCioIARgBIiQ3", "page_age": None}]},
        {"type": "text", "text": "It is cold.", "citations": [
            {"type": "web_search_result_location", "url": "https://example.com/oslo", "title": "Oslo",
             "encrypted_index": "Eo8BCioIAhgBIiQ", "cited_text": "cold"}]},
    ],
}  # fmt: skip
CODE_TURN = {
    "role": "assistant",
    "content": [
        {"type": "server_tool_use", "id": "srvtoolu_02", "name": "code_execution", "input": {"code": "print(1)"}},
        {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_02",
         "content": {"type": "code_execution_result", "stdout": "1\n", "stderr": "", "return_code": 0, "content": []}},
        {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "echo", "server_name": "tools", "input": {"x": 1}},
        {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "is_error": False,
         "content": [{"type": "text", "text": "1"}]},
        {"type": "container_upload", "file_id": "file_01"},
        {"type": "text", "text": "Done."},
    ],
}  # fmt: skip
SEARCH_RESULT = {"type": "search_result", "source": "https://kb.example/1", "title": "KB 1",
                 "content": [{"type": "text", "text": "Oslo is cold in winter."}], "citations": {"enabled": True}}  # fmt: skip
USER_BLOCKS = {
    "role": "user",
    "content": [
        SEARCH_RESULT,
        {"type": "container_upload", "file_id": "file_02"},
        {"type": "text", "text": "Use these."},
    ],
}
UNKNOWN = {"type": "hologram", "data": {"frames": [1, 2]}, "note": None, "cache_control": {"type": "ephemeral"}}


@pytest.mark.parametrize("raw", [SEARCH_TURN, CODE_TURN, USER_BLOCKS,
                                 {"role": "user", "content": [UNKNOWN, {"type": "text", "text": "x"}]},
                                 {"role": "assistant", "content": [UNKNOWN]}])  # fmt: skip
def test_every_block_type_is_accepted_and_round_trips_exactly(raw):
    msg = to_message(raw)
    assert msg.to_api() == raw
    again = msg.to_api()
    again["content"][0]["type"] = "changed"  # a fresh copy: the message is not touched
    assert msg.to_api() == raw


def test_search_results_go_in_user_content_and_tool_results():
    call = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "kb", "input": {}}]}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": [SEARCH_RESULT]},
                                           {"type": "tool_result", "tool_use_id": "toolu_9b", "content": [UNKNOWN]}]}  # fmt: skip
    call["content"].append({"type": "tool_use", "id": "toolu_9b", "name": "kb", "input": {}})
    history = check_history([{"role": "user", "content": "q"}, call, result])
    assert [m.to_api() for m in history][2] == result


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ([{"type": "web_search_tool_result", "tool_use_id": "srvtoolu_x", "content": []}], "answers no earlier"),
        ([SEARCH_TURN["content"][2], SEARCH_TURN["content"][1]], "answers no earlier"),  # result before its call
        ([*SEARCH_TURN["content"][1:3], SEARCH_TURN["content"][2]], "appears twice"),
        ([SEARCH_TURN["content"][1], SEARCH_TURN["content"][1]], "used twice"),
        ([{"type": "mcp_tool_result", "tool_use_id": "nope", "content": "x"}], "answers no earlier"),
    ],
)
def test_server_tool_results_pair_with_their_call_in_the_same_message(content, fragment):
    with pytest.raises(InvalidMessageError, match=fragment):
        to_message({"role": "assistant", "content": content})


def test_a_paused_server_tool_call_without_its_result_is_accepted():
    paused = {"role": "assistant", "content": [SEARCH_TURN["content"][1]]}  # stop_reason pause_turn
    assert check_history([{"role": "user", "content": "q"}, paused])[1].to_api() == paused


@pytest.mark.parametrize("block", [SEARCH_TURN["content"][1], CODE_TURN["content"][1], CODE_TURN["content"][2]])
def test_server_blocks_are_refused_in_a_user_message(block):
    with pytest.raises(InvalidMessageError, match="cannot appear in a user message"):
        to_message({"role": "user", "content": [block]})


def test_whitespace_only_text_beside_real_content_is_accepted():
    raw = {"role": "user", "content": [{"type": "text", "text": "\n\n"}, {"type": "text", "text": "hi"}]}
    assert to_message(raw).to_api() == raw
    with pytest.raises(InvalidMessageError, match="only whitespace"):
        to_message({"role": "user", "content": [{"type": "text", "text": " "}]})


@pytest.mark.parametrize("content", ["Once upon a ", [{"type": "text", "text": "Once upon a\n"}]])
def test_a_final_assistant_turn_ending_in_whitespace_is_refused(content):
    history = [{"role": "user", "content": "Tell me a story"}, {"role": "assistant", "content": content}]
    with pytest.raises(InvalidMessageError, match="ends in whitespace") as info:
        check_history(history)
    assert "strip" in str(info.value) and "message 1" in str(info.value)
    history[1] = {"role": "assistant", "content": "Once upon a"}
    assert len(check_history(history)) == 2  # stripped: accepted
    not_final = [*history[:1], {"role": "assistant", "content": "Hi "}, {"role": "user", "content": "go on"}]
    assert len(check_history(not_final)) == 3  # only the final turn is a prefill


def test_consecutive_turns_of_one_role_are_accepted():
    history = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
               {"role": "assistant", "content": "c"}, {"role": "assistant", "content": "d"}]  # fmt: skip
    assert [m.text for m in check_history(history)] == ["a", "b", "c", "d"]


def test_server_tool_turns_go_through_client_and_conversation(fresh, tmp_path):
    from convo import Client, Conversation

    history = [{"role": "user", "content": "Weather in Oslo?"}, SEARCH_TURN, USER_BLOCKS, CODE_TURN,
               {"role": "user", "content": [UNKNOWN, {"type": "text", "text": "Thanks"}]}]  # fmt: skip
    c = Client(api_key="k", base_url=fresh.base_url, model="claude-sonnet-4-6")
    assert c.create(history, max_tokens=50).content[0].text
    assert fresh.requests[-1].body["messages"] == history  # sent exactly as given
    conv = Conversation(model="claude-sonnet-4-6", budget=100_000)
    conv.extend(history)
    assert conv.request()["messages"] == history
    conv.save(tmp_path / "c.json")
    assert Conversation.load(tmp_path / "c.json").request()["messages"] == history
