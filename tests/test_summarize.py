"""Summarize: the summarizing step and the strategy, on the simulator and as pure functions."""

import asyncio
import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convo
from convo import (
    ContextOverflowError,
    Conversation,
    InvalidConfigError,
    check_history,
    count_tokens,
)
from convo.strategies import TrimState, strategy_from_config
from convo.summarize import HEADER, Summarize, Summary
from convo.tokens import CachedCounter, OfflineCounter, calibrated_budget, calibration_of, default_counter

from .helpers import quick_aclient, quick_client

MODEL = "claude-sonnet-4-6"
PINNED = "My name is Ada Lovelace and I only write Rust, never C++."


client, aclient = quick_client, quick_aclient


def fact(i):
    return f"Fact {i}: river {i} runs through the valley of town {i}. It is {i * 7} km long and full of trout."


def chat(c, strategy=None, budget=2000, counter=None):
    conv = Conversation(
        "Be brief.",
        model=MODEL,
        budget=budget,
        max_tokens=200,
        strategy=strategy or Summarize(keep_last=2, max_summary_tokens=200),
        client=c,
        counter=counter,
        prompt_cache=False,  # these tests compare the requests' exact messages
    )
    conv.add_user(PINNED, pinned=True)
    conv.add_assistant("Noted, Ada.")
    return conv


def posts(sim):
    return [r.body for r in sim.requests if r.path == "/v1/messages"]


def is_summary_request(body):
    return body["messages"][-1]["content"].startswith("Summarize this conversation")


def within_budget(conv, body):
    """The estimate, corrected by what responses taught the counter, plus max_tokens fits."""
    used = count_tokens(body["messages"], system=body.get("system"), counter=conv.counter)
    cal = calibration_of(conv.counter)
    factor = cal.factor(conv.model) if cal is not None else 1.0
    return used * factor + body["max_tokens"] <= conv.budget + 1e-6


def own_counter():
    """A counter that learns only from this test's responses (the default one is process-wide,
    taught by every test before), so that where trimming starts does not depend on test order."""
    return CachedCounter(OfflineCounter())


# -- on the simulator -----------------------------------------------------------------------


def test_summary_replaces_the_evicted_turns(fresh):
    conv = chat(client(fresh))
    for i in range(16):
        conv.send(fact(i))
    assert conv.summary is not None and conv.summary_error is None
    summarizing = [b for b in posts(fresh) if is_summary_request(b)]
    assert summarizing and all(b["max_tokens"] == 200 for b in summarizing)
    sent = [b for b in posts(fresh) if not is_summary_request(b)][-1]
    messages = sent["messages"]
    check_history(messages)
    assert within_budget(conv, sent)
    assert messages[0]["content"].startswith(HEADER + "\n")
    assert messages[0]["content"] == f"{HEADER}\n{conv.summary.text}"
    assert messages[1]["content"] == PINNED  # pinned, verbatim, right after the summary
    text = "\n".join(m["content"] if isinstance(m["content"], str) else str(m["content"]) for m in messages[1:])
    covered = conv.summary.turns
    for i in range(covered - 1):  # turns 1..covered-1 hold facts 0..covered-2
        assert fact(i) not in text
    assert messages[-1]["content"] == fact(15)
    # What is sent after the summary is exactly the history from the first uncovered turn.
    tail = [m.to_api() for m in conv.messages[2 * covered :]]
    assert messages[2] == {"role": "assistant", "content": "Noted, Ada."}
    assert messages[3:] == tail[: len(messages) - 3]


def test_each_turn_is_summarized_once_and_the_summary_rolls(fresh):
    calls = []

    def summarizer(previous, turns):
        calls.append((previous, [m.text for m in turns]))
        return f"summary #{len(calls)} of {len(turns)} messages"

    conv = chat(client(fresh), Summarize(keep_last=2, summarizer=summarizer))
    for i in range(25):
        conv.send(fact(i))
    assert len(calls) >= 2
    assert calls[0][0] is None
    for k in range(1, len(calls)):
        assert calls[k][0] == f"summary #{k} of {len(calls[k - 1][1])} messages"
    folded = [t for _, turns in calls for t in turns]
    users = [t for t in folded if t.startswith("Fact")]
    assert users == [fact(i) for i in range(len(users))]  # in order, each once
    assert PINNED not in folded  # pinned turns are never folded
    assert conv.summary.turns == 1 + len(users)
    assert not any(is_summary_request(b) for b in posts(fresh))  # the callable replaced the model


def test_failed_summarizing_falls_back_to_the_window(fresh):
    counter = own_counter()
    conv = chat(client(fresh, counter=counter), budget=1500, counter=counter)

    def next_summarizes(i):  # would the whole history plus fact(i) pass the trigger (calibrated)?
        messages = [*(m.to_api() for m in conv.messages), {"role": "user", "content": fact(i)}]
        size = count_tokens(messages, system="Be brief.", counter=counter) + 200
        return size > conv.strategy.trigger * calibrated_budget(counter, MODEL, conv.budget, 200)

    i = 0
    while not next_summarizes(i):
        conv.send(fact(i))
        i += 1
        assert i < 60
    assert i > 3 and conv.summary is None  # everything fitted so far: nothing summarized
    fresh.faults = ["400"]  # the summarizing request fails (400 is not retried)
    reply = conv.send(fact(i))
    assert reply and conv.messages[-2].text == fact(i)  # the user's turn was kept and answered
    assert conv.summary is None and conv.summary_error.startswith("BadRequestError")
    assert "summarizing failed" in conv.last_selection.note
    sent = posts(fresh)[-1]
    assert sent["messages"][-1]["content"] == fact(i) and within_budget(conv, sent)
    assert sent["messages"][0]["content"] == PINNED
    conv.send(fact(i + 1))  # the next turn summarizes again and clears the error
    assert conv.summary is not None and conv.summary_error is None
    assert "summarizing failed" not in conv.last_selection.note


def test_a_failing_summarizer_is_reported_by_compact(fresh):
    def broken(previous, turns):
        raise RuntimeError("summarizer down")

    conv = chat(client(fresh), Summarize(keep_last=1, summarizer=broken))
    for i in range(4):
        conv.send(fact(i))
    with pytest.raises(RuntimeError, match="summarizer down"):
        conv.compact(force=True)
    assert conv.summary is None and "summarizer down" in conv.summary_error


def test_stream_summarizes_too(fresh):
    conv = chat(client(fresh))
    for i in range(16):
        "".join(conv.stream(fact(i)))
    assert conv.summary is not None
    sent = posts(fresh)[-1]
    assert sent["messages"][0]["content"].startswith(HEADER) and within_budget(conv, sent)


def test_compact_force_and_cheaper_model(fresh):
    conv = chat(client(fresh), Summarize(keep_last=1, model="claude-haiku-4-5"))
    for i in range(3):
        conv.send(fact(i))
    assert conv.compact() is False  # far below the trigger
    assert conv.compact(force=True) is True
    summarizing = [b for b in posts(fresh) if is_summary_request(b)]
    assert len(summarizing) == 1 and summarizing[0]["model"] == "claude-haiku-4-5"
    assert conv.summary.turns == 3  # all but the last exchange
    assert conv.compact(force=True) is False  # nothing new to fold


def test_save_and_load_keep_the_summary(fresh, tmp_path):
    conv = chat(client(fresh))
    for i in range(16):
        conv.send(fact(i))
    path = tmp_path / "c.json"
    conv.save(path)
    again = Conversation.load(path)
    assert again.summary == conv.summary
    assert again.strategy == conv.strategy
    again.add_user("and now?")
    conv.add_user("and now?")
    assert again.request() == conv.request()
    # Older files (no summary field) still load.
    data = conv.to_dict()
    del data["summary"]
    assert Conversation.from_dict(data).summary is None
    data["summary"] = {"text": "x", "turns": 999}
    with pytest.raises(convo.ConversationFileError, match="summary.turns"):
        Conversation.from_dict(data)


def test_undo_past_the_summary_drops_it(fresh):
    conv = chat(client(fresh), Summarize(keep_last=1, summarizer=lambda p, t: "short"))
    for i in range(4):
        conv.send(fact(i))
    conv.compact(force=True)
    assert conv.summary.turns == 4
    conv.undo()
    assert conv.summary.turns == 4
    conv.undo()
    assert conv.summary is None  # it told of a turn that is gone; the history has the rest
    assert conv.request()["messages"][0]["content"] == PINNED


def test_async_twin_sends_the_same_requests(fresh):
    sync = chat(client(fresh))
    for i in range(16):
        sync.send(fact(i))
    expected = posts(fresh)
    fresh.clear_requests()

    async def main():
        conv = chat(aclient(fresh))
        for i in range(16):
            await conv.asend(fact(i))
        return conv

    conv = asyncio.run(main())
    assert posts(fresh) == expected
    assert conv.summary == sync.summary


def test_async_summarizer_and_acompact(fresh):
    seen = []

    async def summarizer(previous, turns):
        seen.append(len(turns))
        return "an async summary"

    async def main():
        conv = chat(aclient(fresh), Summarize(keep_last=1, summarizer=summarizer))
        for i in range(3):
            await conv.asend(fact(i))
        assert await conv.acompact(force=True)
        return conv

    conv = asyncio.run(main())
    assert conv.summary == Summary("an async summary", 3) and seen == [4]
    conv.add_user("one more")
    conv.add_assistant("ok")
    with pytest.raises(InvalidConfigError, match="async"):
        conv.compact(force=True)  # the sync path cannot run an async summarizer


def test_compact_signatures_match():
    assert list(inspect.signature(Conversation.compact).parameters) == list(
        inspect.signature(Conversation.acompact).parameters
    )


# -- the strategy, as a pure function ---------------------------------------------------------


def state(turn_tokens, *, summary=None, pinned=(), fixed=10, max_tokens=100, budget=500):
    messages = [convo.to_message({"role": "user", "content": f"m{i}"}) for i in range(len(turn_tokens))]
    prefix = [0]
    for t in turn_tokens:
        prefix.append(prefix[-1] + t)
    pins = sorted(pinned)
    pinned_prefix = [0]
    for p in pins:
        pinned_prefix.append(pinned_prefix[-1] + turn_tokens[p])
    return TrimState(messages, list(range(len(turn_tokens))), prefix, pins, pinned_prefix, fixed, max_tokens,
                     budget, default_counter(), summary)


def test_without_a_summary_it_is_the_sliding_window():
    s = state([100] * 10)
    assert Summarize()(s) == convo.SlidingWindow()(s)


def test_the_summary_goes_first_and_replaces_its_turns():
    summary = Summary("short", 6)
    sel = Summarize()(state([100] * 10, summary=summary, budget=600))
    assert sel.start == 6 and sel.context == (summary.message,) and not sel.note


def test_summary_and_kept_turns_too_big_trims_further():
    s = state([100] * 10, summary=Summary("short", 2))
    sel = Summarize()(s)
    assert sel.start > 2 and sel.context and "dropped" in sel.note
    assert s.cost(sel) <= s.budget < s.cost(convo.Selection(sel.start - 1, sel.context))


def test_a_summary_too_big_for_the_budget_is_left_out():
    s = state([100] * 10, summary=Summary("word " * 600, 5))
    sel = Summarize()(s)
    assert sel.context == () and "without it" in sel.note and s.cost(sel) <= s.budget


def test_plan_folds_only_past_the_trigger_and_keeps_the_last_exchanges():
    strategy = Summarize(trigger=0.8, keep_last=3)
    assert strategy.plan(state([25] * 10)) is None  # 10 + 100 + 250 <= 0.8 x 500
    fold = strategy.plan(state([40] * 10, pinned=(1,)))
    assert (fold.start, fold.end, fold.previous) == (0, 6, None)  # the pending last turn + 3 kept
    assert [m.text for m in fold.messages] == ["m0", "m2", "m3", "m4", "m5"]  # the pin stays
    assert strategy.plan(state([40] * 10, summary=Summary("old", 4))) is None  # the summary made room
    rolled = strategy.plan(state([50] * 10, summary=Summary("old", 2)))
    assert (rolled.start, rolled.end, rolled.previous) == (2, 6, "old")  # only the new turns
    assert strategy.plan(state([40] * 10), force=True).end == 6


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=30),
    covered=st.integers(0, 30),
    words=st.integers(1, 200),
    pins=st.sets(st.integers(0, 29), max_size=4),
    budget=st.integers(150, 3000),
)
def test_selection_always_fits_or_overflows(sizes, covered, words, pins, budget):
    pinned = tuple(p for p in pins if p < len(sizes) - 1)
    summary = Summary("fact " * words, min(covered, len(sizes) - 1)) if covered else None
    s = state(sizes, summary=summary, pinned=pinned, budget=budget)
    try:
        sel = Summarize()(s)
    except ContextOverflowError:
        assert s.minimum() > s.budget
        return
    assert 0 <= sel.start < s.turns and s.cost(sel) <= s.budget


def test_config_round_trip_and_bad_settings():
    strategy = Summarize(trigger=0.5, keep_last=2, max_summary_tokens=300, model="claude-haiku-4-5")
    assert strategy_from_config(strategy.config()) == strategy
    for kwargs in ({"trigger": 0}, {"trigger": 1.5}, {"keep_last": -1}, {"max_summary_tokens": 0},
                   {"summarizer": "nope"}, {"model": ""}):
        with pytest.raises(InvalidConfigError):
            Summarize(**kwargs)


def test_no_client_and_no_summarizer_is_recorded_not_fatal():
    conv = Conversation(model=MODEL, budget=1000, max_tokens=100, strategy=Summarize(keep_last=1), counter=own_counter())
    for i in range(12):
        conv.add_user(fact(i))
        conv.add_assistant("ok " * 20)
    with pytest.raises(InvalidConfigError, match="client"):
        conv.compact()
    assert "client" in conv.summary_error
    conv.request()
    assert "summarizing failed" in conv.last_selection.note
