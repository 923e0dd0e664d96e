"""Cancelled while a step that must happen waits for a worker thread: the budget's settlement
and the store's write of a completed turn still happen, exactly once. A one-worker executor,
kept busy, holds the step in its queue, so the cancellation is sure to come before it starts;
the requests go to the simulator over HTTP."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import convo
from convo.ratelimit import RateLimiter
from convo.sim import Faults
from tests.helpers import MODEL, quick_aclient


class _Queueing(ThreadPoolExecutor):
    """One worker; remembers the name of each function handed to it (asyncio.to_thread's)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.names: list[str] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        inner = fn.args[0] if hasattr(fn, "args") and fn.args else fn  # to_thread: partial(ctx.run, f)
        self.names.append(getattr(inner, "__name__", "?"))
        return super().submit(fn, *args, **kwargs)


async def _cancel_once_queued(task: asyncio.Task[Any], sim: Any, pool: _Queueing, name: str) -> None:
    """Once the request is at the simulator (which answers 0.5 s later), keep the only worker
    busy; cancel ``task`` when its step ``name`` waits in the queue behind it."""
    while not sim.requests:
        await asyncio.sleep(0.001)
    gate = threading.Event()
    blocker = asyncio.get_running_loop().run_in_executor(None, gate.wait)
    for _ in range(5000):
        if name in pool.names:
            break
        await asyncio.sleep(0.001)
    assert pool.names[-2:] == ["wait", name]  # queued behind the blocker: it has not started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    await blocker
    pool.shutdown(wait=True)


def test_a_shared_budget_is_charged_when_the_call_is_cancelled_before_its_settlement_starts(tmp_path, fresh):
    fresh.faults = Faults(["hang@0"], stall_seconds=0.5)
    budget = convo.Budget(1.0, store=convo.SQLiteStore(tmp_path / "budget.db"))
    client = quick_aclient(fresh, budget=budget)

    async def run() -> None:
        pool = _Queueing()
        asyncio.get_running_loop().set_default_executor(pool)
        task = asyncio.create_task(client.create(messages=[{"role": "user", "content": "hello"}], max_tokens=64))
        await _cancel_once_queued(task, fresh, pool, "charge")

    asyncio.run(run())
    assert len(fresh.requests) == 1
    cost = client.stats.cost_usd
    assert cost > 0
    assert budget.spent == pytest.approx(cost)  # charged once: not lost, not twice
    assert budget.left == pytest.approx(1.0 - cost)  # and the call's hold given back


def test_a_completed_turn_is_written_when_cancelled_before_its_write_starts(tmp_path, fresh):
    fresh.faults = Faults(["hang@0"], stall_seconds=0.5)
    store = convo.SQLiteConversationStore(tmp_path / "chats.db")
    conv = store.create(model=MODEL, client=quick_aclient(fresh))

    async def run() -> None:
        pool = _Queueing()
        asyncio.get_running_loop().set_default_executor(pool)
        task = asyncio.create_task(conv.asend("hello"))
        await _cancel_once_queued(task, fresh, pool, "_changed")

    asyncio.run(run())
    stored = store.open(conv.id)
    assert [m.role for m in stored.messages] == ["user", "assistant"]
    assert stored.to_dict() == conv.to_dict()
    conv.add_user("and then")  # the handle and the store agree: the next write is no conflict
    assert len(store.open(conv.id).messages) == 3
    store.close()


def test_a_hold_taken_after_its_call_was_cancelled_is_given_back(tmp_path, fresh):
    """Cancelled while its worker thread waits for the budget file (another process's write
    lock), the call leaves at once; the thread takes the hold when the lock goes, and gives it
    back, rather than leaving it held until ``hold_ttl``."""
    path = tmp_path / "budget.db"
    budget = convo.Budget(1.0, store=convo.SQLiteStore(path), hold_ttl=600)
    client = quick_aclient(fresh, budget=budget)
    assert budget.left == pytest.approx(1.0)  # the file and its tables exist
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock

    async def run() -> None:
        task = asyncio.create_task(client.create(messages=[{"role": "user", "content": "hello"}], max_tokens=64))
        await asyncio.sleep(0.3)  # the hold waits for the lock in its thread
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1  # the caller did not wait for the lock
        other.execute("ROLLBACK")  # now the thread gets the file, takes the hold and gives it back

    started = time.monotonic()
    asyncio.run(run())  # returns once the loop's worker threads are done
    assert time.monotonic() - started < 5  # well inside the store's 10 s timeout: the hold was taken
    other.close()
    assert budget.as_dict()["held"] == 0 and budget.left == pytest.approx(1.0)
    assert fresh.requests == [] and budget.spent == 0  # nothing was sent or charged


def test_a_rate_limit_reservation_taken_after_its_call_was_cancelled_is_given_back(tmp_path, fresh):
    """The rate limiter's twin of the hold above: a reservation its thread takes after the
    caller left returns the output tokens it reserved, so the next request does not wait for
    them (here a whole minute: max_tokens is the minute's output limit)."""

    path = tmp_path / "limits.db"
    limits = convo.RateLimits(output_tpm=1000, store=convo.SQLiteStore(path))
    client = quick_aclient(fresh, limits=limits)
    probe = RateLimiter(convo.RateLimits(output_tpm=1000, store=convo.SQLiteStore(path)))
    probe.settle(probe.reserve(0, 0), None, None)  # the file and its tables exist
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")

    async def run() -> None:
        task = asyncio.create_task(client.create(messages=[{"role": "user", "content": "hi"}], max_tokens=1000))
        await asyncio.sleep(0.3)  # the reservation waits for the lock in its thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        other.execute("ROLLBACK")

    asyncio.run(run())  # returns once the worker thread has reserved (and given back)
    other.close()
    assert fresh.requests == []
    assert probe.reserve(0, 1000).wait < 5  # not ~60 s: the cancelled call's 1,000 tokens came back
