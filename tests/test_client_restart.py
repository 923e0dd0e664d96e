"""convo's stream restart rule, against replies that hold thinking and tool_use blocks.

A failure before any text reached the caller is retried silently. After text, a stream whose
reply holds only text continues (a prefill, or a continuation request where the model
refuses a prefill); one that holds a thinking block or a tool call
cannot, so it raises StreamRestartedError with the text seen, or, with ``on_restart``, says
so once and delivers the whole reply again from the start.
"""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convo
from convo import AsyncClient, Client

MODEL = "claude-sonnet-4-6"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a place",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}
THINKING = {"messages": [{"role": "user", "content": "Can you recommend some hiking trails near Denver for beginners?"}],
            "thinking": {"type": "enabled", "budget_tokens": 1024}}  # fmt: skip
TOOL = {"messages": [{"role": "user", "content": "Please use get_weather for Paris"}], "tools": [WEATHER]}
BOTH = {**TOOL, "thinking": {"type": "enabled", "budget_tokens": 1024}}


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def client(sim, model=MODEL, **kw):
    kw.setdefault("sleep", Sleeps())
    return Client(api_key="test", base_url=sim.base_url, model=model, **kw)


def layout(sim, request, model=MODEL):
    """The fault-free reply: (its content dumped, its text, the position of each delta's block type)."""
    with (
        anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c,
        c.messages.stream(model=model, max_tokens=2000, **request) as stream,
    ):
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    text = "".join(b.text for b in final.content if b.type == "text")
    return [b.model_dump() for b in final.content], text, kinds


def dumped(message):
    return [b.model_dump() for b in message.content]


def run(c, request, on_restart=None):
    """Stream ``request``; (chunks seen, [(Restart, chunks seen before it)], final message)."""
    chunks, restarts = [], []

    def noted(restart):
        restarts.append((restart, len(chunks)))

    s = c.stream(max_tokens=2000, on_restart=noted if on_restart else None, **request)
    chunks.extend(s.text_stream)
    return chunks, restarts, s.get_final_message()


@pytest.mark.parametrize(("request_", "after"), [(THINKING, "text_delta"), (TOOL, "input_json_delta"), (BOTH, "input_json_delta")])  # fmt: skip
def test_a_failure_after_text_raises_with_the_text_seen(fresh, request_, after):
    _clean, text, kinds = layout(fresh, request_)
    n = kinds.index(after) + 2  # past the first text delta (for a tool call: inside its input JSON)
    fresh.faults = [f"sse_error@{n}"]
    c = client(fresh)
    seen = []
    with pytest.raises(convo.StreamRestartedError) as info:
        seen.extend(c.stream(max_tokens=2000, **request_).text_stream)
    assert seen and info.value.partial == "".join(seen)
    assert text.startswith(info.value.partial)
    assert "on_restart" in str(info.value)


@pytest.mark.parametrize("fault", ["sse_error", "drop", "truncate", "malformed"])
@pytest.mark.parametrize(("request_", "after"), [(THINKING, "text_delta"), (TOOL, "input_json_delta"), (BOTH, "input_json_delta")])  # fmt: skip
def test_on_restart_is_told_once_then_the_whole_reply_comes_again(fresh, request_, after, fault):
    clean, text, kinds = layout(fresh, request_)
    n = kinds.index(after) + 2
    fresh.faults = [f"{fault}@{n}"]
    chunks, restarts, final = run(client(fresh), request_, on_restart=True)
    ((restart, at),) = restarts
    assert isinstance(restart, convo.Restart) and restart.reason
    assert restart.partial == "".join(chunks[:at]) and restart.partial
    assert "".join(chunks[at:]) == text  # from the start, each character once
    assert dumped(final) == clean and final.stop_reason == ("end_turn" if request_ is THINKING else "tool_use")


@pytest.mark.parametrize("request_", [THINKING, BOTH])
def test_a_failure_inside_thinking_before_any_text_is_retried_silently(fresh, request_):
    clean, text, kinds = layout(fresh, request_)
    assert kinds[:3] == ["thinking_delta"] * 3
    fresh.faults = ["sse_error@2"]
    c = client(fresh)
    chunks, restarts, final = run(c, request_, on_restart=True)
    assert restarts == [] and "".join(chunks) == text and dumped(final) == clean
    assert c.stats.retries == 1
    fresh.faults = ["drop@2"]  # without on_restart: the same, no error
    chunks, _, final = run(client(fresh), request_)
    assert "".join(chunks) == text and dumped(final) == clean


def test_a_failure_in_the_text_before_the_call_continues_with_the_same_call(fresh):
    """On a model that accepts a prefill, the continuation is the rest of the same reply."""
    model = "claude-haiku-4-5"
    clean, text, _kinds = layout(fresh, TOOL, model)
    fresh.faults = ["sse_error@1"]  # one text delta seen; the tool call has not started
    c = client(fresh, model=model)
    chunks, restarts, final = run(c, TOOL)
    assert restarts == [] and "".join(chunks) == text
    assert dumped(final) == clean and final.stop_reason == "tool_use"
    assert c.stats.stream_resumes == 1


def test_a_failure_in_the_text_before_the_call_asks_a_newer_model_to_continue(fresh):
    """Claude 4.6 and later refuse a prefill: the text so far goes back as an assistant turn,
    then a user turn asks to continue; the caller gets the text so far plus the answer."""
    fresh.faults = ["sse_error@1"]
    fresh.clear_requests()
    c = client(fresh)
    chunks, restarts, final = run(c, TOOL)
    first, second = [r.body for r in fresh.requests if r.path == "/v1/messages"]
    *history, partial, ask = second["messages"]
    assert history == first["messages"] and partial["role"] == "assistant" and ask["role"] == "user"
    assert "continue" in ask["content"] and partial["content"] == partial["content"].rstrip()
    with anthropic.Anthropic(base_url=fresh.base_url, api_key="test", max_retries=0) as sdk:
        answer = sdk.messages.create(**{k: v for k, v in second.items() if k != "stream"})
    rest = "".join(b.text for b in answer.content if b.type == "text")
    said = "".join(chunks)
    assert restarts == [] and said.startswith(partial["content"]) and said.endswith(rest.lstrip())
    assert final.content[0].text == said and c.stats.stream_resumes == 1
    assert [b.type for b in final.content] == [b.type for b in answer.content]


def test_a_hang_inside_thinking_times_out_and_is_retried(fresh):
    clean, text, _ = layout(fresh, THINKING)
    fresh.faults = ["hang@3"]
    chunks, restarts, final = run(client(fresh, timeout=0.5), THINKING, on_restart=True)
    assert restarts == [] and "".join(chunks) == text and dumped(final) == clean


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_any_fault_position_ends_in_the_clean_reply(sim, data):
    """Wherever the fault lands, the caller gets the clean reply, and hears of a restart exactly
    when text had reached it before the fault."""
    request_ = data.draw(st.sampled_from([THINKING, BOTH]))
    clean, text, kinds = layout(sim, request_)
    n = data.draw(st.integers(min_value=0, max_value=len(kinds)))
    fault = data.draw(st.sampled_from(["sse_error", "drop", "truncate", "malformed"]))
    sim.faults = [f"{fault}@{n}"]
    chunks, restarts, final = run(client(sim), request_, on_restart=True)
    text_seen = n > kinds.index("text_delta")
    assert len(restarts) == int(text_seen)
    assert "".join(chunks[restarts[0][1] if restarts else 0 :]) == text
    assert dumped(final) == clean


def test_async_restart_and_error(fresh):
    clean, text, kinds = layout(fresh, BOTH)
    n = kinds.index("input_json_delta") + 2

    async def main():
        c = AsyncClient(api_key="test", base_url=fresh.base_url, model=MODEL, sleep=_no_sleep)
        fresh.faults = [f"sse_error@{n}"]
        seen = []
        with pytest.raises(convo.StreamRestartedError) as info:
            async for chunk in c.stream(max_tokens=2000, **BOTH).text_stream:
                seen.append(chunk)
        fresh.faults = [f"sse_error@{n}"]
        notes = []

        async def note(restart):
            notes.append(restart)

        s = c.stream(max_tokens=2000, on_restart=note, **BOTH)
        chunks = [chunk async for chunk in s.text_stream]
        final = await s.get_final_message()
        await c.close()
        return seen, info.value, notes, chunks, final

    seen, error, notes, chunks, final = asyncio.run(main())
    assert error.partial == "".join(seen) == text
    assert [r.partial for r in notes] == [text] and "".join(chunks) == text + text
    assert dumped(final) == clean


async def _no_sleep(seconds):
    return None
