"""Cancelled while a step that must happen waits for a worker thread: the budget's settlement
and the store's write of a completed turn still happen, exactly once. A one-worker executor,
kept busy, holds the step in its queue, so the cancellation is sure to come before it starts;
the requests go to the simulator over HTTP."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import convo
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
