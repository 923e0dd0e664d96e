"""One API call as a flow: retries, model fallback, rate limits, budget, cache and redaction.

``call_flow`` is a generator of effects (see ``_flow``), so the sync and async clients run the
very same code; the guards it applies around each attempt (``_admit`` / ``_settle``, the cache
and the redactor) are shared with the resumable stream flow in ``_resume``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
import tenacity

from ._exceptions import api_error, scrub_credentials
from ._flow import Call, Do, Flow, Now, Raw, Sleep
from .budget import Budget, Hold
from .cache import Cache, CacheError, cache_key, from_entry, is_cacheable, to_entry
from .messages import to_message, to_system
from .prices import PriceTable, UnknownModelError
from .ratelimit import RECHECK, RateLimiter, Reservation
from .redact import Redactor, restore_message
from .retry import RetryBudget, RetryPolicy, is_spend_limit
from .tokens import TokenCounter, calibration_of, default_counter, digest, fixed_tokens, total_input
from .usage import Stats

__all__ = ["CallContext", "call_flow"]

log = logging.getLogger("convo")


@dataclass
class CallContext:
    """Everything a flow needs from its client: the client's state, in one place.

    The client's live settings (``retry``, ``cache``, ``budget``, ``redactor``...) read and write
    these fields, and every flow reads them when it runs, so an assignment takes effect on the
    next call. ``clock`` is the one clock of the client (latency, time to first token, retry
    deadlines, the rate limiter).
    """

    policy: RetryPolicy
    budget: RetryBudget | None
    stats: Stats
    fallback_models: tuple[str, ...] = ()
    counter: TokenCounter = field(default_factory=default_counter)
    limiter: RateLimiter | None = None
    spend: Budget | None = None
    prices: PriceTable | None = None
    cache: Cache | None = None
    cache_ttl: float | None = None
    cache_sampling: bool = False
    cache_namespace: str | None = None
    redactor: Redactor | None = None
    clock: Callable[[], float] = time.monotonic
    _estimates: OrderedDict[bytes, int] = field(default_factory=OrderedDict)

    def estimate_input(self, request: dict[str, Any]) -> int:
        """convo's estimate of a request's input tokens, remembering each message's count."""
        total = fixed_tokens(self.counter, to_system(request.get("system")), request.get("tools"))
        for m in request["messages"]:
            key = digest(json.dumps(m, sort_keys=True, ensure_ascii=False))
            n = self._estimates.get(key)
            if n is None:
                n = self._estimates[key] = self.counter.count_message(to_message(m))
                if len(self._estimates) > 50_000:
                    self._estimates.popitem(last=False)
            total += n
        return total

    def cost(self, usage: Any, model: str) -> float | None:
        if usage is None or self.prices is None:
            return None
        try:
            return self.prices.cost(usage, model)
        except UnknownModelError:
            return None


@dataclass
class _Ticket:
    """What one attempt reserved from the rate limiter and the spending budget."""

    model: str
    user: str | None = None
    reservation: Reservation | None = None
    hold: Hold | None = None
    request: dict[str, Any] | None = None  # as sent, to compare the estimate with the usage
    estimate: int | None = None  # convo's uncorrected estimate of its input tokens
    # The limiter and budget reserved from: the attempt settles with them even if the client's
    # ``limits`` or ``budget`` is assigned meanwhile.
    limiter: RateLimiter | None = None
    spend: Budget | None = None


def _user_of(request: dict[str, Any]) -> str | None:
    """The end user a request is for (``metadata.user_id``), for budgets and the ledger."""
    metadata = request.get("metadata")
    return metadata.get("user_id") if isinstance(metadata, dict) else None


#: Worst-case budgeting adds this margin to the input estimate (the estimate's error is < 10%).
ESTIMATE_MARGIN = 1.25


def _protect(ctx: CallContext, request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Redact a request before it is sent, cached or logged; returns it and the mapping."""
    if ctx.redactor is None:
        return request, {}
    return ctx.redactor.redact_request(request)


def _restore(message: Any, mapping: dict[str, str]) -> Any:
    return restore_message(message, mapping) if mapping else message


def _cache_key(ctx: CallContext, request: dict[str, Any]) -> str | None:
    """The cache key of a request, or None when it must not be cached."""
    if ctx.cache is None or not is_cacheable(request, ctx.cache_sampling):
        return None
    namespace = ctx.cache_namespace if ctx.cache_namespace is not None else (_user_of(request) or "")
    return cache_key(request, namespace)


def _cache_get(ctx: CallContext, key: str | None) -> Flow:
    """The cached reply for ``key``, or None. A failing cache is skipped (it only saves calls)."""
    if key is None or ctx.cache is None:
        return None
    try:
        entry = yield Do(ctx.cache.get, (key,), io=True)
        message = from_entry(entry) if entry is not None else None
    except CacheError as exc:
        log.warning("response cache unavailable, skipping it: %s", exc)
        return None
    ctx.stats.count("cache_hits" if message is not None else "cache_misses")
    return message


def _cache_put(ctx: CallContext, key: str | None, message: Any) -> Flow:
    if key is None or ctx.cache is None or getattr(message, "stop_reason", None) not in CACHED_STOPS:
        return
    try:
        yield Do(ctx.cache.set, (key, to_entry(message), ctx.cache_ttl), io=True)
    except CacheError as exc:
        log.warning("response cache unavailable, not storing: %s", exc)


#: Replies worth caching; a paused or refused turn is not an answer to replay.
CACHED_STOPS = frozenset({"end_turn", "stop_sequence", "tool_use", "max_tokens"})


def _admit(ctx: CallContext, request: dict[str, Any], model: str) -> Flow:
    """Before an attempt: hold its worst-case cost, then wait for the rate limiter."""
    limiter, spend = ctx.limiter, ctx.spend
    ticket = _Ticket(model, _user_of(request), request=request, limiter=limiter, spend=spend)
    if limiter is None and spend is None:
        return ticket
    ticket.estimate = ctx.estimate_input(request)
    cal = calibration_of(ctx.counter)
    estimate = cal.apply(model, ticket.estimate) if cal is not None else ticket.estimate
    max_tokens = request.get("max_tokens", 0)
    if spend is not None:
        prices = ctx.prices or PriceTable.default()
        worst = prices.worst_case(model, estimate * ESTIMATE_MARGIN, max_tokens)
        ticket.hold = spend.reserve(worst, ticket.user)
    if limiter is not None:
        try:
            ticket.reservation = yield Do(limiter.reserve, (estimate, max_tokens), io=limiter.io)
        except BaseException:
            if ticket.hold is not None and spend is not None:
                spend.settle(ticket.hold, 0.0)
            raise
        wait = ticket.reservation.wait
        while wait > 0:  # re-check now and then: refunds ahead in line shorten the wait
            yield Sleep(min(wait, RECHECK))
            if wait <= RECHECK:
                break
            wait = yield Do(limiter.recheck, (ticket.reservation,), io=limiter.io)
    return ticket


def _settle(ctx: CallContext, ticket: _Ticket, usage: Any, headers: Any, exc: BaseException | None = None) -> Flow:
    """After an attempt: correct the limiter from usage and headers, charge the real cost,
    and let the estimate learn from the server's count."""
    _calibrate(ctx, ticket, usage)
    limiter = ticket.limiter
    if limiter is not None:
        if ticket.reservation is not None:
            yield Do(limiter.settle, (ticket.reservation, usage, headers), io=limiter.io)
        if exc is not None and getattr(exc, "status_code", None) in (429, 529):
            limiter.throttled()
    cost = ctx.cost(usage, ticket.model)
    if ticket.hold is not None and ticket.spend is not None:
        ticket.spend.settle(ticket.hold, cost or 0.0)
    if cost:
        ctx.stats.charge(cost, ticket.user)


def _calibrate(ctx: CallContext, ticket: _Ticket, usage: Any) -> None:
    """Feed the counter's calibration: our estimate of the request sent vs what the server counted."""
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


def _overloaded(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", None)
    return status == 529 or (status == 200 and getattr(exc, "type", None) == "overloaded_error")


class _Attempts:
    """Tenacity's decisions for one call, plus model fallback and retry-budget bookkeeping."""

    def __init__(self, ctx: CallContext, model: str, start: float | None = None) -> None:
        self.ctx = ctx
        self.start = start  # on ctx.clock: when the call began, for the policy's max_elapsed
        self.spent = [0]
        # Tenacity's controller is built at the first failure: most calls succeed at once.
        self.retrying: tenacity.Retrying | None = None
        self.state: tenacity.RetryCallState | None = None
        self.count = 0
        self.models = [model, *(m for m in ctx.fallback_models if m != model)]
        self.model_index = 0
        self.overloaded_in_row = 0

    @property
    def model(self) -> str:
        return self.models[self.model_index]

    def next(self) -> float | None:
        """None: attempt now. A number: sleep that long first. Raises the last error when done."""
        if self.state is None:
            self.count += 1
            return None
        assert self.retrying is not None  # built with the state, at the first failure
        action = self.retrying.iter(self.state)
        if isinstance(action, tenacity.DoAttempt):
            self.count += 1
            return None
        self.state.prepare_for_next_attempt()
        self.ctx.stats.retried()
        return float(action)

    def failed(self, exc: BaseException) -> None:
        scrub_credentials(exc)  # it may end up as the __cause__ of the error the caller sees
        self.ctx.stats.attempt_failed(exc)
        if _overloaded(exc):
            self.overloaded_in_row += 1
            if self.overloaded_in_row >= self.ctx.policy.fallback_after and self.model_index + 1 < len(self.models):
                self.model_index += 1
                self.overloaded_in_row = 0
                self.ctx.stats.count("fallbacks")
        else:
            self.overloaded_in_row = 0
        if self.state is None:
            self.retrying = self.ctx.policy.retrying(self.ctx.budget, self.spent, clock=self.ctx.clock, start=self.start)
            self.retrying.begin()
            self.state = tenacity.RetryCallState(self.retrying, fn=None, args=(), kwargs={})
        self.state.set_exception((type(exc), exc, exc.__traceback__))

    def succeeded(self) -> None:
        if self.ctx.budget is not None:
            self.ctx.budget.succeeded(self.spent[0])

    def error(self, exc: BaseException) -> BaseException:
        """convo's typed error for an API failure; anything else (a bug) passes unchanged."""
        if not isinstance(exc, (anthropic.APIError, httpx2.TransportError)):
            return exc
        return api_error(exc, attempts=self.count, spend_limit=is_spend_limit(exc))


def call_flow(request: dict[str, Any], ctx: CallContext, method: str = "create") -> Flow:
    """An SDK call (``messages.create`` by default) with retries, model fallback and redaction
    (every method: ``count_tokens`` counts the redacted request, which is what ``create`` would
    send), plus the cache, rate limits and the spending budget for ``create``."""
    start = yield Now()
    attempts = _Attempts(ctx, request["model"], start)
    guarded = method == "create"
    request, mapping = _protect(ctx, request)
    key = None
    if guarded:
        key = _cache_key(ctx, request)
        cached = yield from _cache_get(ctx, key)
        if cached is not None:
            return _restore(cached, mapping)
    while True:
        try:
            wait = attempts.next()
        except Exception as exc:  # tenacity re-raises the last attempt's error, whatever it was: translated, chained
            error = attempts.error(exc)
            ctx.stats.finished(latency=(yield Now()) - start, error=type(error).__name__)
            raise error from exc
        if wait is not None:
            yield Sleep(wait)
            continue
        kwargs = {**request, "model": attempts.model}
        ticket = (yield from _admit(ctx, kwargs, attempts.model)) if guarded else None
        try:
            # Response headers feed the rate limiter; without one, the plain call is cheaper.
            raw = yield Call(method, kwargs, raw=ticket is not None and ticket.limiter is not None)
        except Exception as exc:  # noqa: BLE001 -- every failure goes to the retry policy
            if ticket is not None:
                yield from _settle(ctx, ticket, None, _headers(exc), exc)
            attempts.failed(exc)
            continue
        message, headers = (raw.value, raw.headers) if isinstance(raw, Raw) else (raw, None)
        if ticket is not None:
            yield from _settle(ctx, ticket, message.usage, headers)
        attempts.succeeded()
        ctx.stats.finished(latency=(yield Now()) - start, usage=getattr(message, "usage", None), user=_user_of(request))
        if guarded:
            yield from _cache_put(ctx, key, message)
            message = _restore(message, mapping)
        return message


def _headers(exc: BaseException) -> Any:
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)
