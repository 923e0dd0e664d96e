"""The tool loop against the simulator: schemas from functions, single and parallel calls (sync
in threads, async with gather), failing tools, bad input, max_steps, tool_choice, raw and server
tools, and — whatever the tools do and however the window trims — a valid history."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import convo
from convo import ContextOverflowError, Conversation, MaxStepsError, Tool, check_history, tool

from .helpers import MODEL, quick_aclient, quick_client

WEATHER = {"Paris": "sunny, 21 C", "Tokyo": "rain, 14 C"}


def get_weather(city: str, unit: str = "C") -> str:
    """The weather in a city now.

    Args:
        city: the city's name, e.g. Paris
        unit: C or F
    """
    return WEATHER.get(city, f"clear in {city}")


def get_time(city: str) -> str:
    """The local time in a city."""
    return f"12:00 in {city}"


def conv_on(sim, *, aio=False, budget=20_000, **kw):
    client = quick_aclient(sim) if aio else quick_client(sim)
    return Conversation("You use tools.", model=MODEL, budget=budget, client=client, **kw)


def bodies(sim):
    return [r.body for r in sim.requests if r.path == "/v1/messages"]


# -- tools from Python -------------------------------------------------------------------------------


def test_a_function_becomes_a_tool_with_a_schema_from_hints_and_docstring():
    spec = convo.as_tool(get_weather).to_api()
    assert spec["name"] == "get_weather" and spec["description"] == "The weather in a city now."
    schema = spec["input_schema"]
    assert schema["type"] == "object" and schema["required"] == ["city"]
    assert schema["properties"]["city"] == {"type": "string", "description": "the city's name, e.g. Paris"}
    assert schema["properties"]["unit"]["default"] == "C"


def test_the_decorator_names_describes_and_keeps_the_function_callable():
    @tool(name="weather_now", description="Current weather.", strict=True)
    def weather(city: str, days: int = 1) -> str:
        return f"{city} {days}"

    assert isinstance(weather, Tool) and weather("Oslo", days=2) == "Oslo 2"
    spec = weather.to_api()
    assert spec["name"] == "weather_now" and spec["description"] == "Current weather." and spec["strict"] is True
    assert spec["input_schema"]["properties"]["days"]["type"] == "integer"
    assert tool(get_time).name == "get_time"


def test_bad_input_and_a_raising_tool_become_error_results():
    t = convo.as_tool(get_weather)
    assert t.run("t1", '{"city": "Paris"}').result == "sunny, 21 C"  # JSON text is parsed
    broken = t.run("t2", '{"city": ')
    assert broken.is_error and "not valid JSON" in broken.content and broken.duration is not None
    assert t.run("t3", [1, 2]).is_error and "JSON object" in t.run("t3", [1, 2]).content
    missing = t.run("t4", {"unit": "F"})
    assert missing.is_error and "city" in missing.content

    def boom(x: int) -> int:
        raise RuntimeError("the backend is down")

    failed = convo.as_tool(boom).run("t5", {"x": 1})
    assert failed.is_error and failed.content == "RuntimeError: the backend is down"


def test_tool_names_must_be_unique_and_well_formed(fresh):
    with pytest.raises(convo.InvalidConfigError, match="unique"):
        conv_on(fresh).send("hi", tools=[get_weather, {"name": "get_weather", "input_schema": {"type": "object"}}])
    with pytest.raises(convo.InvalidConfigError, match="tool name"):
        Tool("has space")
    with pytest.raises(convo.InvalidConfigError, match="a tool is"):
        convo.as_tool(42)


# -- the loop ----------------------------------------------------------------------------------------


def test_a_single_call_runs_and_the_model_answers_from_the_result(fresh):
    conv = conv_on(fresh, tools=[get_weather])
    reply = conv.send("use get_weather for Paris")
    assert reply == "The result is: sunny, 21 C." and reply.stop_reason == "end_turn"
    assert [s.stop_reason for s in reply.steps] == ["tool_use", "end_turn"]
    (call,) = reply.tool_calls
    assert (call.name, call.input, call.result, call.is_error) == (
        "get_weather",
        {"city": "Paris"},
        "sunny, 21 C",
        False,
    )
    assert call.ran and call.duration >= 0
    assert [m.role for m in conv.messages] == ["user", "assistant", "user", "assistant"]
    assert conv.messages[2].tool_result_ids() == [call.id]
    assert len(conv.receipts) == 2 and reply.receipts == tuple(conv.receipts)
    assert reply.usage.input_tokens == sum(s.usage.input_tokens for s in reply.steps)
    assert reply.cost == pytest.approx(sum(r.cost for r in conv.receipts))
    assert bodies(fresh)[0]["tools"][0]["name"] == "get_weather"
    check_history(conv.messages)


def test_parallel_calls_run_at_once_in_threads_and_answer_in_order(fresh):
    meet = threading.Barrier(2, timeout=10)  # each call waits for the other: sequential runs would break it

    def get_weather(city: str) -> str:
        meet.wait()
        return f"sunny in {city}"

    def get_time(city: str) -> str:
        meet.wait()
        return f"noon in {city}"

    conv = conv_on(fresh)
    reply = conv.send("use get_weather for Paris and get_time for Tokyo", tools=[get_weather, get_time])
    assert [(c.name, c.result, c.is_error) for c in reply.tool_calls] == [
        ("get_weather", "sunny in Paris", False), ("get_time", "noon in Tokyo", False)]  # fmt: skip
    results = conv.messages[2]
    assert results.tool_result_ids() == conv.messages[1].tool_use_ids() == [c.id for c in reply.tool_calls]
    assert reply.index("sunny in Paris") < reply.index("noon in Tokyo")  # answered from both, in order


def test_one_tool_called_for_several_subjects_runs_each_call(fresh):
    meet = threading.Barrier(2, timeout=10)

    def get_weather(city: str) -> str:
        meet.wait()
        return f"rain in {city}"

    reply = conv_on(fresh).send("use get_weather for Paris and Tokyo", tools=[get_weather])
    assert [(c.name, c.input, c.result) for c in reply.tool_calls] == [
        ("get_weather", {"city": "Paris"}, "rain in Paris"), ("get_weather", {"city": "Tokyo"}, "rain in Tokyo")]  # fmt: skip
    assert len(reply.steps) == 2 and reply.index("rain in Paris") < reply.index("rain in Tokyo")


def test_parallel_async_calls_are_gathered(fresh):
    started: list[str] = []
    both = asyncio.Event()

    async def get_weather(city: str) -> str:
        started.append(city)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)  # only returns once both calls are running
        return f"sunny in {city}"

    def get_time(city: str) -> str:  # a sync tool in the async loop runs in a thread
        return f"noon in {city}"

    async def get_date(city: str) -> str:
        started.append(city)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)
        return f"today in {city}"

    conv = conv_on(fresh, aio=True, tools=[get_weather, get_date, get_time])
    reply = asyncio.run(conv.asend("use get_weather for Paris and get_date for Lima"))
    assert [c.result for c in reply.tool_calls] == ["sunny in Paris", "today in Lima"]
    assert not any(c.is_error for c in reply.tool_calls)


def test_an_async_tool_in_the_sync_loop(fresh):
    async def get_time(city: str) -> str:
        await asyncio.sleep(0)
        return f"noon in {city}"

    reply = conv_on(fresh).send("use get_time for Lima", tools=[get_time])
    assert reply.tool_calls[0].result == "noon in Lima" and reply == "The result is: noon in Lima."


@pytest.mark.parametrize("aio", [False, True])
def test_a_raising_tool_gives_an_error_result_and_the_model_hears_of_it(fresh, aio):
    def get_weather(city: str) -> str:
        raise LookupError(f"no station near {city}")

    conv = conv_on(fresh, aio=aio, tools=[get_weather])
    ask = "use get_weather for Atlantis"
    reply = asyncio.run(conv.asend(ask)) if aio else conv.send(ask)
    (call,) = reply.tool_calls
    assert call.is_error and call.content == "LookupError: no station near Atlantis"
    sent = bodies(fresh)[-1]["messages"][-1]["content"][0]
    assert sent["is_error"] is True and sent["content"] == call.content
    assert reply == "The tool failed: LookupError: no station near Atlantis."


def test_input_that_does_not_fit_the_function_is_an_error_result(fresh):
    def count(n: int) -> int:
        return n * 2

    # The schema the model sees asks for text; the function needs an int.
    t = Tool("count", input_schema={"type": "object", "properties": {"n": {"type": "string"}}, "required": ["n"]},
             function=count, model=convo.as_tool(count).model)  # fmt: skip
    reply = conv_on(fresh).send("use count for apples", tools=[t])
    (call,) = reply.tool_calls
    assert call.is_error and "invalid input for count" in call.content and "n" in call.content


def test_a_pydantic_model_is_a_tool(fresh):
    class Booking(BaseModel):
        """Book a table."""

        restaurant: str
        people: int

    reply = conv_on(fresh).send("use Booking for Chez Paul", tools=[Booking])
    (call,) = reply.tool_calls
    assert isinstance(call.result, Booking) and call.result.restaurant == "Chez Paul" and call.result.people == 1
    assert call.content == call.result.model_dump_json()


@pytest.mark.parametrize("aio", [False, True])
def test_max_steps_raises_and_takes_the_turn_back(fresh, aio):
    conv = conv_on(fresh, aio=aio, tools=[get_weather])
    ask = "use get_weather for Paris"

    async def main():
        with pytest.raises(MaxStepsError) as info:
            await conv.asend(ask, tool_choice={"type": "any"}, max_steps=3)
        return info, await conv.asend("That is enough; answer now.")

    if aio:
        info, after = asyncio.run(main())
    else:
        with pytest.raises(MaxStepsError) as info:
            conv.send(ask, tool_choice={"type": "any"}, max_steps=3)
        after = conv.send("That is enough; answer now.")
    assert "max_steps=3" in str(info.value) and len(info.value.reply.steps) == 3
    assert all(s.stop_reason == "tool_use" for s in info.value.reply.steps)
    assert all(b["tool_choice"] == {"type": "any"} for b in bodies(fresh)[:3])  # tool_choice passes through
    assert len(info.value.reply.tool_calls) == 3 and all(c.ran for c in info.value.reply.tool_calls)
    assert [m.role for m in conv.messages] == ["user", "assistant"] and after  # only the next turn is kept


def test_max_steps_default_and_setting(fresh):
    conv = conv_on(fresh, tools=[get_weather])
    with pytest.raises(MaxStepsError):
        conv.send("use get_weather for Paris", tool_choice={"type": "any"})
    assert len(bodies(fresh)) == 10
    conv.max_steps = 2
    fresh.clear_requests()
    with pytest.raises(MaxStepsError):
        conv.send("use get_weather for Paris", tool_choice={"type": "any"})
    assert len(bodies(fresh)) == 2
    with pytest.raises(convo.InvalidConfigError, match="max_steps"):
        conv.send("hi", max_steps=0)


def test_tool_use_without_a_function_is_left_for_the_caller(fresh):
    raw = {"name": "lookup", "description": "Look something up.",
           "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}  # fmt: skip
    conv = conv_on(fresh)
    reply = conv.send("use lookup for tides", tools=[raw])
    assert reply.stop_reason == "tool_use" and reply.pending == reply.tool_calls
    (call,) = reply.tool_calls
    assert call.name == "lookup" and call.input == {"q": "tides"} and call.result is None and not call.ran
    assert conv.messages[-1].tool_use_ids() == [call.id]
    with pytest.raises(convo.InvalidMessageError):  # the history waits for the result
        conv.add_user("something else")
    answer = conv.send([{"type": "tool_result", "tool_use_id": call.id, "content": "high at 6"}], tools=[raw])
    assert answer == "The result is: high at 6." and check_history(conv.messages)


def test_a_server_tool_is_passed_through(fresh):
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    reply = conv_on(fresh, tools=[get_weather]).send("Search the web for tide tables in Brest", tools=[search])
    assert bodies(fresh)[-1]["tools"][1] == search
    assert reply.stop_reason == "end_turn" and reply.tool_calls == () and len(reply.steps) == 1
    assert reply.usage.server_tool_use.web_search_requests == 1


def test_conversation_tools_and_call_tools_add_up(fresh):
    conv = conv_on(fresh, tools=[get_weather])
    reply = conv.send("use get_weather for Paris and get_time for Rome", tools=[get_time])
    assert [c.name for c in reply.tool_calls] == ["get_weather", "get_time"]
    assert [t["name"] for t in bodies(fresh)[0]["tools"]] == ["get_weather", "get_time"]


# -- budget: the loop trims between steps, never between a call and its result ------------------------


def test_a_long_loop_trims_older_turns_between_steps(fresh):
    def get_weather(city: str) -> str:
        return "cloudy " * 120

    conv = conv_on(fresh, budget=2500, tools=[get_weather])
    for i in range(6):
        conv.send(f"Tell me about harbour number {i} and its lighthouse keeper " + "and the boats " * 30)
    with pytest.raises(MaxStepsError) as info:
        conv.send("use get_weather for Brest", tool_choice={"type": "any"}, max_steps=8)
    reply = info.value.reply
    receipts = reply.receipts
    assert len(receipts) == 8 and receipts[-1].dropped_messages > receipts[0].dropped_messages
    for body in bodies(fresh):
        check_history(body["messages"])  # every tool_use sent with its tool_result
    check_history(conv.messages)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    behaviours=st.lists(st.sampled_from(["ok", "big", "raise", "none", "blocks", "json"]), min_size=1, max_size=4),
    earlier=st.integers(0, 5),
    budget=st.sampled_from([1500, 3000, 8000]),
    steps=st.integers(1, 5),
    forced=st.booleans(),
)
def test_the_history_stays_valid_whatever_the_tools_do(fresh, behaviours, earlier, budget, steps, forced):
    fresh.clear_requests()
    calls = iter(behaviours * 10)

    def probe(city: str) -> object:
        kind = next(calls)
        if kind == "raise":
            raise ValueError(f"bad {city}")
        return {"ok": f"fine in {city}", "big": "word " * 400, "none": None, "json": {"city": city, "n": [1, 2]},
                "blocks": [{"type": "text", "text": f"block for {city}"}]}[kind]  # fmt: skip

    conv = conv_on(fresh, budget=budget, tools=[probe])
    for i in range(earlier):
        conv.send(f"Earlier turn {i} about boats and harbours " + "more words " * 20)
    before = conv.messages
    try:
        reply = conv.send(
            "use probe for Brest", max_steps=steps, **({"tool_choice": {"type": "any"}} if forced else {})
        )
    except MaxStepsError as exc:
        reply = exc.reply
        assert forced or steps == 1
        assert conv.messages == before  # the turn was taken back
    except ContextOverflowError:
        assert conv.messages == before  # the turn was taken back
        reply = None
    check_history(conv.messages)
    for body in bodies(fresh):
        check_history(body["messages"])
    if reply is not None:
        assert len(reply.steps) <= steps and all(c.ran for c in reply.tool_calls)
        assert len(reply.receipts) == len(reply.steps)


def test_a_turn_that_outgrows_the_budget_clears_its_oldest_results(fresh):
    def get_weather(city: str) -> str:
        return "cloudy and grey " * 60

    conv = conv_on(fresh, budget=2500, tools=[get_weather])
    with pytest.raises(MaxStepsError) as info:  # one turn only: nothing older to drop
        conv.send("use get_weather for Brest", tool_choice={"type": "any"}, max_steps=14, max_tokens=300)
    sent = bodies(fresh)
    assert len(sent) == 14
    cleared = [b["messages"] for b in sent if "cleared" in str(b["messages"])]
    assert cleared  # the loop went on past the point where the whole turn fitted
    for body in sent:
        check_history(body["messages"])
    for body in sent[1:]:
        assert "cloudy" in str(body["messages"][-1])  # the newest result is always sent whole
    for receipt in info.value.reply.receipts:
        assert receipt.input_tokens + 300 <= 2500  # what the API counted (the estimate is calibrated)


def test_strict_and_the_description_reach_the_api(fresh):
    @tool(name="weather_now", description="Current weather.", strict=True)
    def weather(city: str) -> str:
        return f"mild in {city}"

    reply = conv_on(fresh).send("use weather_now for Oslo", tools=[weather])
    assert reply.tool_calls[0].result == "mild in Oslo"
    sent = bodies(fresh)[0]["tools"][0]
    assert sent["strict"] is True and sent["description"] == "Current weather." and sent["name"] == "weather_now"


def test_the_tool_loop_settings_are_saved_and_tools_given_again_on_load(fresh, tmp_path):
    conv = conv_on(fresh, tools=[get_weather], max_steps=4, keep_refusals=True)
    conv.send("use get_weather for Paris")
    conv.save(tmp_path / "chat.json")
    again = Conversation.load(tmp_path / "chat.json", client=quick_client(fresh), tools=[get_weather])
    assert (again.max_steps, again.keep_refusals) == (4, True) and len(again) == len(conv)
    assert again.send("use get_weather for Tokyo").tool_calls[0].result == get_weather("Tokyo")
    data = json.loads((tmp_path / "chat.json").read_text())
    data["max_steps"] = "many"
    with pytest.raises(convo.ConversationFileError):
        Conversation.from_dict(data)


def test_tokens_count_the_conversations_own_tools(fresh):
    plain = Conversation("Be helpful.", model=MODEL, budget=20_000)
    with_tools = Conversation("Be helpful.", model=MODEL, budget=20_000, tools=[get_weather])
    for conv in (plain, with_tools):
        conv.add_user("hello")
    schema_tokens = with_tools.tokens - plain.tokens
    assert schema_tokens > 50  # the tool prompt and the schema
    request = with_tools.request(tools=[t.to_api() for t in convo.tools.ToolSet([get_weather]).tools])
    assert with_tools.counter.count_request(
        [convo.to_message(m) for m in request["messages"]], system=request.get("system"), tools=request["tools"]
    ) == with_tools.tokens
