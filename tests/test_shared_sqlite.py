"""convo/shared_sqlite.py: rate-limit buckets and shared budgets in one SQLite file.

The processes-sharing-a-cap tests run on this store and on Redis alike (test_shared_budget.py,
test_ratelimit.py); here: the file's buckets behave exactly as the in-process ones, and a file
another process holds locked fails closed, then recovers.
"""

from __future__ import annotations

import math
import sqlite3
import stat
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convo import (
    Budget,
    BudgetExceededError,
    BudgetStoreError,
    Client,
    InvalidConfigError,
    RateLimits,
    RateLimitStoreError,
    SQLiteStore,
)
from convo.ratelimit import Bucket, MemoryStore
from convo.sim import ManualClock

from .helpers import MODEL, in_background

HELLO = [{"role": "user", "content": "Hello there"}]
BUCKETS = [Bucket("rpm", 50, 50 / 60), Bucket("input_tpm", 10_000, 10_000 / 60)]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.lists(st.tuples(st.sampled_from([0, 1]), st.floats(0, 12_000)), min_size=1, max_size=2)),
        st.tuples(st.just("adjust"), st.sampled_from([0, 1]), st.floats(-5_000, 5_000), st.none() | st.floats(0, 10_000)),
        st.tuples(st.just("wait"), st.floats(0, 90)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_the_files_buckets_behave_as_the_in_process_ones(tmp_path_factory, program):
    clock = ManualClock()
    memory = MemoryStore(clock)
    file = SQLiteStore(tmp_path_factory.mktemp("b") / "b.db", clock=clock)
    reservations = []
    for op in program:
        if op[0] == "wait":
            clock.advance(op[1])
            continue
        if op[0] == "adjust":
            _, i, delta, cap_at = op
            memory.adjust("s", BUCKETS[i], delta, cap_at)
            file.adjust("s", BUCKETS[i], delta, cap_at)
            continue
        demands = list({BUCKETS[i].name: (BUCKETS[i], amount) for i, amount in op[1]}.values())
        got_memory, got_file = memory.reserve("s", demands), file.reserve("s", demands)
        assert got_file[0] == pytest.approx(got_memory[0], rel=1e-9, abs=1e-9)
        assert got_file[1] == pytest.approx(got_memory[1])
        reservations.append((demands, got_file[1]))
    for demands, marks in reservations:  # what each would still wait, refunds counted
        assert file.recheck("s", demands, marks) == pytest.approx(memory.recheck("s", demands, marks), rel=1e-9, abs=1e-9)


def test_a_file_held_by_another_process_fails_closed_then_recovers(tmp_path, fresh):
    path = tmp_path / "shared.db"
    store = SQLiteStore(path, timeout=0.3)
    budget = Budget(1.0, store=store)
    client = Client(api_key="k", base_url=fresh.base_url, model=MODEL, budget=budget,
                    limits=RateLimits(rpm=1000, store=store))
    client.create(HELLO, max_tokens=20)
    spent = budget.spent
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a stuck process holding the file
    try:
        before = len(fresh.requests)
        with pytest.raises((BudgetStoreError, RateLimitStoreError), match="shared.db"):
            client.create(HELLO, max_tokens=20)
        assert len(fresh.requests) == before  # nothing was sent
        with pytest.raises(BudgetStoreError, match="fails closed"):
            budget.reserve(0.01)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    client.create(HELLO, max_tokens=20)  # the file is free again
    assert budget.spent > spent and budget.as_dict()["held"] == pytest.approx(0.0)
    assert budget.spent == pytest.approx(client.stats.cost_usd)


def test_a_queued_request_rechecks_without_waiting_for_a_writer(tmp_path):
    """A recheck only reads: while another process holds the write lock it still answers (from
    the last committed state) instead of failing after the timeout."""
    store = SQLiteStore(tmp_path / "shared.db", timeout=0.3)
    bucket = Bucket("rpm", 2, 2 / 60)
    demands = [(bucket, 1.0)]
    store.reserve("s", demands)
    store.reserve("s", demands)
    wait, marks = store.reserve("s", demands)  # the third of 2 per minute: ~30 s to wait
    holder = sqlite3.connect(tmp_path / "shared.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing (not yet committed)
    holder.execute("UPDATE convo_buckets SET level = 100")
    try:
        assert store.recheck("s", demands, marks) == pytest.approx(wait, abs=0.5)  # the committed state
        with pytest.raises(RateLimitStoreError, match="shared.db"):
            store.reserve("s", demands)  # a write still waits its turn, then fails closed
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.recheck("s", demands, marks) == pytest.approx(wait, abs=0.5)


def test_reading_a_budget_takes_no_lock_and_leaves_out_expired_holds(tmp_path):
    """``spent``, ``left`` and ``as_dict()`` (a dashboard, a metrics exporter) read a snapshot: they
    answer while another process holds the write lock, and count no hold past its deadline, even
    one no writer has cleared yet."""
    now = [1_000_000.0]
    path = tmp_path / "shared.db"
    budget = Budget(1.0, store=SQLiteStore(path, timeout=0.3, clock=lambda: now[0]), hold_ttl=10)
    budget.settle(budget.reserve(0.3), 0.2)
    budget.reserve(0.5)  # held by a request that never comes back
    assert budget.left == pytest.approx(0.3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing (not yet committed)
    holder.execute("UPDATE convo_budget_books SET value = 0.9")
    try:
        assert budget.spent == pytest.approx(0.2) and budget.left == pytest.approx(0.3)  # the committed state
        now[0] += 11  # the hold's deadline passes; no writer has run since
        snap = budget.as_dict()
        assert snap["held"] == 0 and snap["spent"] == pytest.approx(0.2) and snap["left"] == pytest.approx(0.8)
        with pytest.raises(BudgetStoreError, match="shared.db"):
            budget.reserve(0.1)  # a write still waits its turn, then fails closed
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert budget.reserve(0.8) is not None  # the next writer gives the expired hold back for good


def test_a_budget_read_does_not_wait_for_a_write_of_this_process_that_waits_for_the_file(tmp_path):
    """Reads have a connection of their own: while one thread's reserve waits for the file (another
    process holds it), a dashboard thread's ``spent`` answers at once; the reserve then goes through."""
    path = tmp_path / "shared.db"
    budget = Budget(1.0, store=SQLiteStore(path, timeout=3.0))
    budget.settle(budget.reserve(0.3), 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    writer, errors = in_background(budget.reserve, 0.1)
    time.sleep(0.2)  # the reserve is in SQLite's busy wait
    assert budget.spent == pytest.approx(0.2)
    assert writer.is_alive(), "the read waited for the write"
    holder.execute("ROLLBACK")
    holder.close()
    writer.join(5)
    assert errors == [] and budget.as_dict()["held"] == pytest.approx(0.1)


def test_spend_settled_while_the_file_is_locked_is_written_with_the_next_call(tmp_path):
    path = tmp_path / "shared.db"
    budget = Budget(1.0, store=SQLiteStore(path, timeout=0.2))
    hold = budget.reserve(0.3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    budget.settle(hold, 0.25)  # never raised over an answer the API gave: kept
    holder.execute("ROLLBACK")
    holder.close()
    assert budget.spent == pytest.approx(0.25) and budget.as_dict()["held"] == pytest.approx(0.0)
    other = Budget(1.0, store=SQLiteStore(path))  # another process sees it too
    with pytest.raises(BudgetExceededError):
        other.reserve(0.8)


def test_the_file_is_private_and_bad_settings_are_refused(tmp_path):
    path = tmp_path / "shared.db"
    SQLiteStore(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for bad in ({"timeout": 0}, {"timeout": math.nan}, {"timeout": "5"}):
        with pytest.raises(InvalidConfigError, match="timeout"):
            SQLiteStore(path, **bad)
    with pytest.raises(InvalidConfigError, match="file path"):
        SQLiteStore(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="cannot create"):
        SQLiteStore(tmp_path / "no-such-folder" / "x.db")
    with pytest.raises(InvalidConfigError, match="RedisStore or convo.SQLiteStore"):
        Budget(1.0, store=str(path))
