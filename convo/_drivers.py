"""The two drivers of effect flows (see ``_flow``): one sync, one async.

:func:`drive_sync` and :func:`drive_async` carry out the effects a flow yields, with the sync or
the async SDK. They also own the concurrency slots: a request holds one slot while it is in
flight (a call until it returns, a stream until it is closed), never while sleeping between
retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._flow import (
    Call,
    Close,
    Do,
    Done,
    Emit,
    Final,
    Flow,
    Gather,
    Next,
    Now,
    Open,
    Outcome,
    Raw,
    Relay,
    Sleep,
)

__all__ = ["AsyncEnv", "SyncEnv", "drive_async", "drive_sync", "run_async", "run_sync", "sdk_call"]

_METHODS = {"create": ("messages", "create"), "count_tokens": ("messages", "count_tokens")}


def _method(sdk: Any, name: str, raw: bool = False) -> Callable[..., Any]:
    obj = sdk
    parts = _METHODS.get(name, tuple(name.split(".")))
    if raw:
        parts = (*parts[:-1], "with_raw_response", parts[-1])
    for part in parts:
        obj = getattr(obj, part)
    method: Callable[..., Any] = obj
    return method


_KNOWN: dict[tuple[Any, Any], frozenset[str]] = {}


def _known(fn: Callable[..., Any]) -> frozenset[str]:
    """The parameters an SDK method declares (cached by name: raw-response wrappers are new
    objects on every access)."""
    key = (getattr(fn, "__module__", None), getattr(fn, "__qualname__", None))
    known = _KNOWN.get(key)
    if known is None:
        known = _KNOWN[key] = frozenset(inspect.signature(fn).parameters)
    return known


def sdk_call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call an SDK method; parameters it does not declare (``temperature`` on SDKs that dropped
    it, newer API fields) travel in ``extra_body``, exactly as the API expects them."""
    known = _known(getattr(fn, "__func__", fn))
    extra = {k: v for k, v in kwargs.items() if k not in known}
    if not extra:
        return fn(**kwargs)
    args = {k: v for k, v in kwargs.items() if k in known}
    args["extra_body"] = {**(args.get("extra_body") or {}), **extra}
    return fn(**args)


@dataclass
class SyncEnv:
    """What the sync driver needs: the SDK client, a slot semaphore, a sleep and a clock."""

    sdk: Any
    slots: threading.BoundedSemaphore
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


@dataclass
class AsyncEnv:
    """The async twin of SyncEnv; one semaphore per event loop, created on first use."""

    sdk: Any
    limit: int
    sleep: Callable[[float], Any] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    _slots: dict[int, tuple[Any, asyncio.Semaphore]] = field(default_factory=dict)

    def share_slots(self, other: AsyncEnv) -> None:
        """Use ``other``'s semaphores (a client's copy shares its concurrency limit)."""
        self._slots = other._slots

    def slots(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        entry = self._slots.get(id(loop))
        if entry is None or entry[0] is not loop:
            entry = (loop, asyncio.Semaphore(self.limit))
            self._slots[id(loop)] = entry
        return entry[1]


def _next_wanted(effect: Next) -> Any:
    wanted = effect.wanted
    for event in effect.handle.iterator:
        if wanted is None or event.type in wanted:
            return event
    return None


async def _anext_wanted(effect: Next) -> Any:
    wanted = effect.wanted
    async for event in effect.handle.iterator:
        if wanted is None or event.type in wanted:
            return event
    return None


class _SyncStream:
    """A stream opened by the sync driver, holding its slot until closed."""

    def __init__(self, manager: Any, slots: threading.BoundedSemaphore) -> None:
        self.manager = manager
        self.slots = slots
        self.stream: Any = None
        self.iterator: Iterator[Any] | None = None

    def close(self) -> None:
        if self.manager is not None:
            manager, self.manager = self.manager, None
            try:
                manager.__exit__(None, None, None)
            finally:
                self.slots.release()


def _perform_sync(effect: Any, env: SyncEnv, handles: set[_SyncStream]) -> Any:
    """Carry out one effect (all but Relay and Emit, which hand values to the consumer)."""
    if type(effect) is Call:
        with env.slots:
            result = sdk_call(_method(env.sdk, effect.method, effect.raw), effect.kwargs)
        return Raw(result.parse(), result.headers) if effect.raw else result
    if type(effect) is Next:
        return _next_wanted(effect)
    if isinstance(effect, Final):
        return effect.handle.stream.get_final_message()
    if isinstance(effect, Do):
        return effect.fn(*effect.args)
    if isinstance(effect, Open):
        env.slots.acquire()
        handle = _SyncStream(sdk_call(env.sdk.messages.stream, effect.kwargs), env.slots)
        try:
            handle.stream = handle.manager.__enter__()
        except BaseException:
            handle.close()
            raise
        handle.iterator = iter(handle.stream)
        handles.add(handle)
        return handle
    if isinstance(effect, Close):
        handles.discard(effect.handle)
        effect.handle.close()
        return None
    if isinstance(effect, Sleep):
        if effect.seconds > 0:
            env.sleep(effect.seconds)
        return None
    if isinstance(effect, Now):
        return env.clock()
    if isinstance(effect, Gather):
        return _gather_sync(effect, env)
    raise TypeError(f"unknown effect {effect!r}")


def drive_sync(flow: Flow, env: SyncEnv) -> Iterator[Any]:
    """Run ``flow`` with the sync SDK; yields emitted values, then ``Done(result)``."""
    handles: set[_SyncStream] = set()
    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(send)
            except StopIteration as stop:
                yield Done(stop.value)
                return
            send, error = None, None
            try:
                if type(effect) is Relay:  # the hot path of a stream: checked first
                    take, stopped = effect.take, False
                    for event in effect.handle.iterator:
                        kind = event.type
                        if kind == "content_block_delta":
                            if event.delta.type == "text_delta":
                                out = take(event.delta.text)
                                if out:
                                    yield out
                        elif kind == "message_stop":
                            stopped = True
                    send = stopped
                elif type(effect) is Emit:
                    yield effect.value
                else:
                    send = _perform_sync(effect, env, handles)
            except Exception as exc:  # noqa: BLE001 -- handed back to the flow, which decides
                error = exc
    finally:
        flow.close()
        for handle in handles:
            handle.close()


class _AsyncStream:
    def __init__(self, manager: Any, slots: asyncio.Semaphore) -> None:
        self.manager = manager
        self.slots = slots
        self.stream: Any = None
        self.iterator: AsyncIterator[Any] | None = None

    async def close(self) -> None:
        if self.manager is not None:
            manager, self.manager = self.manager, None
            try:
                await manager.__aexit__(None, None, None)
            finally:
                self.slots.release()


async def _perform_async(effect: Any, env: AsyncEnv, handles: set[_AsyncStream]) -> Any:
    """The async twin of :func:`_perform_sync`."""
    if type(effect) is Call:
        async with env.slots():
            result = await sdk_call(_method(env.sdk, effect.method, effect.raw), effect.kwargs)
        return Raw(await result.parse(), result.headers) if effect.raw else result
    if type(effect) is Next:
        return await _anext_wanted(effect)
    if isinstance(effect, Final):
        return await effect.handle.stream.get_final_message()
    if isinstance(effect, Do):
        return await asyncio.to_thread(effect.fn, *effect.args) if effect.io else effect.fn(*effect.args)
    if isinstance(effect, Open):
        slots = env.slots()
        await slots.acquire()
        handle = _AsyncStream(sdk_call(env.sdk.messages.stream, effect.kwargs), slots)
        try:
            handle.stream = await handle.manager.__aenter__()
        except BaseException:
            await handle.close()
            raise
        handle.iterator = aiter(handle.stream)
        handles.add(handle)
        return handle
    if isinstance(effect, Close):
        handles.discard(effect.handle)
        await effect.handle.close()
        return None
    if isinstance(effect, Sleep):
        if effect.seconds > 0:
            await env.sleep(effect.seconds)
        return None
    if isinstance(effect, Now):
        return env.clock()
    if isinstance(effect, Gather):
        return await _gather_async(effect, env)
    raise TypeError(f"unknown effect {effect!r}")


async def drive_async(flow: Flow, env: AsyncEnv) -> AsyncIterator[Any]:
    """The async twin of :func:`drive_sync`."""
    handles: set[_AsyncStream] = set()
    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(send)
            except StopIteration as stop:
                yield Done(stop.value)
                return
            send, error = None, None
            try:
                if type(effect) is Relay:  # the hot path of a stream: checked first
                    take, stopped = effect.take, False
                    async for event in effect.handle.iterator:
                        kind = event.type
                        if kind == "content_block_delta":
                            if event.delta.type == "text_delta":
                                out = take(event.delta.text)
                                if out:
                                    yield out
                        elif kind == "message_stop":
                            stopped = True
                    send = stopped
                elif type(effect) is Emit:
                    yield effect.value
                else:
                    send = await _perform_async(effect, env, handles)
            except Exception as exc:  # noqa: BLE001 -- handed back to the flow, which decides
                error = exc
    finally:
        flow.close()
        for handle in handles:
            await handle.close()


def _gather_sync(effect: Gather, env: SyncEnv) -> list[Outcome]:
    results: dict[int, Outcome] = {}
    lock = threading.Lock()

    def one(index: int, flow: Flow) -> None:
        try:
            outcome = Outcome(value=run_sync(flow, env))
        except Exception as exc:  # noqa: BLE001 -- each flow's failure is its outcome
            outcome = Outcome(error=exc)
        with lock:
            results[index] = outcome
            if effect.on_done is not None:
                effect.on_done(index, outcome)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, effect.concurrency)) as pool:
        pending: set[concurrent.futures.Future[None]] = set()
        for index, flow in enumerate(effect.flows):
            if len(pending) >= effect.concurrency:
                _, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            pending.add(pool.submit(one, index, flow))
        concurrent.futures.wait(pending)
    return [results[i] for i in range(len(results))]


async def _gather_async(effect: Gather, env: AsyncEnv) -> list[Outcome]:
    results: dict[int, Outcome] = {}

    async def one(index: int, flow: Flow) -> None:
        try:
            outcome = Outcome(value=await run_async(flow, env))
        except Exception as exc:  # noqa: BLE001 -- each flow's failure is its outcome
            outcome = Outcome(error=exc)
        results[index] = outcome
        if effect.on_done is not None:
            effect.on_done(index, outcome)

    pending: set[asyncio.Task[None]] = set()
    for index, flow in enumerate(effect.flows):
        if len(pending) >= effect.concurrency:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(one(index, flow)))
    if pending:
        await asyncio.wait(pending)
    return [results[i] for i in range(len(results))]


def run_sync(flow: Flow, env: SyncEnv) -> Any:
    """Run a flow that emits nothing to completion and return its result (the driver loop
    without a generator in between: most calls are this)."""
    handles: set[_SyncStream] = set()
    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(send)
            except StopIteration as stop:
                return stop.value
            send, error = None, None
            try:
                if type(effect) is Emit:  # nobody consumes what it emits: only its result counts
                    continue
                send = _perform_sync(effect, env, handles)
            except Exception as exc:  # noqa: BLE001 -- handed back to the flow, which decides
                error = exc
    finally:
        flow.close()
        for handle in handles:
            handle.close()


async def run_async(flow: Flow, env: AsyncEnv) -> Any:
    """The async twin of :func:`run_sync`."""
    handles: set[_AsyncStream] = set()
    send: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(send)
            except StopIteration as stop:
                return stop.value
            send, error = None, None
            try:
                if type(effect) is Emit:  # nobody consumes what it emits: only its result counts
                    continue
                send = await _perform_async(effect, env, handles)
            except Exception as exc:  # noqa: BLE001 -- handed back to the flow, which decides
                error = exc
    finally:
        flow.close()
        for handle in handles:
            await handle.close()
