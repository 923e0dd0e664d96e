"""The simulator's parallel tool calls, through the official SDK (sync, async, streamed): one
tool named with several subjects ("use get_weather for Paris and Tokyo") makes one call per
subject in one reply, and the next call answers from every tool result, in order."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo.sim.catalogue import catalogue

MODEL = catalogue().where(thinking_always_on=False).id
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {
    "name": "get_time",
    "description": "Local time in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "use get_weather for Paris and Tokyo"}]


@pytest.fixture
def client(sim):
    sim.faults = None
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        yield c


def create(client, messages=ASK, **kw):
    kw.setdefault("max_tokens", 1000)
    kw.setdefault("model", MODEL)
    kw.setdefault("tools", [WEATHER])
    return client.messages.create(messages=messages, **kw)


def calls(message):
    return [(b.name, b.input) for b in message.content if b.type == "tool_use"]


def answer_with(client, first, results, **kw):
    """Send the results (texts, or (text, is_error) pairs) back for ``first``'s calls."""
    uses = [b for b in first.content if b.type == "tool_use"]
    blocks = []
    for use, result in zip(uses, results, strict=True):
        text, failed = result if isinstance(result, tuple) else (result, False)
        blocks.append({"type": "tool_result", "tool_use_id": use.id, "content": text, "is_error": failed})
    history = [*ASK, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
               {"role": "user", "content": blocks}]  # fmt: skip
    return create(client, history, **kw)


def test_one_tool_with_two_subjects_makes_two_parallel_calls(client):
    reply = create(client)
    assert reply.stop_reason == "tool_use"
    assert calls(reply) == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"})]
    ids = [b.id for b in reply.content if b.type == "tool_use"]
    assert len(set(ids)) == 2 and all(i.startswith("toolu_") for i in ids)
    assert reply.content[0].type == "text" and "get_weather" in reply.content[0].text


def test_the_same_request_gets_the_same_calls_and_ids(client):
    a, b = create(client), create(client)
    assert [x.model_dump() for x in a.content] == [x.model_dump() for x in b.content]


def test_a_list_of_three_subjects_and_two_tools(client):
    reply = create(client, [{"role": "user", "content": "Please use get_weather for Paris, Tokyo, and New York."}])
    assert [i["city"] for _, i in calls(reply)] == ["Paris", "Tokyo", "New York"]
    both = create(
        client, [{"role": "user", "content": "use get_weather for Rome and Oslo, then get_time for Lima"}],
        tools=[WEATHER, TIME],
    )  # fmt: skip
    assert calls(both) == [
        ("get_weather", {"city": "Rome"}), ("get_weather", {"city": "Oslo"}), ("get_time", {"city": "Lima"}),
    ]  # fmt: skip


def test_disable_parallel_tool_use_makes_one_call(client):
    reply = create(client, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert len(calls(reply)) == 1 and reply.stop_reason == "tool_use"


def test_a_long_phrase_is_one_subject(client):
    text = "use get_weather for the coast between the old harbour and the lighthouse on the hill"
    assert len(calls(create(client, [{"role": "user", "content": text}]))) == 1


def test_the_next_call_answers_from_every_result_in_order(client):
    first = create(client)
    reply = answer_with(client, first, ["Sunny, 21 C", "Rain, 12 C"])
    assert reply.stop_reason == "end_turn" and not calls(reply)
    text = reply.content[0].text
    assert "Paris: Sunny, 21 C" in text and "Tokyo: Rain, 12 C" in text
    assert text.index("Sunny") < text.index("Rain")


def test_a_failed_result_is_reported_as_failed(client):
    first = create(client)
    text = answer_with(client, first, ["Sunny", ("timeout after 5 s", True)]).content[0].text
    assert "Paris: Sunny" in text and "Tokyo failed: timeout after 5 s" in text


def test_a_stream_carries_the_same_parallel_calls(client):
    plain = create(client)
    with client.messages.stream(model=MODEL, max_tokens=1000, tools=[WEATHER], messages=ASK) as stream:
        streamed = stream.get_final_message()
    assert [b.model_dump() for b in streamed.content] == [b.model_dump() for b in plain.content]
    assert streamed.stop_reason == "tool_use"


def test_async_clients_get_the_same_calls(sim, client):
    async def go():
        async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="test", max_retries=0) as a:
            return await a.messages.create(model=MODEL, max_tokens=1000, tools=[WEATHER], messages=ASK)

    assert calls(asyncio.run(go())) == calls(create(client))


def test_strict_tools_pass_through_and_strict_must_be_a_boolean(client):
    reply = create(client, tools=[{**WEATHER, "strict": True}])
    assert [i["city"] for _, i in calls(reply)] == ["Paris", "Tokyo"]
    with pytest.raises(anthropic.BadRequestError, match="strict"):
        create(client, tools=[{**WEATHER, "strict": "yes"}])


_CITY = st.sampled_from(["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Rome", "Quito", "Hanoi", "New York", "San Jose"])


@settings(max_examples=25, deadline=None)
@given(st.lists(_CITY, min_size=1, max_size=5, unique=True))
def test_every_listed_subject_gets_its_own_call(sim, cities):
    listed = cities[0] if len(cities) == 1 else ", ".join(cities[:-1]) + " and " + cities[-1]
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as client:
        reply = create(client, [{"role": "user", "content": f"use get_weather for {listed}"}])
    assert [i["city"] for _, i in calls(reply)] == cities
