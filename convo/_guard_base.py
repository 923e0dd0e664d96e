"""What every guard of the request pipeline shares (see ``_guards``): the state of one call on its
way through, what one attempt reserved, and the hooks a guard may implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._context import CallContext
from ._flow import Flow
from .budget import Budget, Hold
from .ratelimit import RateLimiter, Reservation
from .redact import Restorer
from .tokens import calibration_of

__all__ = ["CACHED_STOPS", "ESTIMATE_MARGIN", "CallState", "Guard", "Ticket", "estimate"]

#: Worst-case budgeting adds this margin to the input estimate (the estimate's error is < 10%).
ESTIMATE_MARGIN = 1.25
#: Replies worth caching; a paused or refused turn is not an answer to replay.
CACHED_STOPS = frozenset({"end_turn", "stop_sequence", "tool_use", "max_tokens"})


@dataclass(slots=True)
class CallState:
    """One call on its way through the pipeline."""

    request: dict[str, Any]  # as it leaves the process: redacted once Redacting has entered
    start: float
    user: str | None = None
    streaming: bool = False
    mapping: dict[str, str] = field(default_factory=dict)
    restorer: Restorer | None = None  # streams: restores placeholders in text as it arrives
    cache_key: str | None = None
    hit: Any = None  # the cached reply that answers the call
    answered_by: str | None = None  # the model of the attempt that succeeded (a fallback, maybe)
    ttft: float | None = None
    trace: Any = None  # the call's span and metrics, when OpenTelemetry records them (_telemetry)


@dataclass(slots=True)
class Ticket:
    """What one attempt (or one batch item) reserved, and from what.

    The limiter and budget it reserved from are kept: the attempt settles with them even if the
    client's ``limits`` or ``budget`` is assigned meanwhile.
    """

    model: str
    user: str | None = None
    request: dict[str, Any] | None = None  # as sent, to compare the estimate with the usage
    estimate: int | None = None  # convo's uncorrected estimate of its input tokens
    reservation: Reservation | None = None
    hold: Hold | None = None
    limiter: RateLimiter | None = None
    spend: Budget | None = None
    trace: Any = None  # the attempt's span (_telemetry)


class Guard:
    """A step of the pipeline (see the module doc); every hook defaults to nothing."""

    def enter(self, ctx: CallContext, call: CallState) -> Flow:
        return
        yield  # pragma: no cover - makes this a generator

    def admit(self, ctx: CallContext, call: CallState, ticket: Ticket) -> Flow:
        return
        yield  # pragma: no cover

    def settle(
        self, ctx: CallContext, call: CallState, ticket: Ticket, usage: Any, headers: Any, error: BaseException | None
    ) -> Flow:
        return
        yield  # pragma: no cover

    def leave(self, ctx: CallContext, call: CallState, value: Any) -> Flow:
        return value
        yield  # pragma: no cover

    def abandon(self, ctx: CallContext, call: CallState, error: BaseException, now: float) -> None:
        return None


def estimate(ctx: CallContext, ticket: Ticket) -> float:
    """The attempt's input tokens as budgets and limits see them: calibrated for its model."""
    if ticket.estimate is None:
        assert ticket.request is not None
        ticket.estimate = ctx.estimate_input(ticket.request)
    cal = calibration_of(ctx.counter)
    return cal.apply(ticket.model, ticket.estimate) if cal is not None else ticket.estimate
