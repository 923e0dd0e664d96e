"""Budgets and rate limits shared across processes through a real redis-server or an SQLite file: one
cap for every process and restart, periods on the store's clock, and what happens when Redis goes away."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convo
from convo import (
    AsyncClient,
    Budget,
    BudgetExceededError,
    BudgetStoreError,
    Client,
    RateLimits,
    RedisStore,
    SQLiteStore,
)
from convo._budget_redis import RedisLedger
from convo._budget_store import Period
from tests.helpers import RedisServer

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "Hello there"}]


def _prefix() -> str:
    return f"budget-test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(params=["redis", "sqlite"])
def shared(request, tmp_path):
    """Makes handles on one set of shared books (each call: another process's store object)."""
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), _prefix()
        return lambda: RedisStore(url, prefix=prefix)
    path = tmp_path / "shared.db"
    return lambda: SQLiteStore(path)


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(str(tmp_path))
    server.start()
    yield server
    server.stop()


# -- one cap for many processes and restarts -----------------------------------------------------


def test_two_processes_worth_of_budgets_share_one_cap_user_caps_and_alerts(shared):
    fired = []
    on_alert = lambda fraction, spent, cap: fired.append(fraction)
    a = Budget(1.0, per_user_usd=0.6, alerts=(0.5,), on_alert=on_alert, store=shared())
    b = Budget(1.0, per_user_usd=0.6, alerts=(0.5,), on_alert=on_alert, store=shared())
    hold = a.reserve(0.4, "alice")
    assert b.left == pytest.approx(0.6)  # the other "process" sees the hold
    with pytest.raises(BudgetExceededError, match="alice") as info:
        b.reserve(0.3, "alice")  # over alice's cap, counted across both
    assert info.value.user == "alice" and info.value.left == pytest.approx(0.2)
    assert "held by requests in flight $0.400000" in str(info.value)  # the other process's hold
    a.settle(hold, 0.3)
    b.settle(b.reserve(0.3, "bob"), 0.25)
    assert a.spent == pytest.approx(0.55) and b.user_spent("alice") == pytest.approx(0.3)
    assert fired == [0.5]  # crossed once, in whichever process crossed it
    with pytest.raises(BudgetExceededError, match="shared budget 'default'"):
        a.reserve(0.5, "carol")
    restarted = Budget(1.0, store=shared())  # a new process, same books
    assert restarted.as_dict() | {"store": "-"} == {
        "usd": 1.0, "spent": pytest.approx(0.55), "held": pytest.approx(0.0), "left": pytest.approx(0.45),
        "by_user": {"alice": pytest.approx(0.3), "bob": pytest.approx(0.25)}, "store": "-", "name": "default",
    }
    other = Budget(1.0, store=shared(), name="team-b")  # another name: other books
    assert other.spent == 0.0


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from convo import AsyncClient, Budget, BudgetExceededError, RedisStore, SQLiteStore
    base_url, kind, where, prefix, cap = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])

    async def main():
        store = RedisStore(where, prefix=prefix) if kind == "redis" else SQLiteStore(where)
        budget = Budget(cap, store=store, period="day")
        client = AsyncClient(api_key="k", base_url=base_url, model="claude-sonnet-4-6", budget=budget,
                             max_concurrency=16)
        refused = 0

        async def task(t):
            nonlocal refused
            for i in range(1000):
                try:
                    await client.create([{"role": "user", "content": f"task {t} request {i}: say a few words"}],
                                        max_tokens=60)
                except BudgetExceededError:
                    refused += 1
                    return

        await asyncio.gather(*(task(t) for t in range(16)))
        print(json.dumps({"cost": client.stats.cost_usd, "requests": client.stats.requests, "refused": refused}))

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_eight_processes_of_sixteen_tasks_never_pass_the_cap(kind, request, sim, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    prefix, cap = _prefix(), 0.12
    where = request.getfixturevalue("redis_url") if kind == "redis" else str(tmp_path / "shared.db")
    procs = [
        subprocess.Popen([sys.executable, str(script), sim.base_url, kind, where, prefix, str(cap)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(8)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-3000:]
        reports.append(json.loads(out))
    spent = sum(r["cost"] for r in reports)
    store = RedisStore(where, prefix=prefix) if kind == "redis" else SQLiteStore(where)
    books = Budget(cap, store=store, period="day").as_dict()
    assert spent <= cap  # what the API charged, by every process together
    assert books["spent"] == pytest.approx(spent) and books["held"] == pytest.approx(0.0, abs=1e-9)
    assert spent > 0.8 * cap  # the cap was used up, not refused early
    assert sum(r["refused"] for r in reports) == 8 * 16  # every task stopped at the cap
    assert books["period"] == f"d{int(time.time() // 86_400)}"


# -- periods --------------------------------------------------------------------------------------


def test_a_period_starts_the_spend_over_on_the_stores_clock(shared):
    budget = Budget(0.1, period=1.5, store=shared())
    first = budget.as_dict()["period"]
    budget.settle(budget.reserve(0.08), 0.08)
    with pytest.raises(BudgetExceededError):
        budget.reserve(0.05)
    time.sleep(max(0.0, budget.as_dict()["resets_at"] - time.time()) + 0.1)
    assert budget.as_dict()["period"] != first and budget.spent == 0.0
    budget.settle(budget.reserve(0.05), 0.05)
    assert budget.spent == pytest.approx(0.05)


def test_an_in_process_budget_resets_at_the_month(monkeypatch):
    now = [datetime(2026, 1, 31, 23, 59, 0, tzinfo=UTC).timestamp()]
    budget = Budget(1.0, period="month", alerts=(0.5,), on_alert=lambda *a: fired.append(a[0]), clock=lambda: now[0])
    fired: list[float] = []
    budget.settle(budget.reserve(0.6), 0.6)
    assert budget.as_dict()["period"] == "m2026-01" and fired == [0.5]
    now[0] += 120  # February
    assert budget.spent == 0.0 and budget.as_dict()["period"] == "m2026-02"
    assert budget.as_dict()["resets_at"] == datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    budget.settle(budget.reserve(0.6), 0.6)
    assert fired == [0.5, 0.5]  # alerts fire once per period


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 .. 2100
def test_the_servers_calendar_agrees_with_pythons(redis_url, ts):
    store = RedisStore(redis_url, prefix="calendar:")
    for spec in ("day", "month", 3600):
        period = Period(spec)
        assert RedisLedger(store, "cal", period).period_at(ts) == period.at(ts)


def test_the_hold_of_a_process_that_died_is_given_back(shared):
    dying = Budget(1.0, store=shared(), hold_ttl=0.5)
    dying.reserve(0.9)  # never settled
    survivor = Budget(1.0, store=shared())
    assert survivor.left == pytest.approx(0.1)
    time.sleep(0.7)
    assert survivor.left == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs", [{"period": "week"}, {"period": 0}, {"store": "redis://x"}, {"hold_ttl": -1}])
def test_bad_shared_budget_settings(redis_url, kwargs):
    if "hold_ttl" in kwargs:
        kwargs = {**kwargs, "store": RedisStore(redis_url)}
    with pytest.raises(convo.InvalidConfigError):
        Budget(1.0, **kwargs)


# -- Redis unavailable -----------------------------------------------------------------------------


def test_a_shared_budget_fails_closed_then_recovers(own_redis, fresh, caplog):
    store = RedisStore(own_redis.url, prefix=_prefix(), timeout=1.0)
    client = Client(api_key="k", base_url=fresh.base_url, model=MODEL, budget=Budget(1.0, store=store),
                    sleep=lambda s: None)
    client.create(HELLO, max_tokens=20)
    own_redis.stop()
    sent = len(fresh.requests)
    start = time.monotonic()
    with pytest.raises(BudgetStoreError) as info:
        client.create(HELLO, max_tokens=20)
    assert time.monotonic() - start < 2.0
    assert f"127.0.0.1:{own_redis.port}" in str(info.value) and info.value.store == repr(store)
    assert len(fresh.requests) == sent and "the request was not sent" in str(info.value)
    with pytest.raises(BudgetStoreError, match="holds are not given back yet") as info:
        client.budget.as_dict()  # reading the books gives the failed reserve's hold back first
    assert "request" not in str(info.value)
    own_redis.start()  # an empty server: this process puts its own spend back before going on
    client.create(HELLO, max_tokens=20)
    assert client.budget.spent == pytest.approx(client.stats.cost_usd) and client.stats.successes == 2
    assert "putting back" in caplog.text


def test_a_spend_settled_during_an_outage_is_recorded_when_redis_returns(own_redis, caplog):
    budget = Budget(1.0, store=RedisStore(own_redis.url, prefix=_prefix(), timeout=1.0))
    hold = budget.reserve(0.2)
    own_redis.stop()
    budget.settle(hold, 0.15)  # the answer came: never an error here
    assert "kept" in caplog.text and "not in the books yet" in caplog.text and "not sent" not in caplog.text
    own_redis.start()
    assert budget.spent == pytest.approx(0.15)  # sent with the next call


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_spend_held_back_by_an_outage_is_recorded_without_another_call(kind, tmp_path, request):
    """An idle process (a worker waiting for its next user) records a spend its store refused as
    soon as the store answers again, in the background: the cap that other processes see counts
    it then, not at this process's next call (which may never come)."""
    import sqlite3

    prefix = _prefix()
    if kind == "redis":
        server = RedisServer(str(tmp_path), persist=True)
        server.start()
        request.addfinalizer(server.stop)  # stopped however the test ends
        budget = Budget(1.0, store=RedisStore(server.url, prefix=prefix, timeout=0.5))
        books = Budget(1.0, store=RedisStore(server.url, prefix=prefix))
    else:
        path = tmp_path / "shared.db"
        budget = Budget(1.0, store=SQLiteStore(path, timeout=0.3))
        books = Budget(1.0, store=SQLiteStore(path))
    hold = budget.reserve(0.2)
    if kind == "redis":
        server.stop()
    else:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the file
    budget.settle(hold, 0.15)  # held back
    if kind == "redis":
        server.start()
    else:
        other.execute("ROLLBACK")
        other.close()
    deadline = time.monotonic() + 10
    while books.spent < 0.15 and time.monotonic() < deadline:  # no call on `budget` meanwhile
        time.sleep(0.05)
    assert books.spent == pytest.approx(0.15) and books.as_dict()["held"] == pytest.approx(0.0)
    assert budget.spent == pytest.approx(0.15)  # and counted once


_SETTLE_AND_EXIT = textwrap.dedent("""
    import sys
    import convo
    budget = convo.Budget(1.0, store=convo.RedisStore(sys.argv[1], prefix=sys.argv[2], timeout=0.5))
    hold = budget.reserve(0.2)
    print("reserved", flush=True)
    sys.stdin.readline()
    budget.settle(hold, 0.15)  # the store is down: held back
    print("settled", flush=True)
    sys.stdin.readline()  # then exit at once, with no call after the last one
""")


@pytest.mark.parametrize("back", [True, False])
def test_a_process_records_its_last_held_back_spend_as_it_exits(back, tmp_path):
    """The last call's spend has no next call to carry it: the process sends it as it exits if
    the store is back (``back``), and otherwise says on stderr what it could not record."""
    server = RedisServer(str(tmp_path), persist=True)
    server.start()
    prefix = _prefix()
    proc = subprocess.Popen([sys.executable, "-c", _SETTLE_AND_EXIT, server.url, prefix], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "reserved"
        server.stop()
        proc.stdin.write("settle\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "settled"
        if back:
            server.start()
        proc.stdin.write("exit\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        if back:
            assert Budget(1.0, store=RedisStore(server.url, prefix=prefix)).spent == pytest.approx(0.15)
        else:
            assert "1 spend(s) of $0.150000 in all were not recorded in the shared budget before exit" in err
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()


def _answer_lost(server: RedisServer, call) -> None:
    """Run ``call`` against a frozen Redis (SIGSTOP) so it times out, then thaw the server: it
    applies the command, and the answer goes to a socket the client has closed."""
    server.proc.send_signal(signal.SIGSTOP)
    try:
        call()
    finally:
        server.proc.send_signal(signal.SIGCONT)


def test_a_hold_whose_reserve_got_no_answer_is_given_back_with_the_next_call(own_redis):
    prefix = _prefix()
    budget = Budget(1.0, store=RedisStore(own_redis.url, prefix=prefix, timeout=0.3))
    books = Budget(1.0, store=RedisStore(own_redis.url, prefix=prefix))  # another process's view
    assert budget.spent == 0.0  # connected, so the frozen server gets the reserve itself

    def reserve() -> None:
        with pytest.raises(BudgetStoreError):
            budget.reserve(0.4, "ada")

    _answer_lost(own_redis, reserve)
    deadline = time.monotonic() + 5
    while books.as_dict()["held"] < 0.4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert books.as_dict()["held"] == pytest.approx(0.4)  # the server took the hold; nobody has it
    hold = budget.reserve(0.1, "ada")  # the next call gives it back first
    assert books.as_dict()["held"] == pytest.approx(0.1)
    budget.settle(hold, 0.05)
    assert books.as_dict()["held"] == pytest.approx(0.0, abs=1e-9) and books.spent == pytest.approx(0.05)


def test_a_settle_whose_answer_was_lost_is_not_counted_twice(own_redis, caplog):
    prefix = _prefix()
    budget = Budget(1.0, store=RedisStore(own_redis.url, prefix=prefix, timeout=0.3))
    books = Budget(1.0, store=RedisStore(own_redis.url, prefix=prefix))
    hold = budget.reserve(0.4)
    _answer_lost(own_redis, lambda: budget.settle(hold, 0.25))  # kept, to be sent again
    assert "kept" in caplog.text
    deadline = time.monotonic() + 5
    while books.spent < 0.25 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert books.spent == pytest.approx(0.25)  # the server applied it
    assert budget.spent == pytest.approx(0.25)  # sent again with the next call: once in the books
    assert books.as_dict()["held"] == pytest.approx(0.0, abs=1e-9)


def _silent_server() -> tuple[int, threading.Event]:
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    done = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue
        for s in held:
            s.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1]), done


def test_a_hung_redis_fails_within_the_timeout():
    port, done = _silent_server()
    try:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        start = time.monotonic()
        with pytest.raises(BudgetStoreError):
            Budget(1.0, store=store).reserve(0.1)
        assert time.monotonic() - start < 1.5
        start = time.monotonic()
        with pytest.raises(convo.RateLimitStoreError):
            convo.ratelimit.RateLimiter(RateLimits(rpm=10, store=store)).reserve(10, 10)
        assert time.monotonic() - start < 1.5
    finally:
        done.set()


def test_a_rate_limiter_fails_closed_by_default_or_falls_back_to_local_buckets(own_redis, fresh, caplog):
    store = RedisStore(own_redis.url, prefix=_prefix(), timeout=1.0)
    closed = Client(api_key="k", base_url=fresh.base_url, model=MODEL, limits=RateLimits(rpm=100, store=store))
    local = Client(api_key="k", base_url=fresh.base_url, model=MODEL,
                   limits=RateLimits(rpm=100, store=store, on_store_error="local"))
    own_redis.stop()
    sent = len(fresh.requests)
    with pytest.raises(convo.RateLimitStoreError, match=f"127.0.0.1:{own_redis.port}"):
        closed.create(HELLO, max_tokens=10)
    assert len(fresh.requests) == sent
    for _ in range(3):
        local.create(HELLO, max_tokens=10)  # on this process's buckets
    assert len(fresh.requests) == sent + 3 and "own buckets" in caplog.text
    own_redis.start()
    closed.create(HELLO, max_tokens=10)
    time.sleep(convo.ratelimit.STORE_RETRY + 0.1)
    local.create(HELLO, max_tokens=10)
    assert "answers again" in caplog.text
    import redis

    keys = redis.Redis.from_url(own_redis.url).keys(store.prefix + "ratelimit:*")
    assert keys  # the shared buckets are in use again


def test_an_async_client_on_a_shared_budget(shared, fresh):
    import asyncio

    budget = Budget(1.0, store=shared())

    async def go() -> None:
        client = AsyncClient(api_key="k", base_url=fresh.base_url, model=MODEL, budget=budget)
        await asyncio.gather(*(client.create(HELLO, max_tokens=20) for _ in range(6)))
        assert budget.spent == pytest.approx(client.stats.cost_usd) and budget.as_dict()["held"] == pytest.approx(0)

    asyncio.run(go())


RESTART_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from convo import Budget, BudgetExceededError, BudgetStoreError, RedisStore
    redis_url, prefix = sys.argv[1], sys.argv[2]
    budget = Budget(1.0, store=RedisStore(redis_url, prefix=prefix, timeout=0.5))
    spent = 0.0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        try:
            hold = budget.reserve(0.01)
        except BudgetExceededError:
            break
        except BudgetStoreError:
            time.sleep(0.05)  # Redis is down: nothing may be spent
            continue
        time.sleep(0.01)
        budget.settle(hold, 0.01)
        spent += 0.01
        time.sleep(0.02)
    print(json.dumps({"spent": spent}))
    """
)


def test_processes_keep_the_cap_across_a_redis_restart_that_lost_the_books(own_redis, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(RESTART_WORKER)
    prefix = _prefix()
    procs = [subprocess.Popen([sys.executable, str(script), own_redis.url, prefix], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(4)]
    import redis

    raw = redis.Redis.from_url(own_redis.url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and float(raw.hget(f"{prefix}budget:default:p:all", "spent") or 0) < 0.3:
        time.sleep(0.02)
    own_redis.stop()  # mid-run, without persistence: the books are gone
    time.sleep(0.5)
    own_redis.start()
    spent = 0.0
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()[-3000:]
        spent += json.loads(out)["spent"]
    assert 0.9 <= spent <= 1.0 + 1e-9  # the workers' spend, put back by each, kept them under the one cap
