"""What a client has done: request counts, errors, latency and tokens (``client.stats``).

>>> from convo.usage import Stats
>>> stats = Stats()
>>> stats.as_dict()["requests"]
0
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

__all__ = ["Stats"]

#: Latency samples kept for the percentiles (the most recent ones).
SAMPLES = 10_000


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


class Stats:
    """Thread-safe counters for one client. ``as_dict()`` for code, ``str()`` for people."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self.requests = 0
        self.successes = 0
        self.failures: Counter[str] = Counter()
        self.retries = 0
        self.rate_limited = 0
        self.stream_resumes = 0
        self.fallbacks = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.cost_usd = 0.0
        self.users: dict[str | None, dict[str, float]] = {}
        self._latency: deque[float] = deque(maxlen=SAMPLES)
        self._ttft: deque[float] = deque(maxlen=SAMPLES)

    @property
    def clock(self) -> Callable[[], float]:
        """The clock these stats time calls with (the client's)."""
        return self._clock

    # -- recording (called by the client) --------------------------------------------------

    def attempt_failed(self, exc: BaseException) -> None:
        """Record one failed attempt (a 429 counts as rate limited); the call itself may
        still succeed on a retry.
        """
        with self._lock:
            if getattr(exc, "status_code", None) == 429:
                self.rate_limited += 1

    def retried(self) -> None:
        """Record that a failed attempt is being tried again."""
        with self._lock:
            self.retries += 1

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter named ``name`` (e.g. ``"fallbacks"``,
        ``"stream_resumes"``, ``"cache_hits"``).
        """
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def charge(self, usd: float, user: str | None = None) -> None:
        """Add the cost of one attempt, to the total and to the user's ledger."""
        with self._lock:
            self.cost_usd += usd
            self._ledger(user)["usd"] += usd

    def _ledger(self, user: str | None) -> dict[str, float]:
        entry = self.users.get(user)
        if entry is None:
            entry = self.users[user] = {"requests": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0}
        return entry

    def finished(
        self,
        *,
        latency: float,
        usage: Any = None,
        ttft: float | None = None,
        error: str | None = None,
        user: str | None = None,
    ) -> None:
        """One call is over: it succeeded (``error`` None) or failed with ``error``'s type."""
        with self._lock:
            if user is not None or usage is not None:
                ledger = self._ledger(user)
                ledger["requests"] += 1
                if usage is not None:
                    ledger["input_tokens"] += getattr(usage, "input_tokens", 0) or 0
                    ledger["output_tokens"] += getattr(usage, "output_tokens", 0) or 0
            self.requests += 1
            if error is None:
                self.successes += 1
                self._latency.append(latency)
                if ttft is not None:
                    self._ttft.append(ttft)
            else:
                self.failures[error] += 1
            if usage is not None:
                self.input_tokens += getattr(usage, "input_tokens", 0) or 0
                self.output_tokens += getattr(usage, "output_tokens", 0) or 0
                self.cache_read_tokens += getattr(usage, "cache_read_input_tokens", 0) or 0
                self.cache_write_tokens += getattr(usage, "cache_creation_input_tokens", 0) or 0

    # -- reading ----------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """A snapshot of every counter, for code and dashboards.

        ``requests`` counts calls, however many attempts each took. Derived figures: ``success_rate``,
        ``requests_per_minute`` since the stats began, and p50/p99 of latency and time to first token
        (streams) over recent successful calls (None before any). ``users`` is the per-user ledger
        (``"-"`` for calls without a user). ``pid`` is this process, to tell the dicts of several
        workers apart. Every value is plain JSON (``json.dumps`` takes the dict as it is).
        """
        with self._lock:
            elapsed = max(self._clock() - self._started, 1e-9)
            latency, ttft = list(self._latency), list(self._ttft)
            return {
                "requests": self.requests,
                "successes": self.successes,
                "failures": dict(self.failures),
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "stream_resumes": self.stream_resumes,
                "fallbacks": self.fallbacks,
                "cache_hits": self.cache_hits,
                "cache_misses": self.cache_misses,
                "success_rate": self.successes / self.requests if self.requests else None,
                "requests_per_minute": self.requests * 60 / elapsed,
                "latency_p50": _percentile(latency, 0.5),
                "latency_p99": _percentile(latency, 0.99),
                "ttft_p50": _percentile(ttft, 0.5),
                "ttft_p99": _percentile(ttft, 0.99),
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cache_read_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_write_tokens,
                "cost_usd": self.cost_usd,
                "users": {("-" if u is None else u): dict(v) for u, v in self.users.items()},
                "pid": os.getpid(),
            }

    def __str__(self) -> str:
        rows = []
        for key, value in self.as_dict().items():
            if isinstance(value, float):
                value = f"{value:.1%}" if key == "success_rate" else f"{value:.6f}" if key == "cost_usd" else f"{value:.3f}"
            elif key == "users":
                value = "; ".join(
                    f"{u}: {int(v['requests'])} req, {int(v['input_tokens'])} in, {int(v['output_tokens'])} out, "
                    f"${v['usd']:.6f}"
                    for u, v in value.items()
                ) or "-"
            elif isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
            elif value is None:
                value = "-"
            rows.append((key, str(value)))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def __repr__(self) -> str:
        return f"Stats(requests={self.requests}, successes={self.successes}, retries={self.retries})"
