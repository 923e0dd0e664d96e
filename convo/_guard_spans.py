"""The two guards that trace a call (see ``_guards``): the span of the whole call and a child
span per attempt, recorded by ``_call_spans``; both step aside when nothing records telemetry."""

from __future__ import annotations

from typing import Any

from . import _call_spans as telemetry
from ._context import CallContext
from ._flow import Flow
from ._guard_base import CallState, Guard, Ticket

__all__ = ["AttemptSpans", "Tracing"]


class Tracing(Guard):
    """First in, last out: the OpenTelemetry span and metrics of the whole call (``_telemetry``);
    steps aside at once when nothing would record them."""

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def enter(self, ctx: CallContext, call: CallState) -> Flow:
        telemetry.enter_call(self.operation, ctx, call)
        return
        yield  # pragma: no cover

    def leave(self, ctx: CallContext, call: CallState, value: Any) -> Flow:
        if call.trace is not None:
            telemetry.end_call(ctx, call, value, None)
        return value
        yield  # pragma: no cover

    def abandon(self, ctx: CallContext, call: CallState, error: BaseException, now: float) -> None:
        if call.trace is not None:
            telemetry.end_call(ctx, call, None, error)


class AttemptSpans(Guard):
    """Last in, first to settle: a child span per attempt, around exactly what was sent (after
    the budget and the limiter admitted it); the SDK's own span nests under it."""

    def admit(self, ctx: CallContext, call: CallState, ticket: Ticket) -> Flow:
        if call.trace is not None:
            telemetry.start_attempt(ctx, call, ticket)
        return
        yield  # pragma: no cover

    def settle(
        self, ctx: CallContext, call: CallState, ticket: Ticket, usage: Any, headers: Any, error: BaseException | None
    ) -> Flow:
        if call.trace is not None:
            telemetry.end_attempt(ctx, call, ticket, usage, error)
        return
        yield  # pragma: no cover
