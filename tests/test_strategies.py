import pytest

from convo import ContextOverflowError, ConvoError, InvalidConfigError, Selection, SlidingWindow, TrimState, to_message
from convo.strategies import OrElse, strategy_from_config


def state(turn_tokens, *, pinned=(), fixed=10, max_tokens=100, budget=500):
    """A TrimState over one-message turns of the given sizes (no counter needed)."""
    messages = [to_message({"role": "user", "content": f"m{i}"}) for i in range(len(turn_tokens))]
    prefix = [0]
    for t in turn_tokens:
        prefix.append(prefix[-1] + t)
    pins = sorted(pinned)
    pinned_prefix = [0]
    for p in pins:
        pinned_prefix.append(pinned_prefix[-1] + turn_tokens[p])
    return TrimState(
        messages=messages,
        starts=list(range(len(turn_tokens))),
        prefix=prefix,
        pinned=pins,
        pinned_prefix=pinned_prefix,
        fixed=fixed,
        max_tokens=max_tokens,
        budget=budget,
    )


def test_keeps_everything_that_fits():
    assert SlidingWindow()(state([50, 50, 50])).start == 0


def test_drops_oldest_turns_first():
    # fixed 10 + max_tokens 100 leaves 390 for turns of 100 each: the newest three fit.
    s = state([100] * 10)
    sel = SlidingWindow()(s)
    assert sel.start == 7
    assert s.cost(sel) <= s.budget < s.cost(sel.start - 1)


def test_pinned_turns_are_kept_and_counted():
    s = state([100] * 10, pinned=[0])
    sel = SlidingWindow()(s)
    assert sel.start == 8  # turn 0 (pinned) + turns 8, 9
    assert s.cost(sel) == 10 + 100 + 300


def test_overflow_says_what_was_needed():
    s = state([100, 450], budget=500)
    with pytest.raises(ContextOverflowError) as info:
        SlidingWindow()(s)
    err = info.value
    assert (err.needed, err.allowed) == (560, 500)
    assert "560" in str(err) and "500" in str(err) and "max_tokens" in str(err)


def test_plain_callables_compose_and_fall_back():
    def broken(state):
        raise ConvoError("summarizer unavailable")

    def greedy(state):
        return 0  # keeps everything: does not fit

    s = state([100] * 10)
    chained = OrElse((broken, greedy)) | SlidingWindow()
    sel = chained(s)
    assert sel.start == 7
    assert "summarizer unavailable" in sel.note and "greedy" in sel.note


def test_first_fitting_strategy_wins():
    s = state([10, 10, 10])
    assert (SlidingWindow() | (lambda st: Selection(2)))(s).start == 0


def test_config_round_trip():
    chain = SlidingWindow() | SlidingWindow()
    assert strategy_from_config(chain.config()) == chain
    assert strategy_from_config(SlidingWindow().config()) == SlidingWindow()
    with pytest.raises(InvalidConfigError, match="unknown strategy"):
        strategy_from_config({"type": "not-known"})  # never silently a window
