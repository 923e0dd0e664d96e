"""Typed events of a turn: conv.events / aevents through a tool loop, thinking, stop reasons,
mid-stream recovery within a step, and an abandoned stream taking the turn back."""

from __future__ import annotations

import asyncio

import pytest

from convo import (
    ClientMismatchError,
    Conversation,
    ReplyEnd,
    StepEnd,
    TextDelta,
    ThinkingDelta,
    ToolCallStart,
    ToolInputComplete,
    ToolResult,
    check_history,
)

from .helpers import MODEL, quick_aclient, quick_client


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def conv_on(sim, *, aio=False, **kw):
    client = quick_aclient(sim) if aio else quick_client(sim)
    return Conversation("You use tools.", model=MODEL, budget=20_000, client=client, **kw)


def kinds(events):
    """The event types in order, runs of text deltas folded into one."""
    out = []
    for e in events:
        name = type(e).__name__
        if not (out and name == out[-1] == "TextDelta"):
            out.append(name)
    return out


LOOP = ["TextDelta", "ToolCallStart", "ToolInputComplete", "StepEnd", "ToolResult", "TextDelta", "StepEnd", "ReplyEnd"]


def test_a_tool_loop_streams_through_all_its_steps(fresh):
    conv = conv_on(fresh, tools=[get_weather])
    events = list(conv.events("use get_weather for Paris"))
    assert kinds(events) == LOOP
    start, done = (
        events[[type(e) for e in events].index(ToolCallStart)],
        next(e for e in events if isinstance(e, ToolInputComplete)),
    )
    assert start.name == done.name == "get_weather" and start.id == done.id and done.input == {"city": "Paris"}
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.call.id == start.id and result.call.result == "sunny in Paris" and result.step == 0
    ends = [e for e in events if isinstance(e, StepEnd)]
    assert [(e.step, e.stop_reason) for e in ends] == [(0, "tool_use"), (1, "end_turn")]
    assert all(e.usage.output_tokens > 0 and e.receipt is not None for e in ends)
    reply = events[-1].reply
    assert "".join(e.text for e in events if isinstance(e, TextDelta) and e.step == 1) == reply
    assert "".join(e.text for e in events if isinstance(e, TextDelta) and e.step == 0) == "I'll use get_weather."
    assert reply == conv.messages[-1].text and [s.receipt for s in reply.steps] == [e.receipt for e in ends]
    check_history(conv.messages)


def test_events_and_send_leave_the_same_history(fresh):
    a, b = conv_on(fresh, tools=[get_weather]), conv_on(fresh, tools=[get_weather])
    reply = a.send("use get_weather for Lima")
    streamed = list(b.events("use get_weather for Lima"))[-1].reply
    assert reply == streamed and a.messages == b.messages


def test_aevents_twin(fresh):
    conv = conv_on(fresh, aio=True, tools=[get_weather])

    async def main():
        return [e async for e in conv.aevents("use get_weather for Paris")]

    events = asyncio.run(main())
    assert kinds(events) == LOOP and events[-1].reply == "The result is: sunny in Paris."


def test_thinking_deltas(fresh):
    conv = conv_on(fresh)
    events = list(conv.events("Why is the sky blue?", max_tokens=2000,
                              thinking={"type": "enabled", "budget_tokens": 1024}))  # fmt: skip
    thoughts = [e for e in events if isinstance(e, ThinkingDelta)]
    assert thoughts and all(e.thinking and e.step == 0 for e in thoughts)
    assert "".join(e.thinking for e in thoughts) == events[-1].reply.message.content[0].thinking


def test_stop_reasons_show_in_step_ends(fresh):
    conv = conv_on(fresh)
    fresh.faults.push("pause_turn")
    events = list(conv.events("Find news about tides"))
    assert [(e.step, e.stop_reason) for e in events if isinstance(e, StepEnd)] == [(0, "pause_turn"), (1, "end_turn")]
    fresh.faults.push("refusal")
    before = conv.messages
    end = list(conv.events("Something else"))[-1]
    assert isinstance(end, ReplyEnd) and end.reply.refused and conv.messages == before


def test_a_broken_stream_resumes_within_its_step(fresh):
    clean = list(conv_on(fresh, tools=[get_weather]).events("use get_weather for Oslo"))
    conv = conv_on(fresh, tools=[get_weather])
    fresh.faults.push("ok", "sse_error@2")  # the second step's stream breaks after two deltas
    events = list(conv.events("use get_weather for Oslo"))
    assert kinds(events) == LOOP
    text = "".join(e.text for e in events if isinstance(e, TextDelta) and e.step == 1)
    assert text == "".join(e.text for e in clean if isinstance(e, TextDelta) and e.step == 1) == events[-1].reply
    assert conv.client.stats.as_dict()["stream_resumes"] >= 1
    check_history(conv.messages)


def test_abandoning_the_events_takes_the_turn_back(fresh):
    conv = conv_on(fresh, tools=[get_weather])
    conv.send("Hello")
    before = conv.messages
    events = conv.events("use get_weather for Paris")
    for event in events:
        if isinstance(event, ToolResult):
            break
    events.close()
    assert conv.messages == before


def test_stream_yields_the_text_of_every_step(fresh):
    conv = conv_on(fresh, tools=[get_weather])
    text = "".join(conv.stream("use get_weather for Rome"))
    assert text == "I'll use get_weather.The result is: sunny in Rome."
    assert conv.messages[-1].text == "The result is: sunny in Rome."


@pytest.mark.parametrize("method", ["events", "aevents"])
def test_the_client_is_checked_at_the_call(fresh, method):
    conv = conv_on(fresh, aio=method == "events")
    with pytest.raises(ClientMismatchError, match="AsyncClient|synchronous"):
        getattr(conv, method)("hi")
    assert len(conv) == 0


def test_the_new_twins_take_the_same_arguments():
    import inspect

    for sync, twin in (("events", "aevents"), ("continue_", "acontinue_"), ("send", "asend")):
        a, b = inspect.signature(getattr(Conversation, sync)), inspect.signature(getattr(Conversation, twin))
        assert [(p.name, p.kind, p.default) for p in a.parameters.values()] == [
            (p.name, p.kind, p.default) for p in b.parameters.values()
        ], sync


@pytest.mark.parametrize("aio", [False, True])
def test_a_stream_broken_inside_a_tool_call_starts_the_step_over_without_showing_text_twice(fresh, aio):
    conv = conv_on(fresh, aio=aio, tools=[get_weather])
    fresh.faults.push("sse_error@5")  # after the text, inside the tool call's input
    if aio:

        async def main():
            return [e async for e in conv.aevents("use get_weather for Paris")]

        events = asyncio.run(main())
    else:
        events = list(conv.events("use get_weather for Paris"))
    assert kinds(events) == LOOP
    faults = [r.fault for r in fresh.requests if r.path == "/v1/messages"]
    assert faults == ["sse_error@5", None, None]  # step 0 started over once, then step 1
    assert "".join(e.text for e in events if isinstance(e, TextDelta) and e.step == 0) == "I'll use get_weather."
    assert [e.call.result for e in events if isinstance(e, ToolResult)] == ["sunny in Paris"]
    assert events[-1].reply == "The result is: sunny in Paris."
    check_history(conv.messages)
