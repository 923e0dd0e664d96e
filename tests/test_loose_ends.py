"""What a chatbot hits on day one: a conversation takes its model and budget from its client,
is loaded back with a client, caches its prompt by default, and fits a 1M-token window
without serializing its history again on every turn. Through convo's public API against the
simulator over real HTTP."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convo.messages
from convo import AsyncClient, Client, Conversation, SlidingWindow
from convo.models import DEFAULT_MODEL, lookup
from convo.sim import ManualClock, Simulator

OTHER = "claude-haiku-4-5"  # not the default model, so a default taken from the client shows
LONG_SYSTEM = "You are the archive team's assistant.\n" + "\n".join(
    f"Rule {i}: when asked about drawer {i}, name the record, the river and the lantern first." for i in range(300)
)


@pytest.fixture(scope="module")
def clock():
    return ManualClock()


@pytest.fixture(scope="module")
def sim(clock):
    with Simulator(seed=0, clock=clock) as s:
        yield s


def client_for(sim, model=OTHER):
    return Client(api_key="test", base_url=sim.base_url, model=model, sleep=lambda s: None)


def bodies(sim):
    return [r.body for r in sim.requests if r.path == "/v1/messages"]


# -- defaults from the client ------------------------------------------------------------------


def test_model_and_budget_default_to_the_clients_model(sim):
    client = client_for(sim)
    conv = Conversation(client=client)
    info = lookup(OTHER)
    assert conv.model == OTHER and conv.budget == info.max_input_tokens and conv.client is client
    sim.clear_requests()
    reply = conv.send("Hello there")
    assert reply and bodies(sim)[-1]["model"] == OTHER
    assert conv.last_receipt.model == OTHER


def test_without_a_client_the_default_model_is_used(sim):
    conv = Conversation()
    assert conv.model == DEFAULT_MODEL and conv.budget == lookup(DEFAULT_MODEL).max_input_tokens
    assert Conversation(model=OTHER, client=client_for(sim, DEFAULT_MODEL)).model == OTHER  # an explicit model wins


def test_the_client_can_be_set_later(sim):
    conv = Conversation(model=OTHER)
    assert conv.client is None
    conv.client = client_for(sim)
    assert conv.send("Hi again")


# -- load with a client --------------------------------------------------------------------------


def test_load_with_a_client_goes_on_talking(sim, tmp_path):
    client = client_for(sim)
    conv = Conversation("Be brief.", client=client)
    conv.send("My name is Ada Lovelace.")
    conv.save(tmp_path / "chat.json")
    again = Conversation.load(tmp_path / "chat.json", client=client)
    assert again.client is client and again.model == OTHER and again.budget == conv.budget
    assert again.messages == conv.messages and again.prompt_cache == conv.prompt_cache
    reply = again.send("What is my name?")
    assert "Ada Lovelace" in reply
    assert len(again) == len(conv) + 2
    plain = Conversation.load(tmp_path / "chat.json")
    assert plain.client is None and plain.messages == conv.messages
    twin = Conversation.from_dict(conv.to_dict(), client=client)
    assert twin.client is client and twin.send("Thanks")


def test_async_load_with_an_async_client(sim, tmp_path):
    async def go():
        async with AsyncClient(api_key="test", base_url=sim.base_url, model=OTHER) as client:
            conv = Conversation("Be brief.", client=client)
            await conv.asend("My name is Grace Hopper.")
            conv.save(tmp_path / "a.json")
            again = Conversation.load(tmp_path / "a.json", client=client)
            return await again.asend("What is my name?")

    assert "Grace Hopper" in asyncio.run(go())


# -- prompt caching by default --------------------------------------------------------------------


def test_a_conversation_with_a_client_caches_its_prompt_by_default(sim, clock):
    sim.prompt_cache.clear()
    client = client_for(sim)
    conv = Conversation(LONG_SYSTEM, client=client, budget=20_000)
    assert conv.prompt_cache is None and conv.strategy == SlidingWindow(low_water=0.6)
    sim.clear_requests()
    for i in range(3):
        conv.send(f"Question {i}: which record is in drawer {i}?")
        clock.advance(10)
    sent = bodies(sim)
    assert all(b["system"][-1]["cache_control"] == {"type": "ephemeral"} for b in sent)
    assert all(b["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"} for b in sent)
    assert conv.receipts[0].cache_write > 0 and conv.receipts[-1].cache_read > 0
    assert "system" in conv.last_receipt.breakpoints


def test_no_breakpoints_below_the_models_minimum_cacheable_length(sim):
    client = client_for(sim)
    minimum = lookup(OTHER).min_cache_tokens
    conv = Conversation("Be brief.", client=client)
    sim.clear_requests()
    conv.send("Hi")
    assert conv.tokens < minimum
    assert "cache_control" not in str(bodies(sim)[-1]) and conv.last_receipt.breakpoints == ()
    conv.send("Tell me about drawers. " + "drawer record river lantern " * minimum)
    assert "cache_control" in str(bodies(sim)[-1]) and conv.last_receipt.breakpoints


def test_prompt_cache_false_opts_out_and_no_client_means_no_breakpoints(sim):
    client = client_for(sim)
    off = Conversation(LONG_SYSTEM, client=client, budget=20_000, prompt_cache=False)
    assert off.strategy == SlidingWindow()
    sim.clear_requests()
    off.send("Which record is in drawer 3?")
    assert "cache_control" not in str(bodies(sim)[-1])
    alone = Conversation(LONG_SYSTEM, model=OTHER, budget=20_000)
    alone.add_user("Which record is in drawer 3?")
    assert "cache_control" not in str(alone.request())
    forced = Conversation(LONG_SYSTEM, model=OTHER, budget=20_000, prompt_cache=True)
    forced.add_user("Which record is in drawer 3?")
    assert forced.request()["system"][-1]["cache_control"] == {"type": "ephemeral"}


# -- the kept messages are serialized once ---------------------------------------------------------


def test_a_1m_window_does_not_serialize_the_history_again(monkeypatch):
    conv = Conversation("Be brief.", model=DEFAULT_MODEL)
    assert conv.budget == 1_000_000
    for i in range(2000):
        conv.add_user(f"message {i} about the river and the lantern")
        conv.add_assistant(f"reply {i}")
    conv.add_user("the newest message")
    calls = []
    real = convo.messages.Message.to_api

    def counting(self):
        calls.append(self)
        return real(self)

    monkeypatch.setattr(convo.messages.Message, "to_api", counting)
    request = conv.request()
    assert len(request["messages"]) == 4001 and calls == []
    conv.undo()
    conv.add_user("another new message")
    assert conv.request()["messages"][-1] == {"role": "user", "content": "another new message"}
    # at most once, when it was added (a plain-text message's dict is made without it)
    assert [m.content for m in calls] in ([], ["another new message"])


def test_breakpoints_never_leak_into_the_kept_messages():
    conv = Conversation(LONG_SYSTEM, model=OTHER, budget=50_000, prompt_cache=True)
    conv.add_user("first")
    conv.add_assistant("one")
    first = conv.request()
    assert first["messages"][-1]["content"][-1]["cache_control"]
    conv.add_user("second")
    second = conv.request()
    assert second["messages"][0]["content"][-1]["cache_control"]  # the previous request's end
    assert second["messages"][-1]["content"][-1]["cache_control"]  # the newest message
    conv.prompt_cache = False
    assert conv.request()["messages"] == [m.to_api() for m in conv.messages]  # nothing leaked


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("turn"), st.text("abcdefgh ", min_size=1, max_size=30).filter(str.strip)),
        st.tuples(st.just("undo"), st.none()),
        st.tuples(st.just("pin"), st.integers(0, 50)),
        st.tuples(st.just("fork"), st.none()),
        st.tuples(st.just("blocks"), st.text("xyz ", min_size=1, max_size=10).filter(str.strip)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(_OPS, st.sampled_from([None, True, False]), st.sampled_from([300, 2000, 1_000_000]))
def test_requests_match_a_fresh_serialization(ops, cache, budget):
    conv = Conversation("sys", model=OTHER, budget=budget, max_tokens=100, prompt_cache=cache)
    for op, arg in ops:
        if op == "turn":
            conv.add_user(arg)
            conv.add_assistant(arg[::-1].strip() or "ok")
        elif op == "blocks":
            conv.add_user([{"type": "text", "text": arg, "cache_control": {"type": "ephemeral"}}])
            conv.add_assistant("noted")
        elif op == "undo" and len(conv):
            conv.undo()
        elif op == "pin" and len(conv):
            conv.pin(arg % len(conv))
        elif op == "fork":
            conv = conv.fork()
    if not len(conv):
        return
    conv.add_user("last question")
    request = conv.request()
    fresh = [m.to_api() for m in conv._selected(conv.last_selection)]
    if cache is not True:
        assert request["messages"] == fresh
    else:  # the same, apart from the markers placed
        def strip(msgs):
            out = []
            for m in msgs:
                c = m["content"]
                if isinstance(c, list):
                    c = [{k: v for k, v in b.items() if k != "cache_control"} for b in c]
                    if len(c) == 1 and c[0].get("type") == "text" and set(c[0]) == {"type", "text"}:
                        c = c[0]["text"]
                out.append({**m, "content": c})
            return out

        assert strip(request["messages"]) == strip(fresh)
        marks = sum(str(m).count("cache_control") for m in request["messages"]) + str(request.get("system")).count(
            "cache_control"
        )
        own = sum(str(m).count("cache_control") for m in fresh)  # the caller's own markers are kept
        assert marks <= max(4, own) and (own < 4 or marks == own)
