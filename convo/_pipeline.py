"""The request pipeline: every request convo sends goes through one attempt loop, with the
guards composed around it once, in one order::

    redact -> cache -> budget -> rate limit -> attempt (retry, fallback, resume) -> settle -> restore

An :class:`Operation` says what one attempt is — ``messages.create``, a resumable stream,
``count_tokens``, a Message Batches call — and which guards apply to it (``guards``, a tuple of
:mod:`convo._guards` objects in that order). :func:`run` does the rest for all of them: it
enters the guards (redaction, the cache, which may answer at once), then for each attempt
admits it (budget hold, rate limiter), carries it out, and settles it (cost, limiter, stats,
calibration) whatever its end — an answer, an error, or a cancellation (the flow is closed:
it settles synchronously, see ``_guards.settle_now``); the retry policy (tenacity, in
:class:`Attempts`) decides between attempts, with model fallback after repeated overloaded
answers. After success the guards leave in reverse order (stats, cache, restore).

This module and ``_guards`` / ``_context`` are the internal API the flows (``_calls``,
``_resume``, ``batch``) are written against; nothing else of theirs is shared.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import tenacity

from ._context import CallContext, headers_of, user_of
from ._credentials import scrub_credentials
from ._flow import Flow, Sleep
from ._guards import CallState, Guard, Ticket, settle_now
from ._sdk_errors import api_error
from .retry import is_spend_limit

__all__ = ["Attempted", "Attempts", "Cancelled", "Operation", "run"]


class Cancelled(Exception):
    """How ``client.stats`` names a call the caller stopped: a stream closed early, a timeout,
    a cancelled task (never raised: the cancellation itself propagates)."""


@dataclass(frozen=True, slots=True)
class Attempted:
    """What a successful attempt produced: its ``value`` and what settling it needs."""

    value: Any
    usage: Any = None
    headers: Any = None


class Operation:
    """One kind of request (see the module doc). Subclasses write :meth:`attempt`; the other
    hooks have defaults that suit a plain call."""

    #: The guards this operation passes, in the pipeline's order.
    guards: Sequence[Guard] = ()
    #: Whether it emits text as it arrives (a stream restores placeholders on the fly).
    streaming = False

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request

    def begin(self, call: CallState) -> None:
        """The guards have entered: ``call.request`` is the request as it leaves (redacted)."""
        self.request = call.request

    def kwargs(self, model: str) -> dict[str, Any]:
        """The next attempt's request, for ``model`` (the first or a fallback)."""
        return {**self.request, "model": model} if "model" in self.request else self.request

    def attempt(self, call: CallState, kwargs: dict[str, Any], ticket: Ticket) -> Flow:
        """One attempt: yields effects, returns an :class:`Attempted` or raises."""
        raise NotImplementedError  # pragma: no cover

    def failure(self, error: BaseException | None) -> tuple[Any, Any]:
        """The (partial usage, headers) of the attempt that just failed (``None``: cancelled)."""
        return None, headers_of(error) if error is not None else None

    def failed(self, call: CallState, error: Exception, attempts: Attempts) -> Flow:
        """After a failed attempt was settled: None to let the retry policy decide, or an
        error that ends the call at once (a stream that cannot go on)."""
        return None
        yield  # pragma: no cover

    def replay(self, call: CallState, hit: Any) -> Flow:
        """The call's value when the cache answered it."""
        return hit
        yield  # pragma: no cover

    def give_up(self, attempts: Attempts, error: BaseException) -> BaseException:
        """The error the caller gets when the retry policy gives up."""
        return attempts.error(error)


def _overloaded(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", None)
    return status == 529 or (status == 200 and getattr(exc, "type", None) == "overloaded_error")


class Attempts:
    """Tenacity's decisions for one call, plus model fallback and retry-budget bookkeeping."""

    def __init__(self, ctx: CallContext, model: str, start: float | None = None) -> None:
        self.ctx = ctx
        self.start = start  # on ctx.clock: when the call began, for the policy's max_elapsed
        self.spent = [0]
        # Tenacity's controller is built at the first failure: most calls succeed at once.
        self.retrying: tenacity.Retrying | None = None
        self.state: tenacity.RetryCallState | None = None
        self.count = 0
        self.models = [model, *(m for m in ctx.fallback_models if m != model)] if model else [model]
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


@functools.cache
def _having(guards: tuple[Guard, ...], hook: str) -> tuple[Guard, ...]:
    """The guards that do something at ``hook`` (the others are skipped on the hot path)."""
    return tuple(g for g in guards if getattr(type(g), hook) is not getattr(Guard, hook))


def _settle(
    ctx: CallContext, guards: tuple[Guard, ...], call: CallState, ticket: Ticket, usage: Any, headers: Any,
    error: BaseException | None,
) -> Flow:
    pending = tuple(reversed(_having(guards, "settle")))
    for i, guard in enumerate(pending):
        try:
            yield from guard.settle(ctx, call, ticket, usage, headers, error)
        except GeneratorExit:  # cancelled while settling: the guards still to go settle here, at once
            for rest in pending[i + 1 :]:
                settle_now(rest.settle(ctx, call, ticket, usage, headers, error), ctx)
            _abandon(ctx, guards, call, Cancelled(), ctx.clock())
            raise


def _settle_cancelled(ctx: CallContext, op: Operation, call: CallState, ticket: Ticket) -> None:
    """The flow was closed mid-attempt (the caller left, a timeout, a cancelled task): settle
    what the attempt reserved with the usage it had so far, and count the call as ended (the
    attempt's error is :class:`Cancelled`: it produced no answer)."""
    usage, headers = op.failure(None)
    for guard in reversed(_having(tuple(op.guards), "settle")):
        settle_now(guard.settle(ctx, call, ticket, usage, headers, Cancelled()), ctx)


def _abandon(ctx: CallContext, guards: tuple[Guard, ...], call: CallState, error: BaseException, now: float) -> None:
    for guard in _having(guards, "abandon"):
        guard.abandon(ctx, call, error, now)


def _leave(ctx: CallContext, guards: tuple[Guard, ...], call: CallState, value: Any) -> Flow:
    for guard in reversed(_having(guards, "leave")):
        value = yield from guard.leave(ctx, call, value)
    return value


def run(ctx: CallContext, op: Operation) -> Flow:
    """Carry out ``op`` through its guards and the retry policy; returns its value."""
    start = ctx.clock()
    guards = tuple(op.guards)
    call = CallState(op.request, start, user_of(op.request), op.streaming)
    for guard in _having(guards, "enter"):
        yield from guard.enter(ctx, call)
        if call.hit is not None:
            value = yield from op.replay(call, call.hit)
            return (yield from _leave(ctx, guards, call, value))
    op.begin(call)
    attempts = Attempts(ctx, call.request.get("model", ""), start)
    while True:
        try:
            wait = attempts.next()
        except Exception as exc:  # tenacity re-raises the last attempt's error, whatever it was: translated, chained
            error = op.give_up(attempts, exc)
            _abandon(ctx, guards, call, error, ctx.clock())
            raise error from exc
        if wait is not None:
            yield Sleep(wait)
            continue
        kwargs = op.kwargs(attempts.model)
        ticket = Ticket(attempts.model, call.user, kwargs)
        admitted = False
        try:
            for guard in _having(guards, "admit"):
                yield from guard.admit(ctx, call, ticket)
            admitted = True
            done = yield from op.attempt(call, kwargs, ticket)
        except GeneratorExit:
            _settle_cancelled(ctx, op, call, ticket)
            _abandon(ctx, guards, call, Cancelled(), ctx.clock())
            raise
        except Exception as exc:
            if not admitted:  # refused before it was sent (a budget): give back what was reserved, raise
                for guard in reversed(_having(guards, "settle")):
                    settle_now(guard.settle(ctx, call, ticket, None, None, None), ctx)
                raise
            usage, headers = op.failure(exc)
            yield from _settle(ctx, guards, call, ticket, usage, headers, exc)
            stop = yield from op.failed(call, exc, attempts)
            if stop is not None:
                _abandon(ctx, guards, call, stop, ctx.clock())
                raise stop from exc
            attempts.failed(exc)
            continue
        yield from _settle(ctx, guards, call, ticket, done.usage, done.headers, None)
        attempts.succeeded()
        return (yield from _leave(ctx, guards, call, done.value))
