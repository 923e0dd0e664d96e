"""Calibration: the offline estimate learns a bounded, conservative per-model correction from
each response's usage, and the client's budget check converges to the server's count.

The simulator counts with its own tokenizer (convo/sim/tokens.py), which convo's estimate does
not know, as with the real API: on claude-sonnet-4-6 convo's estimate comes out high, on
claude-sonnet-5-5 (the newer tokenizer) low. Either way the budget check must end up close to
the server's own count (``count_tokens``) and never much below it.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo import Budget, BudgetExceededError, Client
from convo.prices import PriceTable
from convo.sim import Simulator
from convo.tokens import (
    CachedCounter,
    Calibration,
    ExactCounter,
    OfflineCounter,
    calibrated_budget,
    calibration_of,
    count_tokens,
    total_input,
)

MODEL = "claude-sonnet-4-6"
#: One model whose server count is below convo's estimate, one where it is above.
MODELS = ["claude-sonnet-4-6", "claude-sonnet-5-5"]
#: After five responses the budget estimate is within this of the server's count: at most
#: UNDER below it (the margin an underestimate may not exceed), at most OVER above it.
UNDER, OVER = 0.03, 0.10
TURNS = [
    "Tell me about the weather today in the city of Oslo, and what people wear in the winter there.",
    "How does the long polar night change daily life, schools and the opening hours of shops?",
    "Which museums would you visit first on a rainy afternoon, and how would you travel between them?",
    "Summarize the differences between the coastal and the inland climate of Norway in a few lines.",
    "What should a visitor know about public transport tickets, night buses and ferries?",
    "Give me a packing list for a week of hiking in the mountains in late September.",
]


@pytest.fixture(scope="module")
def server():
    with Simulator(seed=0) as s:
        yield s


def worst_input_tokens(error: BudgetExceededError, model: str, max_tokens: int) -> float:
    """The input estimate a refused request was budgeted with (inverting the worst-case price)."""
    p = PriceTable.default().price(model)
    return (error.needed * 1_000_000 - max_tokens * p.output) / p.worst_input / 1.25


def budgeted_estimate(server, counter, messages, max_tokens=50, model=MODEL):
    """The input tokens the client's spend check assumes for ``messages`` (it refuses, nothing is sent)."""
    sent = len(server.requests)
    c = Client(api_key="k", base_url=server.base_url, model=model, counter=counter, budget=Budget(usd=1e-9))
    with pytest.raises(BudgetExceededError) as info:
        c.create(messages, max_tokens=max_tokens)
    assert len(server.requests) == sent  # refused before sending
    return worst_input_tokens(info.value, model, max_tokens)


def server_count(server, messages, model=MODEL, system=None):
    """The server's own count of a request (its count_tokens endpoint)."""
    with Client(api_key="k", base_url=server.base_url, model=model, counter=CachedCounter(OfflineCounter())) as c:
        return c.count_tokens(messages, **({"system": system} if system is not None else {}))


def test_without_responses_there_is_no_correction(server):
    counter = CachedCounter(OfflineCounter())
    cal = calibration_of(counter)
    assert cal is not None and cal.factor(MODEL) == 1.0 and cal.samples(MODEL) == 0
    ask = [{"role": "user", "content": TURNS[0]}]
    estimate = count_tokens(ask, counter=counter)
    assert budgeted_estimate(server, counter, ask) == pytest.approx(estimate)
    assert cal.factor(MODEL) == 1.0  # a refused request teaches nothing


@pytest.mark.parametrize("model", MODELS)
def test_after_responses_the_budget_estimate_converges_to_the_servers_count(server, model):
    counter = CachedCounter(OfflineCounter())
    cal = calibration_of(counter)
    c = Client(api_key="k", base_url=server.base_url, model=model, counter=counter)
    probe = [{"role": "user", "content": TURNS[-1]}]
    truth = server_count(server, probe, model)
    before = (budgeted_estimate(server, counter, probe, model=model) - truth) / truth
    assert budgeted_estimate(server, counter, probe, model=model) == pytest.approx(count_tokens(probe, counter=counter))
    history: list[dict] = []
    errors = []
    for turn in TURNS[:5]:
        history.append({"role": "user", "content": turn})
        reply = c.create(history, max_tokens=200)
        assert reply.usage.input_tokens == server_count(server, history, model)  # usage is the server's count
        history.append({"role": "assistant", "content": reply.content[0].text})
        errors.append((budgeted_estimate(server, counter, probe, model=model) - truth) / truth)
    after = errors[-1]
    # the estimate started off by more than the bound, and ends within it, on the safe side
    assert abs(before) > OVER and -UNDER <= after <= OVER, (before, errors)
    assert abs(after) < abs(before) / 2, (before, errors)
    assert cal.samples(model) == 5 and cal.factor(model) != 1.0
    assert calibration_of(CachedCounter(OfflineCounter())).factor(model) == 1.0  # per counter


def test_the_correction_is_per_model_and_aliases_share_it():
    cal = Calibration()
    cal.observe("claude-haiku-4-5-20251001", 1000, 1300)
    assert cal.factor("claude-haiku-4-5") == pytest.approx(1.3) and cal.samples("claude-haiku-4-5") == 1
    assert cal.factor(MODEL) == 1.0
    cal.reset("claude-haiku-4-5")
    assert cal.factor("claude-haiku-4-5-20251001") == 1.0


def test_a_constant_ratio_is_learned_exactly_and_a_falling_one_slowly():
    cal = Calibration()
    for _ in range(40):
        cal.observe(MODEL, 1000, 1200)
    assert cal.factor(MODEL) == pytest.approx(1.2)
    cal.observe(MODEL, 1000, 900)  # one low count: the factor stays above the plain mean
    mean = 1.2 + cal.alpha * (0.9 - 1.2)
    assert mean < cal.factor(MODEL) < 1.2
    for _ in range(60):
        cal.observe(MODEL, 1000, 900)
    assert cal.factor(MODEL) == pytest.approx(0.9, abs=0.01)  # but it does come down


def test_prompt_cache_tokens_count_as_input():
    from anthropic.types import Usage

    usage = Usage(input_tokens=10, output_tokens=5, cache_creation_input_tokens=300, cache_read_input_tokens=2000)
    assert total_input(usage) == 2310
    assert total_input(Usage(input_tokens=7, output_tokens=1)) == 7 and total_input(None) == 0


@pytest.mark.parametrize("model", MODELS)
def test_cached_prompts_calibrate_like_uncached_ones(server, model):
    counter = CachedCounter(OfflineCounter())
    c = Client(api_key="k", base_url=server.base_url, model=model, counter=counter)
    system = [{"type": "text", "text": " ".join(TURNS) * 12, "cache_control": {"type": "ephemeral"}}]
    ask = [{"role": "user", "content": TURNS[0]}]
    truth = server_count(server, ask, model, system)
    estimate = count_tokens(ask, system=system, counter=counter)
    for turn in TURNS[:3]:
        reply = c.create([{"role": "user", "content": turn}], system=system, max_tokens=50)
    assert reply.usage.cache_read_input_tokens > reply.usage.input_tokens  # served from the cache
    # the factor learned is the one of the whole prompt, not of the small uncached part
    calibrated = calibration_of(counter).apply(model, estimate)
    raw, fitted = (estimate - truth) / truth, (calibrated - truth) / truth
    assert abs(raw) > 0.05 and abs(fitted) < abs(raw) / 2, (estimate, calibrated, truth)  # it learned
    assert -UNDER <= fitted <= OVER, (estimate, calibrated, truth)


def test_fitting_budget_shrinks_by_the_factor():
    counter = CachedCounter(OfflineCounter())
    assert calibrated_budget(counter, MODEL, 10_000, 1000) == 10_000
    calibration_of(counter).observe(MODEL, 1000, 1500)
    assert calibrated_budget(counter, MODEL, 10_000, 1000) == 1000 + 6000
    assert calibrated_budget(ExactCounter(object(), model=MODEL), MODEL, 10_000, 1000) == 10_000


def test_observations_from_many_threads_are_all_counted():
    cal = Calibration()

    def feed():
        for _ in range(500):
            cal.observe(MODEL, 1000, 1100)

    threads = [threading.Thread(target=feed) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cal.samples(MODEL) == 4000 and cal.factor(MODEL) == pytest.approx(1.1)


counts = st.integers(min_value=-(10**6), max_value=10**9)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(counts, counts), min_size=1, max_size=40))
def test_the_correction_is_bounded_and_conservative_under_any_usage(pairs):
    cal = Calibration()
    for estimate, actual in pairs:
        new = cal.observe(MODEL, estimate, actual)
        f = cal.factor(MODEL)
        assert cal.low <= f <= cal.high
        if new is not None:  # never below what was just observed by more than the margin
            ratio = min(max(actual / estimate, cal.low), cal.high)
            assert f >= ratio * (1 - cal.margin) - 1e-9
        assert cal.apply(MODEL, 1000) == pytest.approx(1000 * f, abs=1)


@pytest.mark.parametrize("kwargs", [{"alpha": 0}, {"low": 0}, {"high": 0.9}, {"margin": 1}])
def test_bad_settings_are_refused(kwargs):
    from convo import InvalidConfigError

    with pytest.raises(InvalidConfigError):
        Calibration(**kwargs)


def test_a_settled_factor_is_followed_on_one_response_in_eight():
    from convo._calibration import SETTLED, SETTLED_EVERY, Calibration

    cal = Calibration()
    model = "claude-sonnet-4-6"
    for _ in range(SETTLED):
        assert cal.wants(model)
        cal.observe(model, estimate=1000, actual=1100)
    wanted = [cal.wants(model) for _ in range(SETTLED_EVERY * 4)]
    assert sum(wanted) == 4 and wanted[SETTLED_EVERY - 1]
    assert cal.wants("claude-haiku-4-5")  # another model has its own count
