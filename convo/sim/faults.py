"""Fault injection: which failure, if any, the next ``POST /v1/messages`` meets.

A fault is written as a short spec, ``kind`` or ``kind@n``:

=================  ==========================================================================
``ok``             no fault
``429``            429 rate_limit_error with ``retry-after: n`` (default 1 s)
``500``, ``529``   500 api_error, 529 overloaded_error; any status code works (``503``, ``400``);
                   ``@n`` adds ``retry-after: n``
``spend_limit``    429 without ``retry-after``, ``details.error_code: enforced_spend_limit_reached``
``sse_error@n``    a stream sends ``n`` text deltas, then ``event: error`` (overloaded), then closes
``drop@n``         the connection is reset after ``n`` deltas (before the headers when not streaming)
``truncate@n``     a stream ends cleanly after ``n`` deltas, without ``message_stop``
``malformed@n``    a stream sends a broken ``data:`` line after ``n`` deltas, then closes
``stall@n``        after ``n`` deltas only ``ping`` events for ``stall_seconds``, then the rest
``hang@n``         after ``n`` deltas nothing at all for ``stall_seconds`` (a client read timeout)
``unknown@n``      an unknown event type after ``n`` deltas; clients must ignore it (not a failure)
``pause_turn``     a server-tool step (``server_tool_use`` + ``web_search_tool_result``), then
                   ``stop_reason: "pause_turn"``; send the content back and the model goes on
``refusal``        part of the answer, then ``stop_reason: "refusal"`` with ``stop_details``
                   (``type: "refusal"``, ``category``, ``explanation``)
``model_context_window_exceeded``  part of the answer, then that stop reason
=================  ==========================================================================

Stream faults on a non-streaming request: ``drop`` resets the connection before the response,
``stall`` and ``hang`` delay it, the others do not apply (the request succeeds).

>>> Faults(["ok", "500", "sse_error@3"])          # an explicit schedule, then no faults
>>> Faults({"429": 0.1, "529": 0.05}, seed=1)     # probabilities, drawn deterministically
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SimConfigError

__all__ = ["STOP_KINDS", "STREAM_KINDS", "Fault", "Faults"]

STREAM_KINDS = frozenset({"sse_error", "drop", "truncate", "malformed", "stall", "hang", "unknown"})
#: Faults that change how the reply ends (streaming or not), not whether it arrives.
STOP_KINDS = frozenset({"pause_turn", "refusal", "model_context_window_exceeded"})
_NAMED = STREAM_KINDS | STOP_KINDS | {"ok", "spend_limit"}


@dataclass(frozen=True)
class Fault:
    """One parsed fault: ``kind`` (``"ok"``, ``"status"`` or a name above) and its parameters."""

    kind: str
    status: int | None = None
    after: int = 0
    retry_after: float | None = None

    @classmethod
    def parse(cls, spec: str | Fault) -> Fault:
        if isinstance(spec, Fault):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise SimConfigError(f"a fault spec is a string like '500' or 'sse_error@3', got {spec!r}")
        name, _, arg = spec.strip().partition("@")
        number: float | None = None
        if arg:
            try:
                number = float(arg)
            except ValueError:
                raise SimConfigError(f"fault {spec!r}: the part after '@' must be a number") from None
            if number < 0:
                raise SimConfigError(f"fault {spec!r}: the part after '@' must not be negative")
        if name.isdigit() and len(name) == 3:
            status = int(name)
            if not 400 <= status <= 599:
                raise SimConfigError(f"fault {spec!r}: a status fault needs a 4xx or 5xx code")
            retry_after = number if number is not None else (1.0 if status == 429 else None)
            return cls("status", status=status, retry_after=retry_after)
        if name not in _NAMED:
            known = ", ".join(sorted(_NAMED | {"429", "500", "529"}))
            raise SimConfigError(f"unknown fault {name!r}; use a status code or one of: {known}")
        if name == "spend_limit":
            return cls("spend_limit", status=429)
        return cls(name, after=int(number or 0))

    def __str__(self) -> str:
        if self.kind == "status":
            base = str(self.status)
            default = 1.0 if self.status == 429 else None
            return base if self.retry_after == default else f"{base}@{self.retry_after:g}"
        if self.kind in STREAM_KINDS and self.after:
            return f"{self.kind}@{self.after}"
        return self.kind


OK = Fault("ok")


class Faults:
    """Decides the fault for each request: first from ``schedule``, then at random by ``rates``.

    ``schedule`` is consumed one entry per request; when it runs out, each request draws from
    ``rates`` (a mapping of spec to probability, summing to at most 1) with a generator seeded
    by ``seed``, so a run is reproducible. ``push`` appends to the schedule at any time, e.g.
    from a test while the simulator runs. ``stall_seconds`` is how long ``stall``/``hang`` last;
    ``ping_interval`` is the gap between pings during a ``stall``.
    """

    def __init__(
        self,
        schedule: Iterable[str | Fault] | Mapping[str, float] | None = None,
        rates: Mapping[str, float] | None = None,
        *,
        seed: int = 0,
        stall_seconds: float = 30.0,
        ping_interval: float = 0.5,
    ) -> None:
        if isinstance(schedule, Mapping):  # Faults({"429": 0.1}) reads naturally; accept it
            if rates is not None:
                raise SimConfigError("give the rates once: Faults(rates={...}) or Faults({...})")
            schedule, rates = None, schedule
        if isinstance(schedule, (str, Fault)):
            schedule = [schedule]
        self._schedule: deque[Fault] = deque(Fault.parse(s) for s in (schedule or ()))
        self._rates: list[tuple[float, Fault]] = []
        total = 0.0
        for spec, p in (rates or {}).items():
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise SimConfigError(f"fault rate for {spec!r} must be a probability in [0, 1], got {p!r}")
            total += p
            self._rates.append((total, Fault.parse(spec)))
        if total > 1 + 1e-9:
            raise SimConfigError(f"fault rates add up to {total:g}; they must sum to at most 1")
        if stall_seconds < 0 or ping_interval <= 0:
            raise SimConfigError("stall_seconds must be >= 0 and ping_interval > 0")
        self.seed = seed
        self.stall_seconds = stall_seconds
        self.ping_interval = ping_interval
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.seen: list[Fault] = []  # what was applied, in order (faults only, not "ok")

    @classmethod
    def coerce(cls, value: Any, *, seed: int = 0) -> Faults:
        """A Faults from None, a Faults, a schedule (list/str) or a rates mapping."""
        if isinstance(value, Faults):
            return value
        return cls(value, seed=seed)

    def __repr__(self) -> str:
        sched = [str(f) for f in self._schedule]
        rates = {str(f): round(p, 6) for f, p in self._probabilities()}
        return f"Faults(schedule={sched}, rates={rates}, seed={self.seed})"

    def _probabilities(self) -> list[tuple[Fault, float]]:
        out, prev = [], 0.0
        for cum, fault in self._rates:
            out.append((fault, cum - prev))
            prev = cum
        return out

    def push(self, *specs: str | Fault) -> None:
        """Append faults to the schedule; the next requests meet them in order."""
        parsed = [Fault.parse(s) for s in specs]
        with self._lock:
            self._schedule.extend(parsed)

    def clear(self) -> None:
        """Drop what is left of the schedule (the rates stay)."""
        with self._lock:
            self._schedule.clear()

    @property
    def pending(self) -> list[str]:
        return [str(f) for f in self._schedule]

    def next(self) -> Fault:
        """The fault for the next request."""
        with self._lock:
            if self._schedule:
                fault = self._schedule.popleft()
            elif self._rates:
                x = self._rng.random()
                fault = next((f for cum, f in self._rates if x < cum), OK)
            else:
                return OK
            if fault.kind != "ok":
                self.seen.append(fault)
            return fault
