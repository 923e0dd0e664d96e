"""Stop reasons and blocks on demand: pause_turn (a server-tool step), refusal (with
stop_details), model_context_window_exceeded, server tools in replies, and the continuation
requests convo sends to recover a broken stream on models without prefill."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import pytest

import convo.sim
from convo.sim import OfflineModel, Simulator

DATA = json.loads((Path(convo.sim.__file__).parent.parent / "data" / "models.json").read_text())["models"]
#: Replies that open with text: a model without prefill whose thinking is not always on.
NO_PREFILL = next(m for m, e in DATA.items()
                  if not e["prefill"] and not e["thinking"]["always_on"] and e["status"] != "retired")  # fmt: skip
ASK = [{"role": "user", "content": "Tell me about the history of the printing press in Europe."}]
SEARCH = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
CONTINUE = "Your previous reply was cut off. Please continue exactly where you stopped."



@pytest.fixture
def client(sim):
    sim.faults = None
    with anthropic.Anthropic(base_url=sim.base_url, api_key="t", max_retries=0) as c:
        yield c


def create(client, messages=ASK, **kw):
    kw.setdefault("max_tokens", 500)
    return client.messages.create(model=NO_PREFILL, messages=messages, **kw)


def streamed(client, messages=ASK, **kw):
    with client.messages.stream(model=NO_PREFILL, max_tokens=500, messages=messages, **kw) as stream:
        return stream.get_final_message()


# -- stop kinds from the fault schedule ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_pause_turn_is_a_server_tool_step_then_a_pause(sim, client, stream):
    sim.faults.push("pause_turn")
    msg = streamed(client) if stream else create(client)
    assert msg.stop_reason == "pause_turn"
    assert [b.type for b in msg.content] == ["server_tool_use", "web_search_tool_result"]
    use, result = msg.content
    assert use.name == "web_search" and use.id.startswith("srvtoolu_") and use.input["query"]
    assert result.tool_use_id == use.id and result.content[0].url.startswith("https://")
    # Sent back as the final assistant turn, the paused turn goes on (this is not a prefill).
    history = [*ASK, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]}]
    done = create(client, history)
    assert done.stop_reason == "end_turn" and done.content[0].type == "text"
    assert done.content[0].text == create(client).content[0].text


@pytest.mark.parametrize("stream", [False, True])
def test_refusal_carries_stop_details(sim, client, stream):
    full = create(client).content[0].text
    sim.faults.push("refusal")
    msg = streamed(client) if stream else create(client)
    assert msg.stop_reason == "refusal"
    assert msg.stop_details is not None and msg.stop_details.type == "refusal" and msg.stop_details.explanation
    assert full.startswith(msg.content[0].text) and len(msg.content[0].text) < len(full)


def test_refusal_from_the_constructor_schedule():
    with Simulator(faults=["refusal"]) as s, anthropic.Anthropic(base_url=s.base_url, api_key="t", max_retries=0) as c:
        assert c.messages.create(model=NO_PREFILL, max_tokens=200, messages=ASK).stop_reason == "refusal"
        assert c.messages.create(model=NO_PREFILL, max_tokens=200, messages=ASK).stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
def test_model_context_window_exceeded_truncates(sim, client, stream):
    full = create(client).content[0].text
    sim.faults.push("model_context_window_exceeded")
    msg = streamed(client) if stream else create(client)
    assert msg.stop_reason == "model_context_window_exceeded" and msg.stop_details is None
    assert full.startswith(msg.content[0].text) and msg.content[0].text != full


# -- server tools on request ------------------------------------------------------------------------


def test_a_server_tool_the_message_asks_for_runs_one_step(client):
    ask = [{"role": "user", "content": "Search the web for the latest tide tables in Brest"}]
    msg = create(client, ask, tools=SEARCH)
    assert [b.type for b in msg.content] == ["server_tool_use", "web_search_tool_result", "text"]
    assert msg.stop_reason == "end_turn"
    assert msg.usage.server_tool_use.web_search_requests == 1
    assert streamed(client, ask, tools=SEARCH).usage.server_tool_use.web_search_requests == 1
    dump = [b.model_dump(exclude={"parsed_output"}) for b in msg.content]
    assert [b.model_dump(exclude={"parsed_output"}) for b in streamed(client, ask, tools=SEARCH).content] == dump
    assert [b.type for b in create(client, ask).content] == ["text"]  # no server tool offered, none used


def test_code_execution_and_web_fetch_results(client):
    run = create(client, [{"role": "user", "content": "Run this and compute 2+2"}],
                 tools=[{"type": "code_execution_20250825", "name": "code_execution"}])  # fmt: skip
    assert run.content[1].type == "code_execution_tool_result"
    fetch = create(client, [{"role": "user", "content": "Fetch https://example.org/page please"}],
                   tools=[{"type": "web_fetch_20250910", "name": "web_fetch"}])  # fmt: skip
    assert fetch.content[0].input == {"url": "https://example.org/page"}
    assert fetch.content[1].type == "web_fetch_tool_result"


# -- continuation requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 17, 60])
def test_a_continuation_request_gets_the_rest_of_the_answer(client, cut):
    full = create(client).content[0].text
    partial = full[:cut]
    history = [*ASK, {"role": "assistant", "content": partial}, {"role": "user", "content": CONTINUE}]
    rest = create(client, history).content[0].text
    assert partial + rest == full or partial.rstrip() + rest == full
    assert streamed(client, history).content[0].text == rest  # deterministic, streaming or not


def test_a_continuation_that_is_not_a_prefix_is_answered_normally(client):
    history = [*ASK, {"role": "assistant", "content": "Something else entirely"}, {"role": "user", "content": CONTINUE}]
    text = create(client, history).content[0].text
    full = create(client).content[0].text
    assert text and text != full and not full.endswith(text)


def test_continue_after_a_finished_answer_is_a_new_request(client):
    full = create(client).content[0].text
    history = [*ASK, {"role": "assistant", "content": full}, {"role": "user", "content": "Continue, please."}]
    text = create(client, history).content[0].text
    assert text.strip() and text != full


def test_continuation_keeps_the_tool_calls():
    model = OfflineModel(seed=0)
    tools = [{"name": "get_time", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                                   "required": ["city"]}}]  # fmt: skip
    ask = [{"role": "user", "content": "use get_time for Lisbon"}]
    full = model.reply(ask, max_tokens=200, tools=tools)
    partial = full.text[:5]
    again = model.reply([*ask, {"role": "assistant", "content": partial}, {"role": "user", "content": CONTINUE}],
                        max_tokens=200, tools=tools)  # fmt: skip
    assert partial + again.text == full.text
    assert [b for b in again.blocks if b.type == "tool_use"] == [b for b in full.blocks if b.type == "tool_use"]
