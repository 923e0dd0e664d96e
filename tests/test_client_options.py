"""Client settings: live ones take effect on the next call, read-only ones refuse assignment,
``with_options`` makes a configured copy, and one injected clock and sleep time everything.

All against the simulator, over real HTTP, through the official SDK.
"""

import asyncio

import pytest

import convo
from convo import (
    AsyncClient,
    Budget,
    Client,
    MemoryCache,
    PriceTable,
    RateLimits,
    ReadOnlySettingError,
    Redactor,
    RetryPolicy,
)
from convo._options import READ_ONLY

MODEL = "claude-sonnet-4-6"
OTHER = "claude-haiku-4-5"
ASK = [{"role": "user", "content": "Tell me about the weather today in the city of Oslo."}]
SECRET = [{"role": "user", "content": "Please write to jane.doe@example.com about the invoice."}]


class FakeClock:
    """Virtual time: ``sleep`` advances it (and records), ``tick`` advances it on every read."""

    def __init__(self, start: float = 1e9, tick: float = 0.0) -> None:
        self.now = start
        self.tick = tick
        self.slept: list[float] = []

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def make(sim, **kw):
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("model", MODEL)
    return Client(api_key="test", base_url=sim.base_url, **kw)


def posts(sim):
    return [r for r in sim.requests if r.path == "/v1/messages"]


# -- live settings ------------------------------------------------------------------------------


def test_assigning_retry_takes_effect_on_the_next_call(fresh):
    c = make(fresh)
    c.retry = RetryPolicy(max_attempts=1)
    fresh.faults = ["500", "ok"]
    with pytest.raises(convo.ServerError):
        c.create(ASK, max_tokens=20)
    assert len(posts(fresh)) == 1
    c.retry = RetryPolicy(max_attempts=3)
    fresh.faults = ["500", "ok"]
    assert c.create(ASK, max_tokens=20).content[0].text
    assert len(posts(fresh)) == 3


def test_a_retry_policy_with_another_budget_size_starts_a_new_retry_budget(fresh):
    c = make(fresh)
    first = c.retry_budget
    c.retry = RetryPolicy(max_attempts=2)  # same budget size: the quota carries on
    assert c.retry_budget is first
    c.retry = RetryPolicy(budget=20)
    assert c.retry_budget is not first and c.retry_budget.capacity == 20
    c.retry = RetryPolicy(budget=0)
    assert c.retry_budget is None


def test_assigning_a_cache_takes_effect_and_removing_it_too(fresh):
    c = make(fresh)
    c.create(ASK, max_tokens=20, temperature=0)
    c.cache = MemoryCache()
    first = c.create(ASK, max_tokens=20, temperature=0)
    again = c.create(ASK, max_tokens=20, temperature=0)
    assert again.content[0].text == first.content[0].text
    assert len(posts(fresh)) == 2 and c.stats.cache_hits == 1
    c.cache = None
    c.create(ASK, max_tokens=20, temperature=0)
    assert len(posts(fresh)) == 3


def test_cache_sampling_namespace_and_ttl_are_live(fresh):
    clock = FakeClock()
    c = make(fresh, cache=MemoryCache(clock=clock))
    c.create(ASK, max_tokens=20)
    c.create(ASK, max_tokens=20)
    assert len(posts(fresh)) == 2  # sampling requests are not cached by default
    c.cache_sampling = True
    c.create(ASK, max_tokens=20)
    c.create(ASK, max_tokens=20)
    assert len(posts(fresh)) == 3
    c.cache_namespace = "team-b"
    c.create(ASK, max_tokens=20)
    assert len(posts(fresh)) == 4  # another namespace: a miss
    c.cache_ttl = 5
    c.create(ASK, max_tokens=30)
    clock.now += 10
    c.create(ASK, max_tokens=30)
    assert len(posts(fresh)) == 6  # stored for 5 s, asked again after 10 s


def test_assigning_a_redactor_protects_the_next_request(fresh):
    c = make(fresh)
    c.create(SECRET, max_tokens=20)
    assert "jane.doe@example.com" in str(posts(fresh)[-1].body)
    c.redactor = Redactor(mode="placeholder")
    c.create(SECRET, max_tokens=20)
    assert "jane.doe@example.com" not in str(posts(fresh)[-1].body)


def test_assigning_a_budget_guards_the_next_request(fresh):
    c = make(fresh)
    c.budget = Budget(usd=0.000001)
    with pytest.raises(convo.BudgetExceededError):
        c.create(ASK, max_tokens=1000)
    assert posts(fresh) == []
    c.budget = None
    c.create(ASK, max_tokens=20)
    assert len(posts(fresh)) == 1


def test_a_budget_refuses_a_model_without_a_price_at_assignment(fresh):
    c = make(fresh, model="claude-no-such-model-1")
    with pytest.raises(convo.UnknownModelError):
        c.budget = Budget(usd=1)
    assert c.budget is None
    c = make(fresh, budget=Budget(usd=1))
    with pytest.raises(convo.UnknownModelError):
        c.model = "claude-no-such-model-1"
    assert c.model == MODEL


def test_assigning_prices_changes_what_calls_cost(fresh):
    c = make(fresh)
    c.create(ASK, max_tokens=20)
    normal = c.stats.cost_usd
    rates = {"input": 3000, "output": 15000, "cache_write_5m": 3750, "cache_write_1h": 6000, "cache_read": 300}
    c.prices = PriceTable({MODEL: rates})
    c.create(ASK, max_tokens=20)
    assert c.stats.cost_usd - normal > 100 * normal > 0


def test_assigning_limits_starts_a_limiter_on_the_clients_clock(fresh):
    clock = FakeClock()
    c = make(fresh, clock=clock, sleep=clock.sleep)
    c.create(ASK, max_tokens=20)
    c.create(ASK, max_tokens=20)
    assert c.limiter is None and clock.slept == []
    c.limits = RateLimits(rpm=1, learn=False, adaptive=False)
    c.create(ASK, max_tokens=20)
    c.create(ASK, max_tokens=20)  # one request a minute: waits a virtual minute
    assert c.limiter is not None
    assert sum(clock.slept) == pytest.approx(60, abs=0.5)
    c.limits = None
    clock.slept.clear()
    c.create(ASK, max_tokens=20)
    assert c.limiter is None and clock.slept == []


def test_assigning_a_counter_changes_the_estimates_limits_use(fresh):
    class Huge:
        def count_text(self, text):
            return 10_000

        def count_message(self, message):
            return 10_000

        def count_request(self, messages, *, system=None, tools=None, model=None):
            return 10_000 * (len(messages) + 1)

    c = make(fresh, limits=RateLimits(input_tpm=6000, learn=False, adaptive=False))
    c.create(ASK, max_tokens=20)
    c.counter = Huge()
    assert isinstance(c.counter, Huge)
    with pytest.raises(convo.InvalidConfigError, match="needs 20000 input"):  # estimated by Huge
        c.create(ASK, max_tokens=20)
    assert len(posts(fresh)) == 1


def test_model_user_and_fallback_models_are_live(fresh):
    c = make(fresh)
    c.model = OTHER
    c.user = "alice"
    c.create(ASK, max_tokens=20)
    sent = posts(fresh)[-1].body
    assert sent["model"] == OTHER and sent["metadata"] == {"user_id": "alice"}
    c.model = MODEL
    c.fallback_models = [OTHER]
    fresh.faults = ["529", "529", "ok"]
    assert c.create(ASK, max_tokens=20).model == OTHER
    assert c.fallback_models == (OTHER,)


def test_assigning_a_timeout_takes_effect(fresh):
    fresh.faults = ["hang@0"]
    c = make(fresh, retry=RetryPolicy(max_attempts=1))
    c.timeout = 0.3
    with pytest.raises(convo.APIConnectionError):
        c.create(ASK, max_tokens=20)
    assert c.timeout == 0.3 and c.sdk.timeout == 0.3


def test_assigning_sleep_takes_effect(fresh):
    waits = []
    c = make(fresh)
    c.sleep = waits.append
    fresh.faults = ["429@2", "ok"]
    c.create(ASK, max_tokens=20)
    assert waits == [2.0]


def test_invalid_assignments_are_refused_and_change_nothing(fresh):
    c = make(fresh)
    for name, value in [("retry", 3), ("limits", {"rpm": 5}), ("budget", 1.0), ("model", ""), ("redactor", "x"),
                        ("cache", object()), ("cache_ttl", -1), ("fallback_models", [""]), ("prices", {})]:
        before = getattr(c, name)
        with pytest.raises(convo.InvalidConfigError):
            setattr(c, name, value)
        assert getattr(c, name) == before, name


# -- read-only settings -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(READ_ONLY))
def test_read_only_settings_raise_a_typed_error_naming_with_options(fresh, name):
    c = make(fresh)
    before = getattr(c, name, None)
    with pytest.raises(ReadOnlySettingError, match=rf"with_options\({name}=") as info:
        setattr(c, name, None)
    assert info.value.setting == name
    assert isinstance(info.value, AttributeError) and isinstance(info.value, convo.ConvoError)
    assert getattr(c, name, None) is before


def test_a_misspelt_setting_is_an_error_not_ignored(fresh):
    c = make(fresh)
    with pytest.raises(AttributeError, match="no setting 'retries'"):
        c.retries = RetryPolicy(max_attempts=1)


# -- with_options -------------------------------------------------------------------------------


def test_with_options_returns_a_configured_copy_and_leaves_the_original(fresh):
    c = make(fresh, user="alice")
    copy = c.with_options(model=OTHER, retry=RetryPolicy(max_attempts=1))
    assert type(copy) is Client and copy is not c
    assert c.model == MODEL and c.retry == RetryPolicy() and copy.user == "alice"
    fresh.faults = ["500", "ok"]
    with pytest.raises(convo.ServerError):
        copy.create(ASK, max_tokens=20)
    assert c.create(ASK, max_tokens=20).model == MODEL  # the original still retries
    assert [r.body["model"] for r in posts(fresh)] == [OTHER, MODEL]


def test_a_copy_shares_connections_stats_retry_budget_limiter_and_slots(fresh):
    c = make(fresh, limits=RateLimits(rpm=1000))
    copy = c.with_options(model=OTHER)
    assert copy.sdk is c.sdk and copy.stats is c.stats and copy.retry_budget is c.retry_budget
    assert copy.limiter is c.limiter and copy._env.slots is c._env.slots
    copy.create(ASK, max_tokens=20)
    c.create(ASK, max_tokens=20)
    assert c.stats.requests == 2
    timed = c.with_options(timeout=5, default_headers={"x-team": "blue"}, max_concurrency=2,
                           limits=RateLimits(rpm=10))
    assert timed.sdk is not c.sdk and timed.sdk._client is c.sdk._client  # one connection pool
    assert timed.sdk.timeout == 5 and c.timeout is None
    assert timed.limiter is not c.limiter and timed._env.slots is not c._env.slots
    timed.create(ASK, max_tokens=20)
    assert posts(fresh)[-1].header("x-team") == "blue" and posts(fresh)[-2].header("x-team") is None
    assert c.stats.requests == 3


def test_a_copy_on_another_clock_keeps_its_own_figures(fresh):
    c = make(fresh)
    copy = c.with_options(clock=FakeClock())
    assert copy.stats is not c.stats and copy.retry_budget is not c.retry_budget
    copy.create(ASK, max_tokens=20)
    assert c.stats.requests == 0 and copy.stats.requests == 1


def test_closing_a_copy_leaves_the_originals_connections_open(fresh):
    c = make(fresh)
    with c.with_options(timeout=30) as copy:
        copy.create(ASK, max_tokens=20)
    assert c.create(ASK, max_tokens=20).content[0].text
    c.close()


def test_with_options_refuses_an_unknown_option(fresh):
    with pytest.raises(convo.InvalidConfigError, match="retries"):
        make(fresh).with_options(retries=3)


def test_async_with_options_and_live_settings(fresh):
    async def main():
        c = AsyncClient(api_key="test", base_url=fresh.base_url, model=MODEL)
        c.retry = RetryPolicy(max_attempts=1)
        fresh.faults = ["500", "ok"]
        with pytest.raises(convo.ServerError):
            await c.create(ASK, max_tokens=20)
        copy = c.with_options(model=OTHER, default_headers={"x-team": "red"})
        reply = await copy.create(ASK, max_tokens=20)
        await c.close()
        return c, copy, reply

    c, copy, reply = asyncio.run(main())
    assert type(copy) is AsyncClient and reply.model == OTHER
    assert posts(fresh)[-1].header("x-team") == "red" and c.stats.requests == 2


# -- one clock ----------------------------------------------------------------------------------


def test_latency_and_time_to_first_token_use_the_injected_clock(fresh):
    clock = FakeClock(start=1e9, tick=0.01)
    c = make(fresh, clock=clock)
    with c.stream(ASK, max_tokens=100) as s:
        s.until_done()
    c.create(ASK, max_tokens=20)
    stats = c.stats.as_dict()
    assert 0 < stats["ttft_p50"] <= stats["latency_p99"] < 10  # seconds on one clock, not 1e9 apart
    assert stats["latency_p50"] < 10


def test_async_time_to_first_token_uses_the_injected_clock(fresh):
    clock = FakeClock(start=1e9, tick=0.01)

    async def main():
        async with AsyncClient(api_key="test", base_url=fresh.base_url, model=MODEL, clock=clock) as c:
            async with c.stream(ASK, max_tokens=100) as s:
                await s.until_done()
            return c.stats.as_dict()

    stats = asyncio.run(main())
    assert 0 < stats["ttft_p50"] <= stats["latency_p50"] < 10


def test_max_elapsed_is_measured_on_the_injected_clock(fresh):
    clock = FakeClock()
    c = make(fresh, clock=clock, sleep=clock.sleep, retry=RetryPolicy(max_attempts=10, max_elapsed=5))
    fresh.faults = ["429@3"] * 6 + ["ok"]
    with pytest.raises(convo.RateLimitError):
        c.create(ASK, max_tokens=20)
    # attempts at virtual t=0, 3 and 6; at 6 s the 5 s deadline has passed
    assert clock.slept == [3.0, 3.0] and len(posts(fresh)) == 3


def test_async_retries_and_limits_run_in_virtual_time(fresh):
    clock = FakeClock()

    async def main():
        c = AsyncClient(api_key="test", base_url=fresh.base_url, model=MODEL, clock=clock, sleep=clock.asleep,
                        limits=RateLimits(rpm=1, learn=False, adaptive=False))
        await c.create(ASK, max_tokens=20)
        fresh.faults = ["429@2", "ok"]
        await c.create(ASK, max_tokens=20)
        await c.close()
        return c

    c = asyncio.run(main())
    assert 2.0 in clock.slept and sum(clock.slept) >= 60  # the retry's 2 s and the limiter's minute
    assert c.stats.as_dict()["requests_per_minute"] == pytest.approx(2 * 60 / (clock.now - 1e9), rel=0.05)
