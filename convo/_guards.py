"""The guards of the request pipeline, as objects, in the order they apply (see ``_pipeline``).

Each guard has four hooks, all optional (the base class does nothing):

- ``enter(ctx, call)``: once, before the first attempt (redact the request; ask the cache,
  which may answer the call: ``call.hit``);
- ``admit(ctx, call, ticket)``: before each attempt (hold its worst case on the budget; wait
  for the rate limiter);
- ``settle(ctx, call, ticket, usage, headers, error)``: after each attempt, whatever its end
  (charge the cost, correct the limiter, feed the calibration). It yields only ``Do`` effects,
  so a cancelled call settles too: :func:`settle_now` runs it without a driver;
- ``leave(ctx, call, value)``: once, after success, in reverse order (count the call in the
  stats, store the reply in the cache, restore the redacted values); ``abandon(ctx, call,
  error, now)`` instead when the call fails for good.

``Tracing`` is first (the OpenTelemetry span of the whole call, from ``enter`` to ``leave`` or
``abandon``) and ``AttemptSpans`` last (a child span per attempt, from ``admit`` to ``settle``, so
it covers exactly what was sent); both step aside when nothing records telemetry (``_telemetry``).
They are in ``_guard_spans``; the base class and the call's state in ``_guard_base``.

The Message Batches path sends its items inside one ``POST /v1/messages/batches`` and gets the
answers hours later, so it calls the same guards' item methods at those moments, in the same
order: :meth:`Redacting.protect`, :meth:`Caching.lookup`, :meth:`Spending.hold` (at batch
prices), then :meth:`Spending.settle_item`, :meth:`Accounting.item_finished`,
:meth:`Caching.store` and :meth:`Redacting.restore`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from ._context import CallContext
from ._flow import Do, Emit, Flow, Sleep, finishing, taking
from ._guard_base import CACHED_STOPS, ESTIMATE_MARGIN, CallState, Guard, Ticket, estimate
from ._guard_spans import AttemptSpans, Tracing
from .budget import Budget, Hold
from .cache import CacheError, cache_key, from_entry, is_cacheable, to_entry
from .ratelimit import RECHECK
from .redact import restore_message
from .tokens import calibration_of, total_input

__all__ = [
    "ACCOUNTING",
    "ALL",
    "ATTEMPTS",
    "CACHE",
    "COSTS",
    "COUNT_TRACING",
    "ESTIMATE_MARGIN",
    "LIMITS",
    "REDACTION",
    "TRACING",
    "Accounting",
    "AttemptSpans",
    "Caching",
    "CallState",
    "Guard",
    "RateLimiting",
    "Redacting",
    "Spending",
    "Ticket",
    "Tracing",
    "settle_now",
]

log = logging.getLogger("convo")
cache_log = logging.getLogger("convo.cache")
limit_log = logging.getLogger("convo.ratelimit")

class Redacting(Guard):
    """First in, last out: nothing leaves unredacted; replies come back restored."""

    def protect(self, ctx: CallContext, request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The request as it may leave the process, and the mapping that restores replies."""
        if ctx.redactor is None:
            return request, {}
        return ctx.redactor.redact_request(request)

    def restore(self, value: Any, mapping: Mapping[str, str]) -> Any:
        """A reply with the placeholders of ``mapping`` put back (itself when there are none)."""
        return restore_message(value, mapping) if mapping and hasattr(value, "content") else value

    def enter(self, ctx: CallContext, call: CallState) -> Flow:
        call.request, call.mapping = self.protect(ctx, call.request)
        if call.streaming and call.mapping and ctx.redactor is not None:
            call.restorer = ctx.redactor.restorer(call.mapping)
        return
        yield  # pragma: no cover

    def leave(self, ctx: CallContext, call: CallState, value: Any) -> Flow:
        if call.restorer is not None:
            yield Emit(call.restorer.flush())
        return self.restore(value, call.mapping)


#: Seconds a cache that failed is left alone: a hung server costs one timeout, not two per call.
CACHE_PAUSE = 5.0


class Caching(Guard):
    """Answers a repeated deterministic request from the cache; stores replies as the server
    wrote them (placeholders, never restored values). A failing cache is skipped with a warning:
    it only saves calls. After a failure it is left alone for :data:`CACHE_PAUSE` seconds (on the
    client's clock), so a cache server that hangs does not add its timeout to every call."""

    def __init__(self) -> None:
        self._paused: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()  # cache: until when
        self._lock = threading.Lock()

    def _usable(self, ctx: CallContext, cache: Any) -> bool:
        if not self._paused:  # the usual case: no lock, no lookup
            return True
        with self._lock:
            until = self._paused.get(cache) if _weakable(cache) else None  # get() raises on one that is not
            if until is None:
                return True
            if ctx.clock() < until:
                return False
            del self._paused[cache]  # try it again
            return True

    def _failed(self, ctx: CallContext, cache: Any) -> None:
        if _weakable(cache):
            with self._lock:
                self._paused[cache] = ctx.clock() + CACHE_PAUSE

    def key(self, ctx: CallContext, request: dict[str, Any], user: str | None) -> str | None:
        """The cache key of a (redacted) request, or None when it must not be cached."""
        if ctx.cache is None or not is_cacheable(request, ctx.cache_sampling):
            return None
        return cache_key(request, ctx.cache_namespace if ctx.cache_namespace is not None else (user or ""))

    def lookup(self, ctx: CallContext, key: str | None) -> Flow:
        """The cached reply for ``key``, or None."""
        cache = ctx.cache
        if key is None or cache is None or not self._usable(ctx, cache):
            return None
        try:
            entry = yield Do(cache.get, (key,), io=True)
            message = from_entry(entry) if entry is not None else None
        except CacheError as exc:
            self._failed(ctx, cache)
            log.warning("response cache unavailable, skipping it for %g s: %s", CACHE_PAUSE, exc)
            return None
        except Exception as exc:  # noqa: BLE001 -- a custom cache's bug, a bad entry: the call goes on without it
            log.warning("response cache failed, skipping it (%s: %s)", type(exc).__name__, exc)
            return None
        ctx.stats.count("cache_hits" if message is not None else "cache_misses")
        if message is not None:
            cache_log.debug("answered from the response cache (key %s...)", key[:12])
        return message

    def store(self, ctx: CallContext, key: str | None, message: Any) -> Flow:
        cache = ctx.cache
        if key is None or cache is None or getattr(message, "stop_reason", None) not in CACHED_STOPS:
            return
        if not self._usable(ctx, cache):
            return
        try:
            yield Do(cache.set, (key, to_entry(message), ctx.cache_ttl), io=True)
        except CacheError as exc:
            self._failed(ctx, cache)
            log.warning("response cache unavailable, not storing (skipping it for %g s): %s", CACHE_PAUSE, exc)
        except Exception as exc:  # noqa: BLE001 -- the reply is paid for: a cache that fails must not lose it
            log.warning("response cache failed, not storing (%s: %s)", type(exc).__name__, exc)

    def enter(self, ctx: CallContext, call: CallState) -> Flow:
        call.cache_key = self.key(ctx, call.request, call.user)
        call.hit = yield from self.lookup(ctx, call.cache_key)

    def settle(
        self, ctx: CallContext, call: CallState, ticket: Ticket, usage: Any, headers: Any, error: BaseException | None
    ) -> Flow:
        if error is None:
            call.answered_by = ticket.model  # the last clean settle before leave is the attempt that answered
        return
        yield  # pragma: no cover

    def leave(self, ctx: CallContext, call: CallState, value: Any) -> Flow:
        if call.hit is None:
            key = call.cache_key
            requested = call.request.get("model")
            if key is not None and call.answered_by is not None and call.answered_by != requested:
                # A fallback model answered: its reply is an answer of that model, never of the one asked for.
                key = self.key(ctx, {**call.request, "model": call.answered_by}, call.user)
            yield from self.store(ctx, key, value)
        return value


class Spending(Guard):
    """The spending budget and the cost ledger: an attempt's worst case is held before it is
    sent; its real cost (from the usage, the partial usage of a failed stream, or 0) replaces
    the hold and is charged to ``client.stats``."""

    def _worst(self, ctx: CallContext, ticket: Ticket, batch: bool) -> float:
        prices = ctx.price_table()
        request = ticket.request or {}
        worst = prices.worst_case(ticket.model, estimate(ctx, ticket) * ESTIMATE_MARGIN, request.get("max_tokens", 0))
        return worst * prices.batch_discount if batch else worst

    def __init__(self) -> None:
        # Settlements a budget's store refused after the API had answered: (budget, hold, cost),
        # kept here and sent again before that budget's next hold, so no spend goes unrecorded.
        self._owed: list[tuple[Budget, Hold, float]] = []
        self._lock = threading.Lock()

    @property
    def owed(self) -> int:
        """Settlements waiting for a budget store that failed (see :meth:`reconcile`)."""
        with self._lock:
            return len(self._owed)

    def reconcile(self, spend: Budget) -> None:
        """Settle what ``spend`` could not take earlier; raises (keeping the rest) if it fails again."""
        with self._lock:
            if not self._owed:
                return
            mine = [o for o in self._owed if o[0] is spend]
        for owed in mine:
            spend.settle(owed[1], owed[2])
            with self._lock:
                self._owed.remove(owed)

    def hold(self, ctx: CallContext, ticket: Ticket, *, batch: bool = False) -> None:
        """Hold the worst case of ``ticket``'s request (``batch``: at batch prices). Raises
        :class:`~convo.BudgetExceededError` (nothing held) when the budget cannot cover it."""
        spend = ctx.spend
        if spend is not None:
            self.reconcile(spend)
            ticket.spend = spend
            ticket.hold = spend.reserve(self._worst(ctx, ticket, batch), ticket.user)

    def charge(self, ctx: CallContext, ticket: Ticket, cost: float | None) -> None:
        """Replace the hold by ``cost`` and put the cost on the ledger (idempotent). Never
        raises: the request was answered (or failed) already, so a budget store that fails now
        gets the settlement later (:meth:`reconcile`), with a warning."""
        self._settle_hold(ticket, cost or 0.0)
        if cost:
            ctx.stats.charge(cost, ticket.user)

    def _settle_hold(self, ticket: Ticket, cost: float) -> None:
        with self._lock:  # taken once, though a cancelled call's thread may race the pipeline for it
            hold, ticket.hold = ticket.hold, None
        if hold is None or ticket.spend is None:
            return
        try:
            ticket.spend.settle(hold, cost)
        except Exception as exc:  # noqa: BLE001 -- any store failure: the reply must not be lost
            with self._lock:
                self._owed.append((ticket.spend, hold, cost))
            log.warning(
                "convo: the budget store failed settling a request (%s: %s); the cost is kept locally "
                "and settled before the next request", type(exc).__name__, exc,
            )

    def admit(self, ctx: CallContext, call: CallState, ticket: Ticket) -> Flow:
        spend = ctx.spend
        if spend is not None and spend.io:  # a shared budget: a network call, off the event loop
            yield from taking(self.hold, (ctx, ticket), lambda _: self._settle_hold(ticket, 0.0))
        else:
            self.hold(ctx, ticket)

    def settle(
        self, ctx: CallContext, call: CallState, ticket: Ticket, usage: Any, headers: Any, error: BaseException | None
    ) -> Flow:
        cost = ctx.cost(usage, ticket.model)
        if ticket.hold is not None and ticket.spend is not None and ticket.spend.io:
            yield from finishing(self.charge, (ctx, ticket, cost), what="settling a budget")  # answered: pay
        else:
            self.charge(ctx, ticket, cost)

    def settle_item(self, ctx: CallContext, ticket: Ticket, usage: Any) -> float | None:
        """A batch item's result arrived: charge its cost at batch prices; returns the cost."""
        cost = ctx.cost(usage, ticket.model, batch=True)
        self.charge(ctx, ticket, cost)
        return cost

    def release(self, ticket: Ticket) -> None:
        """Give back a hold that no result will settle (nothing is charged)."""
        self._settle_hold(ticket, 0.0)


class RateLimiting(Guard):
    """Waits for the client's rate limiter before each attempt; corrects it after, from the
    usage and the response headers."""

    def admit(self, ctx: CallContext, call: CallState, ticket: Ticket) -> Flow:
        limiter = ticket.limiter = ctx.limiter
        if limiter is None:
            return
        request = ticket.request or {}
        ticket.reservation = yield from taking(
            limiter.reserve, (estimate(ctx, ticket), request.get("max_tokens", 0)),
            lambda taken: limiter.settle(taken, None, None), io=limiter.io,
        )
        wait = ticket.reservation.wait
        if wait > 0:
            limit_log.debug("waiting %.3fs for the rate limiter before sending to %s", wait, ticket.model)
        while wait > 0:  # re-check now and then: refunds ahead in line shorten the wait
            yield Sleep(min(wait, RECHECK))
            if wait <= RECHECK:
                break
            wait = yield Do(limiter.recheck, (ticket.reservation,), io=limiter.io)

    def settle(
        self, ctx: CallContext, call: CallState, ticket: Ticket, usage: Any, headers: Any, error: BaseException | None
    ) -> Flow:
        limiter = ticket.limiter
        if limiter is None:
            return
        if ticket.reservation is not None:
            reservation, ticket.reservation = ticket.reservation, None
            try:
                yield from finishing(limiter.settle, (reservation, usage, headers), io=limiter.io,
                                     what="correcting the rate limiter")
            except Exception as exc:  # noqa: BLE001 -- a custom store: the API answered, the reply must not be lost
                log.warning("convo: the rate limiter failed settling a request (%s: %s)", type(exc).__name__, exc)
        if error is not None and getattr(error, "status_code", None) in (429, 529):
            limiter.throttled()


class Accounting(Guard):
    """``client.stats`` for the call (latency, tokens, time to first token, errors) and the
    counter's calibration (convo's estimate of each request vs the server's count)."""

    def calibrate(self, ctx: CallContext, ticket: Ticket, usage: Any) -> None:
        cal = calibration_of(ctx.counter)
        actual = total_input(usage)
        if cal is None or ticket.request is None or actual <= 0:
            return
        if ticket.request.get("context_management"):
            return  # the server counted the history after its own edits: not the request we estimated
        if ticket.estimate is None and not cal.wants(ticket.model):
            return  # settled: skip estimating this request (see Calibration.wants)
        estimate = ticket.estimate if ticket.estimate is not None else ctx.estimate_input(ticket.request)
        cal.observe(ticket.model, estimate, actual)

    def settle(
        self, ctx: CallContext, call: CallState, ticket: Ticket, usage: Any, headers: Any, error: BaseException | None
    ) -> Flow:
        if usage is not None:
            self.calibrate(ctx, ticket, usage)
        return
        yield  # pragma: no cover

    def leave(self, ctx: CallContext, call: CallState, value: Any) -> Flow:
        if call.hit is None:
            now = ctx.clock()
            ctx.stats.finished(latency=now - call.start, usage=getattr(value, "usage", None), ttft=call.ttft, user=call.user)
        return value
        yield  # pragma: no cover

    def abandon(self, ctx: CallContext, call: CallState, error: BaseException, now: float) -> None:
        ctx.stats.finished(latency=now - call.start, error=type(error).__name__)

    def item_finished(self, ctx: CallContext, ticket: Ticket, usage: Any, error: BaseException | None, latency: float) -> None:
        """A batch item ended: one request in the stats, its usage fed to the calibration."""
        if usage is not None:
            self.calibrate(ctx, ticket, usage)
        ctx.stats.finished(
            latency=latency, usage=usage, user=ticket.user, error=None if error is None else type(error).__name__
        )


TRACING = Tracing("chat")
COUNT_TRACING = Tracing("count_tokens")
def _weakable(cache: Any) -> bool:
    return hasattr(type(cache), "__weakref__")


ATTEMPTS = AttemptSpans()
REDACTION = Redacting()
CACHE = Caching()
COSTS = Spending()
LIMITS = RateLimiting()
ACCOUNTING = Accounting()
#: Every guard, in the pipeline's order: what a ``create`` or a stream passes.
ALL: tuple[Guard, ...] = (TRACING, REDACTION, CACHE, COSTS, LIMITS, ACCOUNTING, ATTEMPTS)


def settle_now(flow: Flow, ctx: CallContext) -> None:
    """Run a settle hook without a driver (a cancelled call cannot yield any more): its ``Do``
    effects are called here, in this thread. A failure is logged, never raised over the
    cancellation."""
    try:
        effect = next(flow)
        while True:
            if not isinstance(effect, Do):
                raise TypeError(f"a settle hook yielded {effect!r}; only Do effects can run without a driver")
            effect = flow.send(effect.fn(*effect.args))
    except StopIteration:
        return
    except Exception as exc:  # noqa: BLE001 -- the call is being cancelled: say what was not settled, go on
        log.warning("convo: could not settle a cancelled request (%s: %s)", type(exc).__name__, exc)
