"""Rate limits as the API enforces them: token buckets per model class, and their headers.

Each configured limit (requests, input tokens, output tokens per minute) is a bucket of
capacity L, refilled continuously at L/60 per second (the API's "continuously replenished"
token bucket, not a fixed window). A request is admitted when one request and its input
tokens are available and the output bucket is not empty; ``max_tokens`` is not reserved —
output tokens are charged as produced, so a long reply can drive the output bucket into debt
that later requests wait out. Limits are kept per model class (opus, sonnet, haiku) like the
API's. Time comes from an injected ``clock`` so tests never wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .catalogue import catalogue
from .errors import SimConfigError

__all__ = ["Bucket", "Exceeded", "ManualClock", "RateLimits", "model_class", "rfc3339"]

Clock = Callable[[], float]


class ManualClock:
    """A clock for tests: starts at ``start`` (epoch seconds) and moves only by ``advance``."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rfc3339(t: float, *, micro: bool = False) -> str:
    """Epoch seconds as ``2025-02-24T22:25:30Z`` (with microseconds when ``micro``)."""
    dt = datetime.fromtimestamp(t, tz=UTC)
    if micro:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def model_class(model: str) -> str:
    """The rate-limit pool a model belongs to: its catalogue family, else a family named in the id,
    else the model itself."""
    found = catalogue().find(model)
    if found is not None:
        return found.family
    lowered = model.lower()
    for family in ("opus", "sonnet", "haiku"):
        if family in lowered:
            return family
    return lowered


def _thousands(n: int, cap: int) -> int:
    """``n`` rounded half-up to the nearest thousand, never above ``cap``."""
    return min(cap, (n + 500) // 1000 * 1000)


class Bucket:
    """A continuously refilled bucket: ``capacity`` per minute, level may go below zero (debt)."""

    __slots__ = ("_level", "_stamp", "capacity", "rate")

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / 60.0
        self._level = float(capacity)
        self._stamp = now

    def level(self, now: float) -> float:
        return min(self.capacity, self._level + max(0.0, now - self._stamp) * self.rate)

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` is available (amounts above capacity wait for a full bucket)."""
        short = min(amount, self.capacity) - self.level(now)
        return max(0.0, short / self.rate)

    def take(self, amount: float, now: float) -> None:
        self._level = self.level(now) - amount
        self._stamp = now

    def full_at(self, now: float) -> float:
        return now + (self.capacity - self.level(now)) / self.rate


@dataclass(frozen=True)
class Exceeded:
    """Why a request was refused: which limit, and how long until it would be admitted."""

    limit: str  # "requests", "input_tokens" or "output_tokens"
    retry_after: int
    message: str


#: What the headers report for a limit that is not configured: generous, never reached.
UNLIMITED = {"requests": 1_000_000, "input_tokens": 1_000_000_000, "output_tokens": 200_000_000}
_LABELS = {
    "requests": "requests per minute",
    "input_tokens": "input tokens per minute",
    "output_tokens": "output tokens per minute",
}


class RateLimits:
    """The buckets of every model class, created on first use.

    ``rpm``, ``input_tpm``, ``output_tpm``: the limits, ``None`` for unlimited.
    ``round_remaining``: report token ``remaining`` rounded to the nearest thousand, as the API
    does; turn it off for exact numbers in tests.
    """

    def __init__(
        self,
        rpm: int | None = None,
        input_tpm: int | None = None,
        output_tpm: int | None = None,
        *,
        clock: Clock = time.time,
        round_remaining: bool = True,
    ) -> None:
        self.limits: dict[str, int] = {}
        for name, value in (("requests", rpm), ("input_tokens", input_tpm), ("output_tokens", output_tpm)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SimConfigError(f"{name} limit must be a positive int per minute or None, got {value!r}")
            self.limits[name] = value
        self.clock = clock
        self.round_remaining = round_remaining
        self._pools: dict[str, dict[str, Bucket]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.limits)

    def _pool(self, model: str) -> dict[str, Bucket]:
        key = model_class(model)
        pool = self._pools.get(key)
        if pool is None:
            now = self.clock()
            pool = self._pools[key] = {name: Bucket(cap, now) for name, cap in self.limits.items()}
        return pool

    def admit(self, model: str, input_tokens: int) -> Exceeded | None:
        """Take one request and its input tokens, or say which limit refuses it (taking nothing)."""
        if not self.limits:
            return None
        pool, now = self._pool(model), self.clock()
        needs = {"requests": 1, "input_tokens": input_tokens, "output_tokens": 1}
        worst: tuple[float, str] | None = None
        for name, bucket in pool.items():
            wait = bucket.wait(needs[name], now)
            if wait > 0 and (worst is None or wait > worst[0]):
                worst = (wait, name)
        if worst is not None:
            wait, name = worst
            cap = self.limits[name]
            detail = ""
            if name == "input_tokens" and input_tokens > cap:
                detail = f" This request alone has {input_tokens} input tokens, more than the limit allows."
            message = (
                f"This request would exceed the rate limit for your organization of {cap:,} {_LABELS[name]} "
                f"for model class {model_class(model)!r}.{detail} Retry after {math.ceil(wait)} s, or reduce "
                "the prompt length or the rate of requests."
            )
            return Exceeded(name, max(1, math.ceil(wait)), message)
        for name, bucket in pool.items():
            if name != "output_tokens":
                bucket.take(needs[name], now)
        return None

    def charge_output(self, model: str, output_tokens: int) -> None:
        """Charge tokens produced; the bucket may go into debt."""
        bucket = self._pool(model).get("output_tokens") if self.limits else None
        if bucket is not None:
            bucket.take(output_tokens, self.clock())

    def headers(self, model: str) -> dict[str, str]:
        """The ``anthropic-ratelimit-*`` headers for a response to a request for ``model``: every
        family, as the API sends them; limits not configured report :data:`UNLIMITED`, full."""
        pool, now = (self._pool(model) if self.limits else {}), self.clock()
        out: dict[str, str] = {}
        token_parts: list[tuple[int, int, float]] = []
        default_parts: list[tuple[int, int, float]] = []
        for name in ("requests", "input_tokens", "output_tokens"):
            bucket = pool.get(name)
            if bucket is None:
                capacity, remaining, reset = UNLIMITED[name], UNLIMITED[name], now
            else:
                capacity, remaining, reset = bucket.capacity, max(0, math.floor(bucket.level(now))), bucket.full_at(now)
            if name != "requests":
                (token_parts if bucket is not None else default_parts).append((capacity, remaining, reset))
                if self.round_remaining:
                    remaining = _thousands(remaining, capacity)
            prefix = f"anthropic-ratelimit-{name.replace('_', '-')}"
            out[f"{prefix}-limit"] = str(capacity)
            out[f"{prefix}-remaining"] = str(remaining)
            out[f"{prefix}-reset"] = rfc3339(math.ceil(reset))
        token_parts = token_parts or default_parts
        if token_parts:
            # No narrower (workspace) limit exists here, so "tokens" is the configured token limits' sum.
            limit = sum(p[0] for p in token_parts)
            remaining = sum(p[1] for p in token_parts)
            if self.round_remaining:
                remaining = _thousands(remaining, limit)
            out["anthropic-ratelimit-tokens-limit"] = str(limit)
            out["anthropic-ratelimit-tokens-remaining"] = str(remaining)
            out["anthropic-ratelimit-tokens-reset"] = rfc3339(math.ceil(max(p[2] for p in token_parts)))
        return out
