"""Effects: each multi-step operation is written once, as a generator that yields them.

An operation (a retried call, a resumable stream, a batch, a map-reduce) is a generator that
*yields effects* — "call the API", "open a stream", "sleep" — and receives their results. The
two drivers in ``_drivers`` carry them out with the sync or the async SDK, so the sync and async
clients share every decision and differ only in how they wait.

Two small flows wrap a step for the moment a caller leaves (a cancelled task, a timeout), when a
driver's thread may still be running it: :func:`finishing` (a step that must happen, once) and
:func:`taking` (a step whose take the rest of the flow would have given back).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Call",
    "Close",
    "Do",
    "Done",
    "Emit",
    "Final",
    "Flow",
    "Gather",
    "Next",
    "Now",
    "Open",
    "Outcome",
    "Raw",
    "Relay",
    "Sleep",
    "finishing",
    "taking",
]


@dataclass(frozen=True, slots=True)
class Call:
    """Call an SDK method (``"create"``, ``"count_tokens"``) with ``kwargs``; returns its result.

    With ``raw=True`` it returns ``Raw(value, headers)``, so the response headers can be read.
    """

    method: str
    kwargs: dict[str, Any]
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Raw:
    value: Any
    headers: Any


@dataclass(frozen=True, slots=True)
class Do:
    """Run ``fn(*args)``; ``io=True`` means it may block (the async driver uses a thread)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    io: bool = False


@dataclass(frozen=True, slots=True)
class Open:
    """Open a stream (``messages.stream(**kwargs)``); returns a handle for Next and Close."""

    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Next:
    """The next event of an open stream, or None when it has ended.

    With ``wanted``, only events whose ``type`` is in it come back (the others are skipped by
    the driver, which saves a round trip through the flow for each of them).
    """

    handle: Any
    wanted: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Relay:
    """Read an open stream to its end, passing each text delta through ``take`` and handing
    what it returns (if anything) to the consumer; returns True if ``message_stop`` arrived.

    The hot loop of a stream runs here, in the driver, without a round trip through the flow
    per event; errors are thrown into the flow as usual. ``other``, if given, sees the other
    block events (a block's start and stop, thinking and tool-input deltas) and what it returns
    (if anything) goes to the consumer too.
    """

    handle: Any
    take: Callable[[str], str]
    other: Callable[[Any], Any] | None = None


@dataclass(frozen=True, slots=True)
class Final:
    """The accumulated final message of a stream that has been read to its end."""

    handle: Any


@dataclass(frozen=True, slots=True)
class Close:
    handle: Any


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Now:
    """The driver's clock (monotonic seconds)."""


@dataclass(frozen=True, slots=True)
class Gather:
    """Run sub-flows concurrently, at most ``concurrency`` at a time, pulling ``flows`` lazily
    (a generator of a million flows is fine). Returns an :class:`Outcome` per flow, in order.
    ``on_done(index, outcome)``, if given, is called as each finishes (serialized)."""

    flows: Iterable[Flow]
    concurrency: int
    on_done: Callable[[int, Outcome], Any] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one gathered flow: ``value``, or ``error`` if it raised."""

    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand ``value`` to whoever iterates the operation (stream text, events)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Done:
    """Yielded by a driver last, holding the operation's return value."""

    value: Any


Flow = Generator[Any, Any, Any]


log = logging.getLogger("convo")


def finishing(fn: Callable[..., Any], args: tuple[Any, ...] = (), *, io: bool = True, what: str) -> Flow:
    """``yield Do(fn, args, io=io)`` for a step that must happen even when the caller leaves
    there (a cancelled task, a timeout): closed at that step, the flow runs ``fn`` itself, unless
    a driver's thread has started it already; then it finishes in that thread, and the caller is
    not kept waiting for it. What fails after the caller left is logged (``what`` failed ...),
    since nobody else would see it."""
    started = left = False

    @functools.wraps(fn)  # drivers and logs show fn's name
    def run(*a: Any) -> Any:
        nonlocal started
        started = True
        try:
            return fn(*a)
        except Exception as exc:
            if left:
                _left_failed(what, exc)
            raise

    try:
        return (yield Do(run, args, io=io))
    except GeneratorExit:
        left = True
        if not started:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 -- being closed: say so, and go on closing
                _left_failed(what, exc)
        raise


def taking(fn: Callable[..., Any], args: tuple[Any, ...], give_back: Callable[[Any], Any], *, io: bool = True) -> Flow:
    """``yield Do(fn, args, io=io)`` for a step that takes what only the rest of the flow gives
    back (a budget hold, a rate-limit reservation): if the caller leaves while a driver's thread
    is taking it, the flow will not run again, so the thread gives it back (``give_back(what
    fn returned)``) as soon as it has it."""
    left = False

    @functools.wraps(fn)
    def run(*a: Any) -> Any:
        taken = fn(*a)
        if left:
            give_back(taken)
        return taken

    try:
        return (yield Do(run, args, io=io))
    except GeneratorExit:
        left = True
        raise


def _left_failed(what: str, exc: Exception) -> None:
    log.warning("convo: %s failed after its caller left (%s: %s)", what, type(exc).__name__, exc)
