"""Client-side rate limits: token buckets for requests, input and output tokens, and days.

The API enforces its limits with token buckets that refill continuously (capacity L, refilled
at L/60 per second). convo keeps the same buckets on the client and *waits before sending*, so
a correctly configured client never sees a 429::

    client = Client(..., limits=RateLimits(rpm=50, input_tpm=30_000, output_tpm=8_000))

- A request reserves 1 request, its estimated input tokens (convo's counter) and ``max_tokens``
  output tokens. Reservations may drive a bucket below zero; the caller then sleeps until the
  bucket is back at zero, which keeps callers in order (no thundering herd).
- The response corrects the reservation: input by what the API counted (``input_tokens`` +
  cache writes; cache reads do not count against the limit), output by refunding the unused
  part of ``max_tokens``.
- Limits not configured are learned from the ``anthropic-ratelimit-*-limit`` headers, and a
  bucket is pulled down to the ``-remaining`` the server reports (other clients share the
  account). On 429 and 529 an adaptive request rate backs off (x0.7 of the rate being sent)
  and, while no more come, grows back along a cubic curve in time (the AWS SDKs' adaptive retry
  mode): a lone 429 costs seconds, sustained throttling keeps the rate down.
  The adaptive cap is each process's own (its sending rate), paced in-process even with a
  shared store.
- ``tokens_per_day`` adds a day-long bucket of input + output tokens.
- ``store=RedisStore(url)`` shares the buckets between processes and machines (one Lua script,
  atomic, on the Redis server's clock); in-memory is the default. When the store fails, requests
  fail closed (:class:`~convo.RateLimitStoreError`, nothing sent) unless ``on_store_error="local"``:
  then this process falls back to its own buckets (each process then enforces the whole limit by
  itself) and goes back to the store once it answers again (tried every ``STORE_RETRY`` seconds).
- ``store=SQLiteStore(path)`` shares them between the processes of one machine through a file (one
  transaction per step, on the machine's clock), with no server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import InvalidConfigError, RateLimitStoreError
from ._numbers import number
from .buckets import Bucket, BucketStore, MemoryStore, RedisStore
from .shared_sqlite import SQLiteStore

__all__ = ["Bucket", "BucketStore", "MemoryStore", "RateLimiter", "RateLimits", "RedisStore", "Reservation", "SQLiteStore"]

MINUTE = 60.0
DAY = 86_400.0
#: Adaptive mode: on a 429/529 the request rate drops to BETA x the rate being sent (w); with no
#: further throttling it follows CUBIC's curve, rate(t) = CUBIC_C (t - K)^3 + w, back to w after
#: K seconds and past it, until the known rpm makes the cap moot; never below MIN_RATE per second.
BETA = 0.7
CUBIC_C = 0.4
MIN_RATE = 0.5
#: The window over which the rate being sent is measured, in seconds.
MEASURE_WINDOW = 10.0

#: The API rounds token ``-remaining`` headers to the nearest thousand; trusting the rounded
#: figure as exact would leave up to half of that unused for the whole run.
REMAINING_ROUNDING = 1000.0
#: A queued request re-checks the buckets at least this often, so refunds of requests ahead of
#: it (unused max_tokens) let it go early.
RECHECK = 0.25

#: With ``on_store_error="local"``, a failed store is tried again after this many seconds (in the
#: meantime requests use the local buckets without waiting on it).
STORE_RETRY = 2.0
ON_STORE_ERROR = ("fail", "local")

log = logging.getLogger("convo.ratelimit")

_HEADER_BUCKETS = {"requests": "rpm", "input-tokens": "input_tpm", "output-tokens": "output_tpm"}



@dataclass(frozen=True)
class RateLimits:
    """Per-minute (and per-day) limits to stay under; None means "learn it from the API".

    ``scope`` names the shared account in the store (clients with the same store and scope
    share buckets). ``learn`` reads limits from response headers; ``adaptive`` slows down on
    429/529. ``on_store_error``: ``"fail"`` (refuse requests while the store is down) or
    ``"local"`` (fall back to this process's buckets until it is back).
    """

    rpm: float | None = None
    input_tpm: float | None = None
    output_tpm: float | None = None
    tokens_per_day: float | None = None
    store: Any = None
    scope: str = "default"
    learn: bool = True
    adaptive: bool = True
    on_store_error: str = "fail"

    def __post_init__(self) -> None:
        if self.on_store_error not in ON_STORE_ERROR:
            raise InvalidConfigError(f"on_store_error must be 'fail' or 'local', got {self.on_store_error!r}")
        for name in ("rpm", "input_tpm", "output_tpm", "tokens_per_day"):
            value = getattr(self, name)
            if value is not None:
                number(name, value, positive=True, hint=" (a positive number, or None to learn it from the API)")
        if self.store is not None and not all(callable(getattr(self.store, m, None)) for m in ("reserve", "recheck", "adjust")):
            raise InvalidConfigError(
                f"store must be a bucket store (MemoryStore(), RedisStore(url), SQLiteStore(path)), got "
                f"{type(self.store).__name__}"
            )


@dataclass
class Reservation:
    """What one attempt took from the buckets, so the response can correct it."""

    input: float
    output: float
    wait: float
    demands: list[tuple[Bucket, float]] = field(default_factory=list)
    marks: tuple[float, ...] = ()
    store: Any = None  # the store that took it (the shared one, or the local fallback)
    not_before: float = float("-inf")  # on the limiter's clock: the adaptive cap's pacing


@dataclass
class _Adaptive:
    """The adaptive cap: the rate at the last cut (None: no cap) and when it was cut."""

    peak: float | None = None  # requests per second being sent when the last 429/529 came
    sent: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    last_cut: float = float("-inf")

    def rate(self, now: float) -> float | None:
        """Requests per second allowed at ``now`` (None: no cap): BETA x peak at the cut, peak
        again K seconds later, and growing faster from there."""
        if self.peak is None:
            return None
        k: float = (self.peak * (1 - BETA) / CUBIC_C) ** (1 / 3)
        t = now - self.last_cut - k
        return max(MIN_RATE, CUBIC_C * t * t * t + self.peak)


class RateLimiter:
    """The limiter behind ``Client(limits=...)``; thread-safe; store calls are its only I/O."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.store = limits.store if limits.store is not None else MemoryStore(clock)
        self._lock = threading.Lock()
        self._configured = {
            "rpm": limits.rpm,
            "input_tpm": limits.input_tpm,
            "output_tpm": limits.output_tpm,
        }
        self._learned: dict[str, float] = {}
        self._adaptive = _Adaptive()
        self._pacer = MemoryStore(clock)  # the adaptive cap's bucket: this process's alone
        self._local: MemoryStore | None = None  # the fallback of on_store_error="local"
        self._retry_store_at = float("-inf")  # on self.clock: when to try a failed store again
        self._owed: deque[tuple[Bucket, float]] = deque()  # corrections the store failed to take

    @property
    def io(self) -> bool:
        """Whether store calls may block (a network store): the async driver then uses a thread."""
        return not isinstance(self.store, MemoryStore)

    def __repr__(self) -> str:
        return f"RateLimiter({self.limits.rpm=}, {self.limits.input_tpm=}, {self.limits.output_tpm=})"

    def _bucket(self, name: str) -> Bucket | None:
        per_minute = self._configured.get(name) or self._learned.get(name)
        if per_minute:
            return Bucket(name, per_minute, per_minute / MINUTE)
        return None

    def limit(self, name: str) -> float | None:
        """The limit in force for ``rpm``, ``input_tpm`` or ``output_tpm`` (configured or learned)."""
        return self._configured.get(name) or self._learned.get(name)

    def demands(self, input_tokens: float, output_tokens: float) -> list[tuple[Bucket, float]]:
        out: list[tuple[Bucket, float]] = []
        for name, amount in (("rpm", 1.0), ("input_tpm", input_tokens), ("output_tpm", output_tokens)):
            bucket = self._bucket(name)
            if bucket is not None:
                if amount > bucket.capacity:
                    raise InvalidConfigError(
                        f"this request needs {amount:.0f} {name.split('_')[0]} units but {name} is "
                        f"{bucket.capacity:.0f}: it can never be sent; lower max_tokens or send less"
                    )
                out.append((bucket, amount))
        if self.limits.tokens_per_day:
            day = self.limits.tokens_per_day
            out.append((Bucket("tokens_per_day", day, day / DAY), input_tokens + output_tokens))
        return out

    def reserve(self, input_tokens: float, output_tokens: float) -> Reservation:
        """Take a request's worth from every bucket; returns how long to wait before sending.

        Corrections the store could not take earlier (see :meth:`settle`) are sent first; if the
        store still fails, :class:`~convo.RateLimitStoreError` is raised and nothing is sent.
        """
        try:
            self.reconcile()
        except RateLimitStoreError:
            if self.limits.on_store_error != "local":
                raise  # nothing is sent while the shared books are behind
        demands = self.demands(input_tokens, output_tokens)
        store: Any = self.store
        wait, marks = 0.0, ()
        if demands:
            store = self._pick()
            try:
                wait, marks = store.reserve(self.limits.scope, demands)
                if store is self.store:
                    self._store_answered()
            except RateLimitStoreError as exc:
                if store is not self.store or self.limits.on_store_error != "local":
                    raise
                store = self._fall_back(exc)
                wait, marks = store.reserve(self.limits.scope, demands)
        paced, now = self._pace(), self.clock()
        wait = max(wait, paced)
        with self._lock:
            self._adaptive.sent.append(now + wait)
        return Reservation(input=input_tokens, output=output_tokens, wait=wait, demands=demands, marks=marks,
                           store=store, not_before=now + paced)

    def _pace(self) -> float:
        """Seconds this process's adaptive cap makes the next request wait. The cap is this
        process's own (its sending rate at a 429), so its bucket is too, never the shared store's."""
        rate = self.adaptive_rate
        if rate is None:
            return 0.0
        wait, _ = self._pacer.reserve("adaptive", [(Bucket("adaptive", max(1.0, rate), rate), 1.0)])
        return wait

    def _pick(self) -> Any:
        """The store for a new reservation: the shared one, unless it failed and is not due a retry."""
        if self._local is not None and self.clock() < self._retry_store_at:
            return self._local
        return self.store

    def _fall_back(self, exc: Exception) -> MemoryStore:
        with self._lock:
            first = self._local is None or self._retry_store_at == float("-inf")
            if self._local is None:
                self._local = MemoryStore(self.clock)
            self._retry_store_at = self.clock() + STORE_RETRY
            local = self._local
        if first:
            log.warning("convo: the shared rate-limit store failed (%s); using this process's own buckets until it "
                        "answers again", exc)
        return local

    def _store_answered(self) -> None:
        if self._local is not None and self._retry_store_at != float("-inf"):
            with self._lock:
                self._retry_store_at = float("-inf")
            log.warning("convo: the shared rate-limit store answers again; back to the shared buckets")

    def recheck(self, reservation: Reservation) -> float:
        """Seconds a reservation must still wait, after refunds made since it was taken."""
        paced = max(0.0, reservation.not_before - self.clock())
        if not reservation.demands:
            return paced
        store = reservation.store if reservation.store is not None else self.store
        try:
            wait: float = store.recheck(self.limits.scope, reservation.demands, reservation.marks)
        except RateLimitStoreError:
            if self.limits.on_store_error != "local":
                raise
            return paced  # the store went away while this request queued: it goes now (a 429 is retried)
        return max(wait, paced)

    @property
    def owed(self) -> int:
        """Corrections kept locally because the store failed when they were made."""
        with self._lock:
            return len(self._owed)

    def reconcile(self) -> None:
        """Send the store the corrections it failed to take (oldest first); raises
        RateLimitStoreError, keeping the rest, if it fails again."""
        while True:
            with self._lock:
                if not self._owed:
                    return
                bucket, delta = self._owed[0]
            self.store.adjust(self.limits.scope, bucket, delta)
            with self._lock:
                if self._owed and self._owed[0] == (bucket, delta):
                    self._owed.popleft()

    def settle(self, reservation: Reservation, usage: Any | None, headers: Mapping[str, str] | None) -> None:
        """Correct a reservation from the response (usage and rate-limit headers).

        Never raises for a store failure: the API has answered by now, so the reply must reach
        the caller. A correction the store cannot take is kept and sent before the next
        reservation (:meth:`reconcile`); a warning is logged.
        """
        if headers is not None:
            try:
                self.learn(headers)
            except RateLimitStoreError as exc:  # only a cap to the server's figure: the next response brings it again
                log.warning("convo: the rate-limit store failed while syncing to the API's headers (%s)", exc)
        store = reservation.store
        if usage is None:  # the attempt failed: give the unused output reservation back
            self._give("output_tpm", reservation.output, store)
            self._give("tokens_per_day", reservation.output, store)
            return
        counted_input = (usage.input_tokens or 0) + (getattr(usage, "cache_creation_input_tokens", 0) or 0)
        used_output = usage.output_tokens or 0
        self._give("input_tpm", reservation.input - counted_input, store)
        self._give("output_tpm", reservation.output - used_output, store)
        self._give("tokens_per_day", reservation.input + reservation.output - counted_input - used_output, store)

    def _give(self, name: str, delta: float, store: Any = None) -> None:
        if not delta:
            return
        if name == "tokens_per_day":
            day = self.limits.tokens_per_day
            bucket = Bucket(name, day, day / DAY) if day else None
        else:
            bucket = self._bucket(name)
        if bucket is not None:
            self._adjust(store, bucket, delta)

    def _adjust(self, store: Any, bucket: Bucket, delta: float, cap_at: float | None = None) -> None:
        """A correction after the response, never raised over an answer the API gave: if the
        shared store fails, a refund is kept and sent before the next reservation
        (:meth:`reconcile`); a cap to the server's figure is dropped (the next response brings
        it again). A warning is logged either way."""
        target = store if store is not None else self.store
        try:
            target.adjust(self.limits.scope, bucket, delta, cap_at)
        except RateLimitStoreError as exc:
            if cap_at is None and target is self.store:
                with self._lock:
                    self._owed.append((bucket, delta))
                log.warning("convo: the rate-limit store failed settling a request (%s); kept locally, sent on the "
                            "next request", exc)
            else:
                log.warning("convo: could not correct the %s bucket after a response (%s)", bucket.name, exc)

    def learn(self, headers: Mapping[str, str]) -> None:
        """Adopt limits the API reports for what was not configured; sync to its remaining."""
        if not self.limits.learn:
            return
        for part, name in _HEADER_BUCKETS.items():
            raw_limit = headers.get(f"anthropic-ratelimit-{part}-limit")
            if raw_limit is None:
                continue
            try:
                limit = float(raw_limit)
                remaining = float(headers.get(f"anthropic-ratelimit-{part}-remaining", limit))
            except ValueError:
                continue
            if not self._configured.get(name) and limit > 0:
                self._learned[name] = limit
            bucket = self._bucket(name)
            if name != "rpm" and bucket is not None:
                # Token counts are rounded to the nearest thousand: take the middle of the range,
                # less a second of refill for what is still in transit to the server.
                remaining += max(0.0, REMAINING_ROUNDING / 2 - bucket.rate)
            if bucket is not None and remaining < bucket.capacity:
                self._adjust(self._pick(), bucket, 0.0, cap_at=remaining)

    def throttled(self) -> None:
        """A 429 or 529 arrived: cut the adaptive request rate."""
        if not self.limits.adaptive:
            return
        with self._lock:
            now = self.clock()
            if now - self._adaptive.last_cut < 1.0:
                return  # one burst of 429s is one signal, not one cut per request
            recent = sum(1 for t in self._adaptive.sent if now - t <= MEASURE_WINDOW)
            sending = max(MIN_RATE, recent / MEASURE_WINDOW)
            allowed = self._adaptive.rate(now)
            self._adaptive.peak = sending if allowed is None else min(sending, allowed)
            self._adaptive.last_cut = now

    @property
    def adaptive_rate(self) -> float | None:
        """The adaptive cap in requests per second now, or None when there is none."""
        with self._lock:
            rate = self._adaptive.rate(self.clock())
            known = self._configured.get("rpm") or self._learned.get("rpm") or 10_000.0
            if rate is not None and rate * MINUTE >= known:  # back past the known limit: not needed
                self._adaptive.peak = rate = None
            return rate
