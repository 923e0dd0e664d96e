"""Client-side rate limits: against the simulator's own limits, in virtual time, and via Redis."""

import subprocess
import sys
import textwrap
from typing import Any

import pytest

import convo
from convo import Client, RateLimits
from convo.ratelimit import Bucket, MemoryStore, RateLimiter, RedisStore, SQLiteStore
from convo.sim import ManualClock, Simulator

MODEL = "claude-sonnet-4-6"
KEY = "test-key"


def virtual_client(sim, clock, **kw):
    """A client whose sleeps move the shared manual clock instead of waiting."""
    return Client(api_key=KEY, base_url=sim.base_url, model=MODEL, clock=clock, sleep=clock.advance, **kw)


def statuses(sim):
    return [r.status for r in sim.requests if r.path == "/v1/messages"]


def ask(i, words=5):
    return [{"role": "user", "content": f"request {i}: " + "lorem ipsum dolor " * words}]


def test_configured_limits_mean_zero_429s_and_no_idle_time():
    clock = ManualClock()
    with Simulator(rpm=30, input_tpm=20_000, output_tpm=4_000, clock=clock, round_remaining=False) as sim:
        client = virtual_client(sim, clock, limits=RateLimits(rpm=30, input_tpm=20_000, output_tpm=4_000),
                                retry=convo.RetryPolicy(max_attempts=1))
        start = clock()
        for i in range(90):
            client.create(ask(i), max_tokens=100)
        elapsed = clock() - start
    assert statuses(sim).count(429) == 0 and len(statuses(sim)) == 90
    # 90 requests at 30 rpm with a 30-request burst need at least 120 s; no more than 5% over.
    assert 120 <= elapsed <= 126


def test_output_reserves_max_tokens_and_refunds_the_rest():
    clock = ManualClock()
    store = MemoryStore(clock)
    limiter = RateLimiter(RateLimits(output_tpm=6000, store=store), clock)
    res = limiter.reserve(100, 1000)
    bucket = Bucket("output_tpm", 6000, 100)
    assert store.level("default", bucket) == 5000
    usage = type("U", (), {"input_tokens": 100, "output_tokens": 250, "cache_creation_input_tokens": 0})()
    limiter.settle(res, usage, None)
    assert store.level("default", bucket) == 5750


def test_cache_reads_do_not_count_but_cache_writes_do():
    clock = ManualClock()
    store = MemoryStore(clock)
    limiter = RateLimiter(RateLimits(input_tpm=10_000, store=store), clock)
    bucket = Bucket("input_tpm", 10_000, 10_000 / 60)
    res = limiter.reserve(2000, 10)
    usage = type("U", (), {"input_tokens": 100, "output_tokens": 5, "cache_creation_input_tokens": 400,
                           "cache_read_input_tokens": 1500})()
    limiter.settle(res, usage, None)
    assert store.level("default", bucket) == 10_000 - 500


@pytest.mark.parametrize("store_kind", ["memory", "redis", "sqlite"])
def test_refunds_ahead_in_line_shorten_the_wait(store_kind, request, tmp_path):
    clock = ManualClock()
    if store_kind == "memory":
        store: Any = MemoryStore(clock)
    elif store_kind == "redis":
        store = RedisStore(request.getfixturevalue("redis_url"), prefix=f"refund-{id(clock)}:")
    else:
        store = SQLiteStore(tmp_path / "limits.db", clock=clock)
    limiter = RateLimiter(RateLimits(output_tpm=600, store=store), clock)
    first = limiter.reserve(0, 600)  # takes the whole bucket
    second = limiter.reserve(0, 60)  # queued behind it: 60 tokens at 10/s
    assert first.wait == 0 and second.wait == pytest.approx(6.0, abs=0.1)
    usage = type("U", (), {"input_tokens": 0, "output_tokens": 100, "cache_creation_input_tokens": 0})()
    limiter.settle(first, usage, None)  # 500 unused tokens come back
    assert limiter.recheck(second) == 0


def test_rounded_remaining_headers_are_not_taken_as_exact():
    clock = ManualClock()
    store = MemoryStore(clock)
    limiter = RateLimiter(RateLimits(input_tpm=30_000, store=store), clock)
    limiter.learn({"anthropic-ratelimit-input-tokens-limit": "30000",
                   "anthropic-ratelimit-input-tokens-remaining": "29000"})
    # The middle of the rounding range (+500), less one second of refill (500/s) in transit.
    assert store.level("default", Bucket("input_tpm", 30_000, 500)) == 29_000
    limiter = RateLimiter(RateLimits(input_tpm=6_000, store=store, scope="small"), clock)
    limiter.learn({"anthropic-ratelimit-input-tokens-limit": "6000",
                   "anthropic-ratelimit-input-tokens-remaining": "5000"})
    assert store.level("small", Bucket("input_tpm", 6_000, 100)) == 5_400


def test_a_request_larger_than_a_limit_is_refused():
    limiter = RateLimiter(RateLimits(input_tpm=1000))
    with pytest.raises(convo.InvalidConfigError, match="can never be sent"):
        limiter.reserve(5000, 10)


def test_limits_are_learned_from_headers():
    clock = ManualClock()
    with Simulator(rpm=20, clock=clock) as sim:
        client = virtual_client(sim, clock, limits=RateLimits(), retry=convo.RetryPolicy(max_attempts=1))
        for i in range(100):
            client.create(ask(i, 1), max_tokens=20)
        assert client.limiter.limit("rpm") == 20
    assert statuses(sim).count(429) <= 1  # at most 1%


def test_adaptive_slows_down_on_429_and_529():
    clock = ManualClock()
    limiter = RateLimiter(RateLimits(), clock)
    for _ in range(20):
        limiter.reserve(0, 0)
        clock.advance(0.1)
    limiter.throttled()
    first = limiter.adaptive_rate
    limiter.throttled()  # the same burst of 429s: one cut, not one per request
    assert first is not None and limiter.adaptive_rate == first
    assert first == pytest.approx(2.0 * 0.7)  # 20 requests in the last 10 s, cut by BETA
    clock.advance(1.0)
    limiter.throttled()
    assert limiter.adaptive_rate < first  # a second burst cuts again
    waits = [limiter.reserve(0, 0).wait for _ in range(5)]
    assert waits[-1] > 0  # requests are now spaced out


def test_one_429_slows_a_client_for_seconds_not_minutes():
    """A lone 429 (its retry-after is 1 s) is a dip: the rate grows back in time, not per success."""
    clock = ManualClock()
    with Simulator(faults=["429"], clock=clock) as sim:
        client = virtual_client(sim, clock, limits=RateLimits(rpm=3000))
        start = clock()
        for i in range(40):
            client.create(ask(i), max_tokens=20)
        elapsed = clock() - start
        rate = client.limiter.adaptive_rate
        clock.advance(10.0)
        assert client.limiter.adaptive_rate is None  # back past 3,000 rpm: no cap left
    assert statuses(sim).count(429) == 1
    assert elapsed < 8, elapsed  # before: ~2 s a request, and ~230 requests to recover
    assert rate is None or rate > 10, rate  # before: 1.1 requests a second after these 40


def test_sustained_throttling_keeps_the_rate_down_and_quiet_time_lifts_it():
    clock = ManualClock()
    limiter = RateLimiter(RateLimits(rpm=600), clock)
    for _ in range(50):  # 5 requests a second
        limiter.reserve(0, 0)
        clock.advance(0.2)
    rates = []
    for _ in range(5):  # a 429 every 2 s
        limiter.throttled()
        rates.append(limiter.adaptive_rate)
        clock.advance(2.0)
    assert all(r is not None and r < 5 for r in rates), rates
    clock.advance(30.0)  # no 429 for 30 s: the cap is past 600 rpm, so gone
    assert limiter.adaptive_rate is None


def test_each_process_paces_its_own_adaptive_cut_on_a_shared_store():
    """The cut is this process's sending rate x 0.7: two processes on one shared store each keep
    theirs (before, one shared bucket held both to one process's rate)."""
    clock = ManualClock()
    shared = MemoryStore(clock)
    a, b = (RateLimiter(RateLimits(rpm=6000, store=shared), clock) for _ in range(2))
    for _ in range(50):  # each sends 5 requests a second
        a.reserve(0, 0)
        b.reserve(0, 0)
        clock.advance(0.2)
    a.throttled()
    b.throttled()
    rate = a.adaptive_rate
    assert rate == pytest.approx(5 * 0.7, rel=0.05) and b.adaptive_rate == rate
    waits = []
    for _ in range(10):
        waits.append(a.reserve(0, 0).wait)
        b.reserve(0, 0)
    assert waits[-1] == pytest.approx((10 - rate) / rate, rel=0.01)  # a's own 10 requests, not 20


def test_client_backs_off_after_server_429s():
    clock = ManualClock()
    with Simulator(faults=["429@1", "529"], clock=clock) as sim:
        client = virtual_client(sim, clock, limits=RateLimits())
        client.create(ask(0), max_tokens=20)
        assert client.limiter.adaptive_rate is not None


def test_tokens_per_day_limit():
    clock = ManualClock()
    limiter = RateLimiter(RateLimits(tokens_per_day=10_000), clock)
    assert limiter.reserve(4000, 1000).wait == 0
    assert limiter.reserve(4000, 1000).wait == 0
    wait = limiter.reserve(4000, 1000).wait
    assert wait == pytest.approx(5000 / (10_000 / 86_400))


@pytest.mark.parametrize("kwargs", [{"rpm": 0}, {"input_tpm": -1}, {"output_tpm": "fast"}, {"rpm": True}])
def test_bad_limits(kwargs):
    with pytest.raises(convo.InvalidConfigError):
        RateLimits(**kwargs)


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_shared_store_buckets_are_atomic_and_shared(kind, request, tmp_path):
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        a, b = RedisStore(url, prefix="t1:"), RedisStore(url, prefix="t1:")
        assert "redis://" not in repr(a)
    else:
        a, b = SQLiteStore(tmp_path / "l.db"), SQLiteStore(tmp_path / "l.db")
    bucket = Bucket("rpm", 10, 10 / 60)
    waits = [s.reserve("acct", [(bucket, 1)])[0] for s in [a, b] * 6]
    assert waits[:10] == [0.0] * 10 and waits[10] > 0 and waits[11] > waits[10]


def test_invalid_redis_url():
    with pytest.raises(convo.InvalidConfigError, match="Redis URL"):
        RedisStore("http://not-redis")


def test_unreachable_redis_is_a_clear_error():
    store = RedisStore("redis://127.0.0.1:9/0")
    with pytest.raises(convo.RateLimitStoreError, match="reachable"):
        store.reserve("x", [(Bucket("rpm", 10, 1), 1)])


WORKER = textwrap.dedent(
    """
    import sys
    from convo import Client, RateLimits, RetryPolicy
    from convo.ratelimit import RedisStore, SQLiteStore
    base_url, kind, where, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = RedisStore(where, prefix="shared-test:") if kind == "redis" else SQLiteStore(where)
    limits = RateLimits(rpm=600, store=store, scope="acct")
    client = Client(api_key="k", base_url=base_url, model="claude-sonnet-4-6", limits=limits,
                    retry=RetryPolicy(max_attempts=1))
    for i in range(n):
        client.create([{"role": "user", "content": f"hello {i}"}], max_tokens=5)
    """
)


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_two_processes_share_one_accounts_limit_through_a_store(kind, request, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    where = request.getfixturevalue("redis_url") if kind == "redis" else str(tmp_path / "limits.db")
    with Simulator(rpm=600) as sim:
        procs = [
            subprocess.Popen([sys.executable, str(script), sim.base_url, kind, where, "320"], stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()[-2000:]
    codes = statuses(sim)
    # 640 requests against a 600-request burst: together they must wait, and never get a 429.
    assert len(codes) == 640 and codes.count(429) == 0
