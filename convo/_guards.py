"""The guards of ``create`` for requests that do not go through ``call_flow`` one by one: the
items of a Message Batch, and replies kept in a checkpoint.

``call_flow`` redacts a request, holds its worst case on the budget, waits for the rate limiter,
sends it, settles the cost into the budget and ``client.stats``, and restores the reply. A batch
item is sent inside one ``POST /v1/messages/batches`` and answered hours later, so the same steps
run at other moments, in the same order, from the same pieces of ``_calls``:

1. :func:`protect` as the item is read: the request redacted (``_calls._protect``), before it
   is digested for the checkpoint, put in a batch or sent; the response cache is asked next
   (``_calls._cache_get``, by ``batch``); then :func:`hold` before the batch is submitted: its
   worst case held on the budget at batch prices (the estimate with ``ESTIMATE_MARGIN`` at the
   highest input rate, plus ``max_tokens`` of output, times the price table's
   ``batch_discount``). A refused item never leaves; the others go on.
2. :func:`settle` for each result: the hold replaced by the cost of its usage at batch prices,
   the cost and the tokens counted in ``client.stats`` (one request per item), the estimate fed
   to the counter's calibration. :func:`release` gives back every hold still open on any other
   exit (an error, a cancellation); a killed process holds nothing.
3. :func:`restore` the reply for the caller; checkpoints store the reply as the server wrote it,
   with placeholders, exactly as the response cache does.

The client's rate limiter is not drawn from: it models the Messages API's limits (requests,
input and output tokens per minute), and the Message Batches API has its own limits (HTTP
requests to its endpoints and requests waiting in the processing queue), which its 429s and the
retry policy handle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._calls import ESTIMATE_MARGIN, CallContext, _calibrate, _protect, _restore, _Ticket, _user_of
from .prices import PriceTable, UnknownModelError
from .tokens import calibration_of

__all__ = ["Ticket", "batch_cost", "hold", "protect", "release", "restore", "settle"]

#: What one item holds until its result settles it: model, user, budget hold, request as sent.
Ticket = _Ticket


def protect(ctx: CallContext, request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request as it may leave the process (redacted), and the mapping that restores replies."""
    return _protect(ctx, request)


def restore(message: Any, mapping: Mapping[str, str]) -> Any:
    """A reply with the placeholders of ``mapping`` put back (the same reply when there are none)."""
    return _restore(message, dict(mapping))


def _prices(ctx: CallContext) -> PriceTable:
    return ctx.prices if ctx.prices is not None else PriceTable.default()


def hold(ctx: CallContext, sent: dict[str, Any]) -> Ticket:
    """Before a (redacted) batch item is submitted: hold its worst case at batch prices.

    Raises :class:`~convo.BudgetExceededError` (nothing held) when the budget cannot cover it.
    """
    model = sent["model"]
    ticket = _Ticket(model, _user_of(sent), request=sent)
    if ctx.spend is not None:
        ticket.estimate = ctx.estimate_input(sent)
        cal = calibration_of(ctx.counter)
        estimate = cal.apply(model, ticket.estimate) if cal is not None else ticket.estimate
        prices = _prices(ctx)
        worst = prices.worst_case(model, estimate * ESTIMATE_MARGIN, sent.get("max_tokens", 0)) * prices.batch_discount
        ticket.spend = ctx.spend  # settled with this one even if client.budget is reassigned
        ticket.hold = ctx.spend.reserve(worst, ticket.user)
    return ticket


def batch_cost(ctx: CallContext, usage: Any, model: str) -> float | None:
    """USD for a batch result's ``usage``, at batch prices (None: the model has no price)."""
    if usage is None:
        return None
    try:
        return _prices(ctx).cost(usage, model, batch=True)
    except UnknownModelError:
        return None


def settle(ctx: CallContext, ticket: Ticket, message: Any, error: BaseException | None, latency: float) -> None:
    """After a batch item's result arrived: charge its cost, count it, release its hold."""
    usage = getattr(message, "usage", None) if error is None else None
    cost = batch_cost(ctx, usage, ticket.model)
    if ticket.hold is not None and ticket.spend is not None:
        hold, ticket.hold = ticket.hold, None
        ticket.spend.settle(hold, cost or 0.0)
    if usage is not None:
        _calibrate(ctx, ticket, usage)
    if cost:
        ctx.stats.charge(cost, ticket.user)
    ctx.stats.finished(
        latency=latency, usage=usage, user=ticket.user, error=None if error is None else type(error).__name__
    )


def release(ctx: CallContext, ticket: Ticket) -> None:
    """Give back a hold that no result will settle (nothing is charged or counted)."""
    if ticket.hold is not None and ticket.spend is not None:
        hold, ticket.hold = ticket.hold, None
        ticket.spend.settle(hold, 0.0)
