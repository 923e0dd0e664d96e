"""The plain operations of the pipeline: ``messages.create``, ``count_tokens``, and the calls
of the Message Batches API (see ``_pipeline`` for the loop and the guards around them).

``create`` passes every guard. ``count_tokens`` is redacted (it counts the request ``create``
would send) and counted in the stats, but is free and has its own rate limits, so the budget,
the limiter and the cache leave it alone. A Message Batches call carries items that have been
through their own guards already (see ``batch``), so it is only retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._context import CallContext
from ._flow import Call, Flow, Next, Raw
from ._guards import ACCOUNTING, ALL, ATTEMPTS, COUNT_TRACING, REDACTION, CallState, Guard, Ticket
from ._pipeline import Attempted, Operation, run

__all__ = ["BatchResults", "MessageCall", "SDKCall", "api_call", "call_flow"]

#: ``count_tokens``: traced, redacted and counted, nothing else.
COUNTING: tuple[Guard, ...] = (COUNT_TRACING, REDACTION, ACCOUNTING, ATTEMPTS)


class MessageCall(Operation):
    """``messages.create`` (every guard) or ``messages.count_tokens`` (redaction, stats)."""

    def __init__(self, request: dict[str, Any], method: str = "create", guards: Sequence[Guard] | None = None) -> None:
        super().__init__(request)
        self.method = method
        self.guards = tuple(guards) if guards is not None else (ALL if method == "create" else COUNTING)

    def attempt(self, call: CallState, kwargs: dict[str, Any], ticket: Ticket) -> Flow:
        # Response headers feed the rate limiter; without one, the plain call is cheaper.
        raw = yield Call(self.method, kwargs, raw=ticket.limiter is not None)
        if isinstance(raw, Raw):
            return Attempted(raw.value, getattr(raw.value, "usage", None), raw.headers)
        return Attempted(raw, getattr(raw, "usage", None))


def call_flow(request: dict[str, Any], ctx: CallContext, method: str = "create", *, redacted: bool = False) -> Flow:
    """One SDK call through the pipeline; ``redacted``: the request has been redacted already
    (a batch item), so that guard is skipped."""
    guards = None
    if redacted:
        guards = tuple(g for g in (ALL if method == "create" else COUNTING) if g is not REDACTION)
    return run(ctx, MessageCall(request, method, guards))


class SDKCall(Operation):
    """Any other SDK method (``messages.batches.create``, ``.retrieve``, ``.cancel``), retried."""

    def __init__(self, method: str, kwargs: dict[str, Any]) -> None:
        super().__init__(kwargs)
        self.method = method

    def attempt(self, call: CallState, kwargs: dict[str, Any], ticket: Ticket) -> Flow:
        return Attempted((yield Call(self.method, kwargs)))


def api_call(method: str, kwargs: dict[str, Any], ctx: CallContext) -> Flow:
    """One Message Batches API call with the client's retry policy."""
    return run(ctx, SDKCall(method, kwargs))


class _Lines:
    """The results JSONL as a handle for the Next effect (a sync or an async iterator)."""

    def __init__(self, source: Any) -> None:
        self.iterator = aiter(source) if hasattr(source, "__aiter__") else iter(source)


class BatchResults(Operation):
    """Every result line of an ended batch, by ``custom_id``; a broken download starts over."""

    def __init__(self, batch_id: str) -> None:
        super().__init__({"message_batch_id": batch_id})

    def attempt(self, call: CallState, kwargs: dict[str, Any], ticket: Ticket) -> Flow:
        got: dict[str, Any] = {}
        lines = _Lines((yield Call("messages.batches.results", kwargs)))
        while (line := (yield Next(lines))) is not None:
            got[line.custom_id] = line.result
        return Attempted(got)
