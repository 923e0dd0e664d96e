"""The simulator's tool_use and thinking blocks, through the official SDK (sync and async):
content arrays, the SSE grammar of each block, usage, the API's 400s, and stream faults that
count deltas across blocks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convo.sim
from convo.sim import OfflineModel, Tokenizer

MODEL = "claude-sonnet-4-6"
_MODELS = json.loads((Path(convo.sim.__file__).parent.parent / "data" / "models.json").read_text())["models"]
#: A served model that takes prefill and extended thinking (read from the catalogue).
PREFILL_MODEL = next(
    m for m, e in _MODELS.items() if e["prefill"] and e["thinking"]["enabled"] and e["status"] != "retired"
)
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a place",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
            "details": {"type": "boolean"},
            "note": {"type": "string"},
        },
        "required": ["location", "unit", "days", "details"],
    },
}
TIME = {"name": "get_time", "description": "Local time", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip
TOOLS = [WEATHER, TIME]
ASK_TOOL = [{"role": "user", "content": "Please use get_weather for Paris"}]
ASK = [{"role": "user", "content": "Can you recommend some hiking trails near Denver for beginners?"}]
THINK = {"type": "enabled", "budget_tokens": 1024}



@pytest.fixture
def client(sim):
    sim.faults = None
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        yield c


def create(client, messages=ASK_TOOL, **kw):
    kw.setdefault("max_tokens", 2000)
    kw.setdefault("model", MODEL)
    return client.messages.create(messages=messages, **kw)


def count(text):
    return Tokenizer().count_text(text, _MODELS[MODEL]["tokenizer"])


def dumped(message):
    return [b.model_dump() for b in message.content]


def raw_events(client, messages=ASK_TOOL, **kw):
    """(events, error): the stream's raw events, and the exception that ended it, if any."""
    kw.setdefault("max_tokens", 2000)
    events = []
    try:
        with client.messages.stream(model=MODEL, messages=messages, **kw) as stream:
            for event in stream:
                if event.type in ("message_start", "content_block_start", "content_block_delta",
                                  "content_block_stop", "message_delta", "message_stop"):  # fmt: skip
                    events.append(event)
    except (anthropic.APIError, ValueError) as exc:
        return events, exc
    return events, None


def deltas(events):
    return [(e.index, e.delta.model_dump()) for e in events if e.type == "content_block_delta"]


# -- tool use ----------------------------------------------------------------------------------------


def test_a_named_tool_is_called_with_input_from_its_schema(client):
    msg = create(client, tools=TOOLS)
    text, call = msg.content
    assert text.type == "text" and text.text == "I'll use get_weather."
    assert call.type == "tool_use" and call.name == "get_weather" and call.id.startswith("toolu_01")
    assert call.input == {"location": "Paris", "unit": "celsius", "days": 1, "details": True}
    assert msg.stop_reason == "tool_use"
    assert msg.usage.output_tokens == count(text.text) + count(json.dumps(call.input, ensure_ascii=False))
    assert dumped(create(client, tools=TOOLS)) == dumped(msg)  # deterministic, ids included


def test_tool_choice_forces_or_forbids_calls(client):
    plain = [{"role": "user", "content": "What time is it in Lisbon?"}]
    assert create(client, plain, tools=TOOLS).stop_reason == "end_turn"
    anyone = create(client, plain, tools=TOOLS, tool_choice={"type": "any"})
    assert [b.type for b in anyone.content] == ["text", "tool_use"] and anyone.content[1].name == "get_weather"
    named = create(client, plain, tools=TOOLS, tool_choice={"type": "tool", "name": "get_time"})
    assert named.content[1].name == "get_time" and named.content[1].input == {"city": "What time is it in Lisbon"}
    none = create(client, tools=TOOLS, tool_choice={"type": "none"})
    assert [b.type for b in none.content] == ["text"] and none.stop_reason == "end_turn"


def test_several_named_tools_are_called_in_parallel_unless_disabled(client):
    ask = [{"role": "user", "content": "use get_weather for Oslo, then get_time for Tokyo"}]
    msg = create(client, ask, tools=TOOLS)
    assert msg.content[0].text == "I'll use get_weather and get_time."
    calls = msg.content[1:]
    assert [(c.name, c.input.get("location") or c.input.get("city")) for c in calls] == [
        ("get_weather", "Oslo"),
        ("get_time", "Tokyo"),
    ]
    assert len({c.id for c in calls}) == 2
    single = create(client, ask, tools=TOOLS, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert [b.type for b in single.content] == ["text", "tool_use"]


def test_tool_use_streams_like_the_api(client):
    expected = create(client, tools=TOOLS)
    events, error = raw_events(client, tools=TOOLS)
    assert error is None
    start = next(e for e in events if e.type == "content_block_start" and e.index == 1)
    assert start.content_block.model_dump(exclude_none=True) == {
        "type": "tool_use", "id": expected.content[1].id, "name": "get_weather", "input": {}
    }  # fmt: skip
    chunks = [d["partial_json"] for i, d in deltas(events) if i == 1]
    assert chunks[0] == "" and len(chunks) > 3 and json.loads("".join(chunks)) == expected.content[1].input
    assert events[-2].delta.stop_reason == "tool_use" and events[-2].usage.output_tokens == expected.usage.output_tokens
    with client.messages.stream(model=MODEL, max_tokens=2000, messages=ASK_TOOL, tools=TOOLS) as stream:
        final = stream.get_final_message()
    assert dumped(final) == dumped(expected) and final.stop_reason == "tool_use"
    assert isinstance(final.content[1].input, dict)


def test_tool_result_round_trip(client):
    call = create(client, tools=TOOLS)
    history = [
        *ASK_TOOL,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in call.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.content[1].id, "content": "Sunny, 21 C"}]},
    ]
    answer = create(client, history, tools=TOOLS)
    assert answer.content[0].text == "The result is: Sunny, 21 C." and answer.stop_reason == "end_turn"
    failed = [*history[:2], {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.content[1].id,
                                                          "content": [{"type": "text", "text": "timeout"}], "is_error": True}]}]  # fmt: skip
    assert create(client, failed, tools=TOOLS).content[0].text == "The tool failed: timeout."


def test_a_prefill_continues_the_text_then_makes_the_same_call(client):
    full = create(client, tools=TOOLS, model=PREFILL_MODEL)
    rest = create(client, [*ASK_TOOL, {"role": "assistant", "content": "I'll use"}], tools=TOOLS, model=PREFILL_MODEL)
    assert rest.content[0].text == " get_weather."
    assert dumped(rest)[1:] == dumped(full)[1:] and rest.stop_reason == "tool_use"


def test_max_tokens_and_stop_sequences_end_before_the_call(client):
    short = create(client, tools=TOOLS, max_tokens=6)
    assert [b.type for b in short.content] == ["text"] and short.stop_reason == "max_tokens"
    stopped = create(client, tools=TOOLS, stop_sequences=["weather"])
    assert dumped(stopped) == [{"type": "text", "text": "I'll use get_", "citations": None}]
    assert stopped.stop_reason == "stop_sequence"


@settings(max_examples=150, deadline=None)
@given(
    words=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=60),
    max_tokens=st.integers(min_value=1, max_value=80),
)
def test_any_message_naming_a_tool_gets_a_schema_shaped_call_within_max_tokens(words, max_tokens):
    model = OfflineModel(seed=0)
    messages = [{"role": "user", "content": f"use get_weather for {words}"}]
    reply = model.reply(messages, max_tokens=max_tokens, tools=[WEATHER])
    assert reply.output_tokens <= max(1, max_tokens)
    calls = [b for b in reply.blocks if b.type == "tool_use"]
    # A list of subjects ("0,1") makes parallel calls; max_tokens may cut after a whole one.
    assert (reply.stop_reason == "tool_use") == bool(calls) or reply.stop_reason == "max_tokens"
    for call in calls:
        assert json.loads(call.value) == call.input and call.deltas[0] == ""
        assert set(call.input) == {"location", "unit", "days", "details"} and call.input["unit"] == "celsius"
        assert isinstance(call.input["location"], str) and call.input["location"].strip()
    if reply.stop_reason != "max_tokens":
        assert len(calls) >= 1


# -- thinking --------------------------------------------------------------------------------------


def test_thinking_comes_first_with_a_signature(client):
    plain = create(client, ASK)
    msg = create(client, ASK, thinking=THINK)
    thinking, text = msg.content
    assert thinking.type == "thinking" and "hiking" in thinking.thinking and len(thinking.signature) > 40
    assert dumped(msg)[1:] == dumped(plain)
    assert msg.usage.output_tokens == count(thinking.thinking) + count(text.text)
    assert create(client, ASK, thinking={"type": "adaptive"}).content[0] == thinking


def test_thinking_streams_deltas_then_one_signature(client):
    expected = create(client, ASK, thinking=THINK)
    events, error = raw_events(client, ASK, thinking=THINK)
    assert error is None
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "text"]
    kinds = [(i, d["type"]) for i, d in deltas(events)]
    first_text = kinds.index((1, "text_delta"))
    assert kinds[first_text - 1] == (0, "signature_delta") and kinds.count((0, "signature_delta")) == 1
    assert all(k == (0, "thinking_delta") for k in kinds[: first_text - 1]) and first_text > 5
    stop0 = next(i for i, e in enumerate(events) if e.type == "content_block_stop" and e.index == 0)
    assert events[stop0 - 1].delta.type == "signature_delta"
    with client.messages.stream(model=MODEL, max_tokens=2000, messages=ASK, thinking=THINK) as stream:
        assert dumped(stream.get_final_message()) == dumped(expected)


def test_thinking_display_omitted_sends_only_the_signature(client):
    msg = create(client, ASK, thinking={**THINK, "display": "omitted"})
    assert msg.content[0].thinking == "" and msg.content[0].signature
    assert msg.usage.output_tokens == create(client, ASK, thinking=THINK).usage.output_tokens
    events, _ = raw_events(client, ASK, thinking={"type": "adaptive", "display": "omitted"})
    assert [d["type"] for i, d in deltas(events) if i == 0] == ["signature_delta"]


def test_thinking_then_a_tool_call_and_its_result(client):
    msg = create(client, tools=TOOLS, thinking=THINK)
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"] and msg.stop_reason == "tool_use"
    assert "get_weather" in msg.content[0].thinking
    history = [
        *ASK_TOOL,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": msg.content[2].id, "content": "Rain"}]},
    ]
    answer = create(client, history, tools=TOOLS, thinking=THINK)
    assert [b.type for b in answer.content] == ["thinking", "text"] and answer.content[1].text == "The result is: Rain."


@pytest.mark.parametrize(
    ("kw", "messages", "match"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 500}}, ASK, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 2000}, ASK,
         "`max_tokens` must be greater than `thinking.budget_tokens`"),
        ({"thinking": {"type": "enabled"}}, ASK, "budget_tokens: Field required"),
        ({"thinking": {"type": "sometimes"}}, ASK, "does not match any of the expected tags"),
        ({"thinking": THINK, "model": PREFILL_MODEL}, [*ASK, {"role": "assistant", "content": "Sure"}],
         "must start with a thinking block"),
        ({"thinking": THINK, "tools": TOOLS, "tool_choice": {"type": "any"}}, ASK, "forces tool use"),
        ({"tools": TOOLS, "tool_choice": {"type": "tool", "name": "nope"}}, ASK, "no tool named 'nope'"),
        ({"tools": TOOLS, "tool_choice": {"type": "maybe"}}, ASK, "expected tags: 'auto', 'any', 'tool', 'none'"),
        ({"model": PREFILL_MODEL},
         [*ASK, {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}]}],
         "When thinking is disabled"),
    ],
)  # fmt: skip
def test_invalid_thinking_and_tool_choice_are_400(client, kw, messages, match):
    with pytest.raises(anthropic.BadRequestError, match=match) as info:
        create(client, messages, **kw)
    assert info.value.type == "invalid_request_error"


def test_a_tool_loop_with_thinking_must_keep_the_thinking_block(client):
    call = create(client, tools=TOOLS)  # made without thinking: no thinking block to send back
    history = [
        *ASK_TOOL,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in call.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.content[1].id, "content": "Rain"}]},
    ]
    with pytest.raises(anthropic.BadRequestError, match=r"messages\.1\.content\.0\.type: Expected `thinking`"):
        create(client, history, tools=TOOLS, thinking=THINK)


def test_count_tokens_accepts_tools_and_thinking(client):
    n = client.messages.count_tokens(model=MODEL, messages=ASK_TOOL, tools=TOOLS, thinking=THINK)
    assert n.input_tokens == create(client, tools=TOOLS, thinking=THINK).usage.input_tokens


# -- faults count deltas across blocks -------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(sim):
    """The fault-free delta events of a reply with thinking, text and a tool call."""
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        events, _ = raw_events(c, tools=TOOLS, thinking=THINK)
    return deltas(events)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_truncated_stream_carries_exactly_the_first_n_deltas(sim, clean, data):
    n = data.draw(st.integers(min_value=0, max_value=len(clean)))
    sim.faults = [f"truncate@{n}"]
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        events, _ = raw_events(c, tools=TOOLS, thinking=THINK)
    assert deltas(events) == clean[:n]
    assert events[0].type == "message_start" and not any(e.type == "message_stop" for e in events)


@pytest.mark.parametrize("where", ["thinking", "tool_use", "text"])
def test_an_error_event_can_land_inside_any_block(sim, client, clean, where):
    index = {"thinking": 0, "text": 1, "tool_use": 2}[where]
    n = [i for i, _ in clean].index(index) + 2  # two deltas into the block
    sim.faults = [f"sse_error@{n}"]
    events, error = raw_events(client, tools=TOOLS, thinking=THINK)
    assert isinstance(error, anthropic.APIStatusError) and error.type == "overloaded_error"
    assert deltas(events) == clean[:n] and deltas(events)[-1][0] == index


# -- async --------------------------------------------------------------------------------------------


def test_async_tool_use_and_thinking_streams(sim):
    sim.faults = None

    async def main():
        async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
            made = await c.messages.create(model=MODEL, max_tokens=2000, messages=ASK_TOOL, tools=TOOLS, thinking=THINK)
            async with c.messages.stream(
                model=MODEL, max_tokens=2000, messages=ASK_TOOL, tools=TOOLS, thinking=THINK
            ) as stream:
                streamed = await stream.get_final_message()
            with pytest.raises(anthropic.BadRequestError, match="1024"):
                await c.messages.create(
                    model=MODEL, max_tokens=2000, messages=ASK, thinking={"type": "enabled", "budget_tokens": 10}
                )
            return made, streamed

    made, streamed = asyncio.run(main())
    assert [b.type for b in made.content] == ["thinking", "text", "tool_use"]
    assert dumped(streamed) == dumped(made) and streamed.stop_reason == "tool_use"
    assert streamed.content[2].input["location"] == "Paris"
