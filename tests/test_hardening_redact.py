"""Issue 19, sensitive data reaching the API despite a Redactor: summaries (item 1), the batch
paths (item 2, verified), count_tokens and a Conversation's ExactCounter (item 3), fields never
looked at (item 4), placeholders stable for the whole conversation with thinking restored before
storage (item 5), and checkpoints (item 7, verified). Every check reads what the simulator
received over HTTP."""

from __future__ import annotations

import json
import sqlite3

import anthropic

from convo import Conversation, ExactCounter, Redactor, SlidingWindow, Summarize, map_reduce
from convo.sim.blocks import thinking_signature
from tests.helpers import MODEL, quick_client

ANN, BOB, CARL = "ann@example.com", "bob@example.com", "carl@example.com"
CARD = "4111 1111 1111 1111"
RAW = (ANN, BOB, CARL, CARD)
THINK = {"type": "enabled", "budget_tokens": 1024}


def leaked(sim) -> list[str]:
    """Raw values found in any body the simulator received (in any JSON escaping)."""
    bodies = " ".join(json.dumps(r.body, ensure_ascii=False) for r in sim.requests if r.body is not None)
    return [v for v in RAW if v in bodies]


def placeholder_conv(client, **kw):
    return Conversation(model=MODEL, client=client, redactor=Redactor(mode="placeholder"), **kw)


# -- item 1 --------------------------------------------------------------------------------------


def test_item1_summarizing_sends_no_raw_values_and_stores_none(fresh):
    client = quick_client(fresh)
    conv = placeholder_conv(client, budget=1400, max_tokens=200, strategy=Summarize(trigger=0.3, keep_last=1))
    for i, who in enumerate((ANN, BOB, CARL, ANN, BOB)):
        conv.send(f"Turn {i}: please remember that {who} owns card {CARD} and the plan for the launch review")
    assert conv.summary is not None, conv.summary_error
    assert [r for r in fresh.requests if "Summarize this conversation" in json.dumps(r.body)]  # a summarizing call went out
    assert leaked(fresh) == []
    assert not any(v in conv.summary.text for v in RAW)
    assert "[EMAIL_" in conv.summary.text or "[CARD_" in conv.summary.text  # it speaks of them by placeholder
    assert any(ANN in m.text for m in conv.messages)  # the history itself is the user's, restored


def test_item1_a_custom_summarizer_sees_placeholders_only(fresh):
    seen = []

    def summarizer(previous, turns):
        seen.append((previous, [m.text for m in turns]))
        return "Earlier: " + " ".join(m.text[:60] for m in turns)

    conv = placeholder_conv(quick_client(fresh), budget=1400, max_tokens=200,
                            strategy=Summarize(trigger=0.3, keep_last=1, summarizer=summarizer))
    for i in range(5):
        conv.send(f"Turn {i}: {ANN} pays with {CARD}, remember the launch review and the budget numbers")
    assert seen and conv.summary is not None
    assert not any(v in json.dumps(seen) for v in RAW)
    assert not any(v in conv.summary.text for v in RAW)
    assert leaked(fresh) == []


# -- item 2 (verified) and item 7 (verified) --------------------------------------------------------


def test_item2_the_batches_api_path_sends_nothing_raw(fresh):
    client = quick_client(fresh, redactor=Redactor(mode="placeholder"))
    results = client.batch([{"messages": [{"role": "user", "content": f"Mail {ANN} about {CARD}"}], "max_tokens": 40}],
                           via="batches_api", progress=False)
    assert results[0].message is not None and ANN in results[0].message.content[0].text  # restored for the caller
    assert leaked(fresh) == []


def _checkpoint_text(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return " ".join(str(v) for row in conn.execute("SELECT * FROM entries") for v in row)
    finally:
        conn.close()


def test_item7_batch_and_map_reduce_checkpoints_store_placeholders(fresh, tmp_path):
    client = quick_client(fresh, redactor=Redactor(mode="placeholder"))
    path = tmp_path / "batch.ckpt"
    results = client.batch([{"messages": [{"role": "user", "content": f"Mail {ANN} today"}], "max_tokens": 40}],
                           checkpoint=path, progress=False)
    assert ANN in results[0].message.content[0].text
    stored = _checkpoint_text(path)
    assert stored and ANN not in stored and "[EMAIL_1]" in stored
    mr = tmp_path / "mr.ckpt"
    text = " ".join(f"Section {i}: {BOB} signed the contract for the launch." for i in range(40))
    map_reduce(text, "List who signed", client=client, chunk_tokens=200, checkpoint=mr, progress=False, max_tokens=100)
    stored = _checkpoint_text(mr)
    assert stored and BOB not in stored
    assert leaked(fresh) == []


# -- item 3 --------------------------------------------------------------------------------------


def test_item3_count_tokens_through_the_client_is_redacted(fresh):
    client = quick_client(fresh, redactor=Redactor())
    assert client.count_tokens([{"role": "user", "content": f"Card {CARD}, mail {ANN}"}], system=f"For {BOB}") > 0
    assert [r.path for r in fresh.requests] == ["/v1/messages/count_tokens"]
    assert leaked(fresh) == []


def test_item3_an_exact_counter_in_a_redacting_conversation_sends_nothing_raw(fresh):
    sdk = anthropic.Anthropic(api_key="test", base_url=fresh.base_url)
    conv = Conversation(f"Escalate to {BOB}", model=MODEL, counter=ExactCounter(sdk, model=MODEL), redactor=Redactor())
    conv.add_user(f"My card is {CARD} and my mail {ANN}")
    conv.add_assistant(f"Noted, {ANN}.")
    conv.add_user("Thanks")
    conv.request(tools=[{"name": "mail", "description": f"Mail {CARL}", "input_schema": {"type": "object"}}])
    assert any(r.path == "/v1/messages/count_tokens" for r in fresh.requests)
    assert leaked(fresh) == []
    assert conv.tokens > 0


# -- item 4 --------------------------------------------------------------------------------------


TOOLS = [{
    "name": "send_mail",
    "description": f"Sends mail; the default sender is {BOB}",
    "input_schema": {"type": "object", "properties": {
        "to": {"type": "string", "description": f"e.g. {CARL}", "default": CARL, "examples": [ANN]},
        "card": {"type": "string", "enum": [CARD, "none"]},
    }, "required": ["to"]},
}]


def _fields_request():
    return {
        "messages": [
            {"role": "user", "content": [
                {"type": "document", "title": f"Letter from {ANN}", "context": f"sent by {BOB}",
                 "source": {"type": "text", "media_type": "text/plain", "data": "Hello there"}},
                {"type": "text", "text": "Summarize the letter"},
            ]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "send_mail", "input": {ANN: {CARL: "x"}, "to": BOB}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sent"}]},
        ],
        "stop_sequences": [f"Regards, {CARL}", "END"],
        "tools": TOOLS,
        "max_tokens": 60,
    }


def test_item4_every_field_with_user_text_is_redacted_on_create_and_stream(fresh):
    client = quick_client(fresh, user=ANN, redactor=Redactor(mode="placeholder"))
    client.create(**_fields_request())
    with client.stream(**_fields_request()) as s:
        s.get_final_message()
    client.count_tokens(**{k: v for k, v in _fields_request().items() if k not in ("max_tokens", "stop_sequences")})
    assert len(fresh.requests) == 3
    assert leaked(fresh) == []
    body = fresh.requests[0].body
    assert body["metadata"]["user_id"].startswith("user-")  # opaque, and the same for the same user
    assert body["metadata"]["user_id"] == fresh.requests[1].body["metadata"]["user_id"]
    assert body["tools"][0]["input_schema"]["required"] == ["to"]  # structure is left alone
    assert set(body["tools"][0]["input_schema"]["properties"]) == {"to", "card"}
    assert body["stop_sequences"][1] == "END"
    assert ANN in client.stats.users  # the ledger (and a budget) still see the real user, locally


def test_item4_tool_use_keys_are_redacted_and_restored():
    r = Redactor(mode="placeholder")
    redacted, mapping = r.redact_request(_fields_request())
    sent = redacted["messages"][1]["content"][0]["input"]
    assert ANN not in json.dumps(sent) and CARL not in json.dumps(sent)
    from convo.redact import restore_message

    back = restore_message({"role": "assistant", "content": redacted["messages"][1]["content"]}, mapping)
    assert back["content"][0]["input"] == {ANN: {CARL: "x"}, "to": BOB}


def test_item4_a_conversation_redacts_the_same_fields(fresh):
    conv = placeholder_conv(quick_client(fresh))  # a Client(user=...) adds metadata after: redacted by a Client redactor
    conv.add_user([{"type": "document", "title": f"From {ANN}", "source": {"type": "text", "media_type": "text/plain", "data": "Hi"}},
                   {"type": "text", "text": "Read it"}])
    conv.send("And reply", tools=TOOLS, stop_sequences=[f"Bye {CARL}"])
    assert leaked(fresh) == []


# -- item 5 --------------------------------------------------------------------------------------


def test_item5_placeholders_keep_their_meaning_when_the_window_drops_turns(fresh):
    client = quick_client(fresh)
    conv = placeholder_conv(client, budget=700, max_tokens=100, strategy=SlidingWindow())
    conv.send(f"Write to {BOB} about the launch plan and the budget for next quarter, please, in detail")
    first = fresh.requests[-1].body["messages"][0]["content"]
    assert "[EMAIL_1]" in first
    for i in range(6):
        conv.send(f"Filler turn {i} about the weather, the garden, the roses and the tulips this spring")
    conv.send(f"Now write to {CARL} as well")
    last = fresh.requests[-1].body
    assert "Write to" not in json.dumps(last)  # the window dropped bob's turn
    assert "[EMAIL_1]" not in json.dumps(last["messages"][-1])  # carl is not given bob's placeholder
    assert "[EMAIL_2]" in last["messages"][-1]["content"]
    conv.send(f"And {BOB} again")
    assert "[EMAIL_1]" in fresh.requests[-1].body["messages"][-1]["content"]  # bob keeps his
    assert leaked(fresh) == []


def test_item5_thinking_is_restored_in_the_history_and_sent_back_as_signed(fresh, tmp_path):
    tools = [{"name": "send_mail", "description": "Send an e-mail", "input_schema": {
        "type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}}]
    conv = placeholder_conv(quick_client(fresh))
    conv.send(f"Please send_mail to {BOB} now", tools=tools, thinking=THINK, max_tokens=2048)
    stored = conv.messages[-1].to_api()["content"]
    thought = next(b for b in stored if b["type"] == "thinking")
    assert BOB in thought["thinking"]  # restored before storage, like the text
    call = next(b for b in stored if b["type"] == "tool_use")
    conv.add_user([{"type": "tool_result", "tool_use_id": call["id"], "content": "sent"}])
    path = tmp_path / "chat.json"
    conv.save(path)
    loaded = Conversation.load(path)
    loaded.client, loaded.redactor = conv.client, conv.redactor
    for c in (conv, loaded):
        request = c.request(tools=tools, thinking=THINK, max_tokens=2048)
        sent = next(b for b in request["messages"][1]["content"] if b["type"] == "thinking")
        assert BOB not in sent["thinking"] and "[EMAIL_1]" in sent["thinking"]
        assert thinking_signature(0, sent["thinking"]) == sent["signature"]  # the exact text the server signed
        c.client.create(**request)
    assert leaked(fresh) == []
