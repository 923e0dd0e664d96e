"""Cache-aware trimming: the stepped window, and the breakpoints a conversation places."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo import Client, Conversation, InvalidConfigError, SlidingWindow, Summarize
from convo.messages import Message
from convo.sim import ManualClock, Simulator
from convo.strategies import Selection, TrimState, strategy_from_config

MODEL = "claude-sonnet-4-6"


def state(sizes, *, budget, pinned=(), fixed=10, max_tokens=100):
    messages, starts, prefix = [], [], [0]
    for n in sizes:
        starts.append(len(messages))
        messages.append(Message(role="user", content="x"))
        prefix.append(prefix[-1] + n)
    pins = sorted(set(pinned))
    pp = [0]
    for t in pins:
        pp.append(pp[-1] + sizes[t])
    return TrimState(messages, starts, prefix, pins, pp, fixed, max_tokens, budget)


def test_low_water_is_checked_and_saved():
    for bad in (0, 1.5, -0.1, True, "0.6"):
        with pytest.raises(InvalidConfigError, match="low_water"):
            SlidingWindow(low_water=bad)
    with pytest.raises(InvalidConfigError, match="low_water"):
        Summarize(low_water=2)
    w = SlidingWindow(low_water=0.65)
    assert strategy_from_config(w.config()) == w
    s = Summarize(low_water=0.6)
    assert strategy_from_config(s.config()) == s
    assert SlidingWindow().config() == {"type": "sliding_window"}  # unchanged for old files


def test_cuts_a_block_down_to_the_low_water_mark():
    # turns of 100, budget 1000, fixed+max_tokens 110: the per-turn window keeps 8 turns.
    sizes = [100] * 9
    s = state(sizes, budget=1000)
    assert SlidingWindow()(s).start == 1
    sel = SlidingWindow(low_water=0.6)(s)
    assert s.cost(sel) <= 600  # dropped down to 60% at once
    # the next turns are added without moving the cut, until the budget is reached again
    starts = [SlidingWindow(low_water=0.6)(state([100] * n, budget=1000)).start for n in range(9, 15)]
    assert starts == [sel.start] * 5 + [starts[-1]] and starts[-1] > sel.start  # 14 turns: 1,010 > 1,000


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=60),
    budget=st.integers(400, 3000),
    low=st.floats(0.3, 0.99),
    pins=st.lists(st.integers(0, 59), max_size=3),
)
def test_stepped_window_invariants(sizes, budget, low, pins):
    pinned = [p for p in pins if p < len(sizes) - 1]
    window = SlidingWindow(low_water=low)
    previous = None
    changes = 0
    for n in range(1, len(sizes) + 1):
        s = state(sizes[:n], budget=budget, pinned=[p for p in pinned if p < n])
        if s.minimum() > budget:
            return  # overflow is the plain window's business (tested elsewhere)
        start = window(s).start
        assert 0 <= start <= n - 1
        assert s.cost(start) <= budget  # never over budget; pinned turns are counted in cost
        if previous is not None:
            assert start >= previous  # the cut only moves forward
            if s.cost(previous) <= budget:
                assert start == previous  # and only when the budget forces it: the prefix stays
            else:
                changes += 1
                assert s.cost(start) <= max(low * budget, s.cost(n - 1))  # down to the low-water mark
        previous = start
    assert window(s) == window(s)  # a pure function of the state


def test_summarize_cuts_after_the_summary_in_steps():
    from convo.summarize import Summary

    base = state([100] * 12, budget=1000)
    s = TrimState(*[getattr(base, f) for f in ("messages", "starts", "prefix", "pinned", "pinned_prefix",
                                                 "fixed", "max_tokens", "budget")],
                  summary=Summary("short", 2))  # fmt: skip
    stepped = Summarize(low_water=0.6)(s)
    plain = Summarize()(s)
    assert stepped.context and stepped.start > plain.start >= 2
    assert s.cost(stepped) <= 0.6 * 1000 + 20


# -- end to end ------------------------------------------------------------------------------------------

SYSTEM = "You answer questions about the archive.\n" + "\n".join(
    f"Rule {i}: records about topic {i} live in drawer {i % 9} and are filed by date." for i in range(90)
)


@pytest.fixture(scope="module")
def clock():
    return ManualClock()


@pytest.fixture(scope="module")
def sim(clock):
    with Simulator(seed=0, clock=clock) as s:
        yield s


def chat(sim, clock, conv, turns):
    rng = random.Random(3)
    words = ["drawer", "record", "topic", "archive", "date", "river", "lantern", "castle", "meadow", "signal"]
    for t in range(turns):
        conv.send(f"Question {t}: " + " ".join(rng.choice(words) for _ in range(rng.randint(60, 160))))
        clock.advance(20)


def test_prompt_cache_places_breakpoints_and_reads_the_prefix(sim, clock):
    sim.prompt_cache.clear()
    client = Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=lambda s: None)
    conv = Conversation(SYSTEM, model=MODEL, budget=4500, max_tokens=300, client=client, prompt_cache=True)
    assert conv.strategy == SlidingWindow(low_water=0.6)
    sim.clear_requests()
    chat(sim, clock, conv, 30)
    bodies = [r.body for r in sim.requests if r.path == "/v1/messages"]
    assert all(r.status == 200 for r in sim.requests)
    for body in bodies:
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
        marks = sum("cache_control" in b for m in body["messages"] if isinstance(m["content"], list)
                    for b in m["content"])  # fmt: skip
        assert marks <= 3
    receipts = conv.receipts
    assert len(receipts) == 30 and receipts[-1].dropped_messages > 0  # the budget forced trimming
    read = sum(r.cache_read for r in receipts)
    total = sum(r.input_tokens for r in receipts)
    assert read / total >= 0.75
    per_turn = Conversation(SYSTEM, model=MODEL, budget=4500, max_tokens=300, client=client,
                            strategy=SlidingWindow(), prompt_cache=True)  # fmt: skip
    chat(sim, clock, per_turn, 30)
    naive_read = sum(r.cache_read for r in per_turn.receipts) / sum(r.input_tokens for r in per_turn.receipts)
    assert naive_read < read / total
    assert sum(r.cost for r in receipts) < sum(r.cost for r in per_turn.receipts)


def test_breakpoints_stay_within_four_with_callers_own(sim, clock):
    client = Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=lambda s: None)
    conv = Conversation(SYSTEM, model=MODEL, budget=20_000, client=client, prompt_cache="1h")
    cc = {"type": "ephemeral", "ttl": "1h"}
    tools = [{"name": "lookup", "description": "Find a record.", "input_schema": {"type": "object"}, "cache_control": cc}]
    conv.add_user([{"type": "text", "text": "Some context to keep.", "cache_control": cc}])
    conv.add_assistant("Kept.")
    sim.clear_requests()
    for text in ("First question?", "Second question?", "Third?"):
        conv.send(text, tools=tools)
    assert [r.status for r in sim.requests] == [200, 200, 200]
    assert all(len(r.breakpoints) <= 4 for r in conv.receipts)
    assert conv.last_receipt.cache_read > 0
    assert sim.requests[-1].body["system"][-1]["cache_control"] == cc


def test_without_prompt_cache_nothing_is_marked(sim):
    client = Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=lambda s: None)
    conv = Conversation(SYSTEM, model=MODEL, budget=20_000, client=client, prompt_cache=False)
    sim.clear_requests()
    conv.send("Hello")
    assert "cache_control" not in str(sim.requests[-1].body)
    assert conv.last_receipt.breakpoints == () and conv.last_receipt.cache_read == 0
    with pytest.raises(InvalidConfigError, match="prompt_cache"):
        Conversation(model=MODEL, budget=1000, prompt_cache="2h")


def test_selection_note_survives(sim):
    # a strategy's note reaches the receipt
    client = Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=lambda s: None)
    conv = Conversation(model=MODEL, budget=20_000, client=client,
                        strategy=lambda st: Selection(st.turns - 1, (), "custom cut"))  # fmt: skip
    conv.send("Hi")
    assert conv.last_receipt.note == "custom cut"


# -- Summarize commits only on success ----------------------------------------------------------------


def summarizing(sim, **kw):
    client = Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=lambda s: None)
    conv = Conversation(model=MODEL, budget=700, max_tokens=150, client=client,
                        strategy=Summarize(keep_last=1, max_summary_tokens=120, **kw))  # fmt: skip
    for i in range(4):
        conv.add_user(f"Fact {i}: the lighthouse number {i} stands on a rocky island near the harbor town. " * 4)
        conv.add_assistant(f"Noted fact {i} about lighthouse {i}.")
    assert conv.tokens + conv.max_tokens > 0.8 * conv.budget  # the next send summarizes first
    return conv


def summary_calls(sim):
    return [r for r in sim.requests if r.path == "/v1/messages" and "Summarize this conversation" in str(r.body)]


def test_a_failed_summary_keeps_the_turns_and_falls_back(sim):
    conv = summarizing(sim)
    sim.clear_requests()
    sim.faults = ["500"] * 4  # every attempt of the client's retry policy fails
    reply = conv.send("Fact 3: the lighthouse number 3 stands on a rocky island near the harbor town, again.")
    assert reply and conv.summary is None and "500" in conv.summary_error
    assert "fell back to the sliding window" in conv.last_receipt.note
    assert len(summary_calls(sim)) == 4  # one summarizing call (the client's retries), not one per strategy step
    conv.send("Fact 4: and one more lighthouse.")  # the next turn tries again, and succeeds
    assert conv.summary is not None and conv.summary_error is None
    assert conv.last_receipt.summarized_messages > 0


def test_a_summary_cut_by_a_dropped_connection_is_not_committed(sim):
    conv = summarizing(sim)
    sim.faults = ["drop"] * 4
    conv.send("Fact 3: yet another lighthouse on yet another island, far from the town.")
    assert conv.summary is None and conv.summary_error
    assert len(conv) == 10  # every turn kept in the history


def test_a_summary_that_is_not_shorter_is_rejected_with_bounded_calls(sim):
    calls = []

    def verbose(previous, turns):
        calls.append(len(turns))
        return " ".join(m.text for m in turns) * 2  # longer than the turns themselves

    conv = summarizing(sim, summarizer=verbose, max_calls=2)
    conv.send("Fact 3: the lighthouse number 3 stands on a rocky island near the harbor town, again.")
    assert len(calls) == 2  # asked once, asked again shorter, then gave up for this turn
    assert conv.summary is None and "not shorter" in conv.summary_error
    assert conv.last_receipt.summarized_messages == 0


def test_an_empty_summary_is_rejected(sim):
    conv = summarizing(sim, summarizer=lambda previous, turns: "   ")
    conv.send("Fact 3: one more.")
    assert conv.summary is None and "empty" in conv.summary_error
