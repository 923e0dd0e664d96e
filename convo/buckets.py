"""Token buckets and where their levels live: in this process (:class:`MemoryStore`) or in Redis
(:class:`RedisStore`, shared between processes and machines).

A bucket holds ``capacity`` units and refills continuously at ``rate`` units per second, as the
API's own limits do. A store reserves units from several buckets at once, atomically, and may
drive a level below zero; the caller waits until it is back at zero. The limiter that decides
what to reserve is :class:`convo.ratelimit.RateLimiter`.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ._exceptions import ConvoError, InvalidConfigError, RateLimitStoreError
from ._numbers import number
from ._sockets import redis_options

__all__ = ["Bucket", "BucketStore", "MemoryStore", "RedisStore"]


@dataclass(frozen=True)
class Bucket:
    """One limit: ``capacity`` units, refilled at ``rate`` units per second."""

    name: str
    capacity: float
    rate: float


class BucketStore(Protocol):
    """Where bucket levels live. ``reserve`` is atomic over all the buckets it is given."""

    def reserve(self, scope: str, demands: list[tuple[Bucket, float]]) -> tuple[float, tuple[float, ...]]:
        """Take each amount (levels may go negative); return the seconds until all are back at
        zero, and a mark per bucket (its running total of reservations, this one included)."""
        ...

    def recheck(self, scope: str, demands: list[tuple[Bucket, float]], marks: tuple[float, ...]) -> float:
        """Seconds still to wait for a reservation, counting refunds made since (a refund to a
        request ahead in line lets the ones behind it go sooner)."""
        ...

    def adjust(self, scope: str, bucket: Bucket, delta: float, cap_at: float | None = None) -> None:
        """Give back ``delta`` units (negative takes more); ``cap_at`` lowers the level to at most that."""
        ...


class MemoryStore:
    """Buckets in this process (thread-safe), on an injectable clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._levels: dict[tuple[str, str], tuple[float, float]] = {}
        self._taken: dict[tuple[str, str], float] = {}

    def _level(self, key: tuple[str, str], bucket: Bucket, now: float) -> float:
        level, at = self._levels.get(key, (bucket.capacity, now))
        return min(bucket.capacity, level + (now - at) * bucket.rate)

    def reserve(self, scope: str, demands: list[tuple[Bucket, float]]) -> tuple[float, tuple[float, ...]]:
        """Take each amount from its bucket in ``scope``, all at once (levels may go below zero).

        Returns the seconds until every bucket is back at zero, and a mark per bucket (its running total
        of reservations, this one included) for :meth:`recheck`.
        """
        with self._lock:
            now = self.clock()
            wait = 0.0
            marks = []
            for bucket, amount in demands:
                key = (scope, bucket.name)
                level = self._level(key, bucket, now) - amount
                self._levels[key] = (level, now)
                taken = self._taken[key] = self._taken.get(key, 0.0) + amount
                marks.append(taken)
                if level < 0:
                    wait = max(wait, -level / bucket.rate)
            return wait, tuple(marks)

    def recheck(self, scope: str, demands: list[tuple[Bucket, float]], marks: tuple[float, ...]) -> float:
        """Seconds the reservation that got ``marks`` must still wait, counting refunds made since (a
        refund to a request ahead in line lets the ones behind it go sooner).
        """
        with self._lock:
            now = self.clock()
            wait = 0.0
            for (bucket, _), mark in zip(demands, marks):
                key = (scope, bucket.name)
                behind = self._taken.get(key, 0.0) - mark  # reserved after this one
                ahead = self._level(key, bucket, now) + behind
                if ahead < 0:
                    wait = max(wait, -ahead / bucket.rate)
            return wait

    def adjust(self, scope: str, bucket: Bucket, delta: float, cap_at: float | None = None) -> None:
        """Give ``delta`` units back to ``bucket`` in ``scope`` (a negative ``delta`` takes more);
        ``cap_at`` then lowers the level to at most that, to match what the server reports.
        """
        with self._lock:
            now = self.clock()
            key = (scope, bucket.name)
            level = min(bucket.capacity, self._level(key, bucket, now) + delta)
            if cap_at is not None:
                level = min(level, cap_at)
            self._levels[key] = (level, now)

    def level(self, scope: str, bucket: Bucket) -> float:
        """The current level of ``bucket`` in ``scope``, refill included (full if it was never used)."""
        with self._lock:
            return self._level((scope, bucket.name), bucket, self.clock())


# ARGV per key: amount, capacity, rate, floor (cap the level, -1 for none), mark (-1: a
# reservation; -2: an adjustment; >= 0: only recheck against that mark). Returns the wait, then the
# marks (running totals of reservations) of the keys.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local wait = 0
local marks = {}
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[5 * i - 4])
  local cap = tonumber(ARGV[5 * i - 3])
  local rate = tonumber(ARGV[5 * i - 2])
  local floor = tonumber(ARGV[5 * i - 1])
  local mark = tonumber(ARGV[5 * i])
  local s = redis.call('HMGET', key, 'level', 'ts', 'taken')
  local level = tonumber(s[1]) or cap
  local ts = tonumber(s[2]) or now
  local taken = tonumber(s[3]) or 0
  level = math.min(cap, level + math.max(0, now - ts) * rate)
  if mark >= 0 then
    local ahead = level + (taken - mark)
    if ahead < 0 then wait = math.max(wait, -ahead / rate) end
  else
    level = level - amount
    if floor >= 0 then level = math.min(level, floor) end
    if amount > 0 and mark == -1 then
      taken = taken + amount
      if level < 0 then wait = math.max(wait, -level / rate) end
    end
    redis.call('HSET', key, 'level', tostring(level), 'ts', tostring(now), 'taken', tostring(taken))
    redis.call('PEXPIRE', key, math.ceil(cap / rate * 1000) + 60000)
  end
  marks[i] = tostring(taken)
end
return {tostring(wait), unpack(marks)}
"""


def _where(url: str) -> str:
    """``host:port/db`` of a Redis URL, for messages: never its user or password."""
    try:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
    except ValueError:
        return "<unparsable URL>"


class RedisStore:
    """Buckets in Redis, shared by every process that uses the same ``url`` and ``prefix``; the same
    store keeps shared budgets (``Budget(..., store=RedisStore(url))``).

    One Lua script updates all buckets of a request atomically, on the Redis server's clock,
    so machines with skewed clocks still agree. ``timeout`` (seconds) bounds every wait on the
    server (connecting, and each reply); the client does not retry on its own, so a call fails
    within it when Redis is down or hangs. Keys are ``prefix + "ratelimit:"...`` and
    ``prefix + "budget:"...``.
    """

    def __init__(self, url: str, *, prefix: str = "convo:", timeout: float = 5.0) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - redis is a declared extra
            raise InvalidConfigError("RedisStore needs the redis package: pip install 'convo[redis]'") from None
        number("RedisStore(timeout=...)", timeout, positive=True, hint=" (seconds)")
        try:
            self.redis = redis.Redis.from_url(url, **redis_options(timeout))
        except ValueError as exc:
            raise InvalidConfigError(f"invalid Redis URL ({exc}); use redis://host:port/db") from None
        self.where = _where(url)
        self.prefix = prefix
        self.timeout = float(timeout)
        self._errors = (redis.RedisError, OSError)
        self._script = self.register(_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisStore({self.where!r}, prefix={self.prefix!r})"  # never the password

    def register(self, source: str) -> Any:
        """A Lua script on this store's connection, for :meth:`run_script`."""
        return self.redis.register_script(source)

    def run_script(self, script: Any, args: list[Any], keys: list[str] | None = None) -> Any:
        """Run a registered script; RateLimitStoreError (naming this store) if Redis fails."""
        try:
            return script(keys=keys or [], args=args)
        except self._errors as exc:  # unreachable, refused, timed out, script error
            raise RateLimitStoreError(
                f"Redis at {self.where} (prefix {self.prefix!r}) failed: {type(exc).__name__}"
            ) from None

    def _run(self, scope: str, rows: list[tuple[Bucket, float, float, float]]) -> tuple[float, tuple[float, ...]]:
        keys = [f"{self.prefix}ratelimit:{scope}:{b.name}" for b, _, _, _ in rows]
        args: list[Any] = []
        for bucket, amount, floor, mark in rows:
            args += [amount, bucket.capacity, bucket.rate, floor, mark]
        try:
            out = self.run_script(self._script, args, keys)
        except ConvoError as exc:
            raise RateLimitStoreError(
                f"the Redis rate-limit store failed ({exc}); check the server is reachable"
            ) from None
        return float(out[0]), tuple(float(m) for m in out[1:])

    def reserve(self, scope: str, demands: list[tuple[Bucket, float]]) -> tuple[float, tuple[float, ...]]:
        """Take each amount from its bucket in ``scope``, all at once (levels may go below zero).

        Returns the seconds until every bucket is back at zero, and a mark per bucket (its running total
        of reservations, this one included) for :meth:`recheck`. Runs on the Redis server's clock;
        RateLimitStoreError if Redis fails.
        """
        return self._run(scope, [(b, amount, -1.0, -1.0) for b, amount in demands])

    def recheck(self, scope: str, demands: list[tuple[Bucket, float]], marks: tuple[float, ...]) -> float:
        """Seconds the reservation that got ``marks`` must still wait, counting refunds made since (a
        refund to a request ahead in line lets the ones behind it go sooner).
        """
        return self._run(scope, [(b, 0.0, -1.0, mark) for (b, _), mark in zip(demands, marks)])[0]

    def adjust(self, scope: str, bucket: Bucket, delta: float, cap_at: float | None = None) -> None:
        """Give ``delta`` units back to ``bucket`` in ``scope`` (a negative ``delta`` takes more);
        ``cap_at`` then lowers the level to at most that, to match what the server reports.
        """
        self._run(scope, [(bucket, -delta, -1.0 if cap_at is None else max(cap_at, 0.0), -2.0)])
