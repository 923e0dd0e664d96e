"""Many requests at once: each retried on its own, results in input order, crash-safe.

>>> results = client.batch({"messages": [{"role": "user", "content": q}]} for q in questions)
>>> [r.text for r in results if r.ok]

Requests are pulled from the iterable only as slots free up (a window of ``concurrency``), so a
generator of a million requests costs memory for the window and the results, not for the input.
One failing item never stops the others: it becomes a :class:`Result` holding its error.

``checkpoint=path`` writes each success to disk as it arrives. Running the same call again after
a crash (even ``kill -9``) sends only the items that had not succeeded and loads the rest; failed
items are not final, so a re-run sends them again. Entries are keyed by the item's position and a
digest of its normalized request, so a different batch never gets another batch's answers.

``via="batches_api"`` sends the same requests through the Message Batches API instead (half the
price, up to 24 h of latency): it submits them (``custom_id`` = the index), polls with backoff,
downloads the results and maps them back in input order. With a checkpoint the batch id is
recorded as soon as it exists, so a restarted call resumes polling that batch.

Both ways go through the client's guards, in ``create``'s order. Each item is redacted before
anything is done with it (its digest, its place in a batch, its request). Through the Batches
API an item is then answered from the response cache when it can be; else its worst case is held
on the budget at batch prices before the batch is submitted (an item the budget cannot cover
fails alone with ``BudgetExceededError`` and is not sent), and its result is settled at batch
prices into the budget and ``client.stats`` (one request per item); holds that no result settled
are given back on any exit. Checkpoints store replies as the server wrote them, with
placeholders; the caller's results are restored. Both use the pipeline's guard objects
(``_guards``); the Batches API calls themselves go through its attempt loop (``_pipeline``).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import types
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass
from typing import Any

import anthropic

from ._calls import BatchResults, api_call, call_flow
from ._context import CallContext, user_of
from ._exceptions import (
    APIError,
    ConvoError,
    InvalidConfigError,
    InvalidInputError,
    NotFoundError,
    api_error,
)
from ._flow import Call, Flow, Gather, Now, Outcome, Sleep
from ._guards import ACCOUNTING, CACHE, COSTS, REDACTION, Ticket
from ._pipeline import run
from ._progress import OnProgress, Progress
from ._telemetry import carry, span
from .checkpoint import Checkpoint, canonical, digest

__all__ = ["Result", "batch_flow"]

log = logging.getLogger("convo")

#: The Message Batches API takes at most 100,000 requests and 256 MB per batch.
MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 200 * 1024 * 1024
POLL_FIRST, POLL_FACTOR, POLL_MAX = 1.0, 1.5, 60.0
#: ``error.type`` of an errored batch item -> the HTTP status it stands for.
_STATUS_OF = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Result:
    """One item of a batch: the ``message`` (an ``anthropic.types.Message``) or the ``error``.

    ``attempts`` counts the calls sent for it (0 if it never left, e.g. loaded from a checkpoint
    or rejected before sending); ``latency`` is seconds from its first attempt to its answer
    (for the Batches API: from the batch's creation to its end).
    """

    index: int
    message: Any = None
    error: BaseException | None = None
    attempts: int = 0
    latency: float = 0.0
    from_checkpoint: bool = False

    @property
    def ok(self) -> bool:
        """Whether the item succeeded (``error`` is None)."""
        return self.error is None

    @property
    def text(self) -> str:
        """The reply's text; raises the item's error if it failed."""
        if self.error is not None:
            raise self.error
        return "".join(b.text for b in self.message.content if b.type == "text")


def batch_flow(
    ctx: CallContext,
    requests: Iterable[Mapping[str, Any]],
    *,
    concurrency: int,
    checkpoint: Any = None,
    progress: bool = True,
    via: str = "messages",
    on_progress: OnProgress | None = None,
) -> Flow:
    """The whole batch as one flow (see the module doc); returns ``list[Result]`` in input order."""
    if via not in ("messages", "batches_api"):
        raise InvalidConfigError(f"via must be 'messages' or 'batches_api', got {via!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidConfigError(f"concurrency must be a positive int, got {concurrency!r}")
    if isinstance(requests, (str, bytes, Mapping)) or not isinstance(requests, Iterable):
        raise InvalidInputError("requests must be an iterable of request dicts, e.g. [{'messages': [...]}, ...]")
    total = len(requests) if isinstance(requests, Sized) else None
    store = Checkpoint(checkpoint) if checkpoint is not None else None
    bar = Progress(total, desc="batch", unit="req", bar=progress, leave=True, on_progress=on_progress)
    try:
        with span("batch", {"convo.batch.via": via, "convo.batch.size": -1 if total is None else total}):
            if via == "messages":
                return (yield from _via_messages(ctx, requests, concurrency, store, bar))
            return (yield from _via_batches_api(ctx, requests, store, bar))
    finally:
        bar.close()
        if store is not None:
            store.close()


# -- one request per item ---------------------------------------------------------------------


def _via_messages(ctx: CallContext, requests: Iterable[Any], concurrency: int, store: Checkpoint | None, bar: Any) -> Flow:
    keys: dict[int, str] = {}  # digests of the items in flight, for the checkpoint
    broken: list[BaseException] = []

    def flows() -> Iterable[Flow]:
        for index, item in enumerate(requests):
            try:
                sent, mapping = REDACTION.protect(ctx, _normalize(ctx, index, item))
            except ConvoError as exc:
                yield _ready((Result(index, error=exc), {}))
                continue
            if store is not None:
                key = keys[index] = digest(sent)
                saved = store.get(str(index), key)
                if saved is not None:
                    keys.pop(index)
                    yield _ready((_load(index, saved), mapping))
                    continue
            yield carry(_item_flow(index, sent, mapping, ctx))  # its call spans go under the batch's

    def on_done(index: int, outcome: Outcome) -> None:
        result = outcome.value[0] if outcome.ok else Result(index, error=outcome.error)
        key = keys.pop(index, None)
        if store is not None and key is not None and result.ok and not broken:
            try:  # the reply as the server wrote it: placeholders, never the restored values
                store.put(str(index), key, _dump(result))
            except (sqlite3.Error, OSError) as exc:  # disk full, file locked or gone: the results are still good
                broken.append(exc)
                log.warning("convo: cannot write the checkpoint %s (%s); going on without it", store.path, exc)
        bar.update(1)

    outcomes = yield Gather(flows(), concurrency, on_done)
    return [_restored(*o.value) if o.ok else Result(i, error=o.error) for i, o in enumerate(outcomes)]


def _item_flow(index: int, sent: dict[str, Any], mapping: dict[str, str], ctx: CallContext) -> Flow:
    """``call_flow`` for one (redacted) item, counting its attempts and turning a failure into a
    Result; returns it with the mapping that restores its reply."""
    start = yield Now()
    inner = call_flow(sent, ctx, redacted=True)
    attempts, message, error = 0, None, None
    try:
        effect = next(inner)
        while True:
            attempts += isinstance(effect, Call)
            try:
                got = yield effect
            except Exception as exc:  # noqa: BLE001 -- any failure of the call goes back into call_flow, whose retry policy decides
                effect = inner.throw(exc)
            else:
                effect = inner.send(got)
    except StopIteration as stop:
        message = stop.value
    except Exception as exc:  # noqa: BLE001 -- one item's failure (whatever call_flow raised) is its Result, never the batch's
        error = exc
    finally:
        inner.close()
    return Result(index, message, error, attempts, (yield Now()) - start), mapping


def _restored(result: Result, mapping: dict[str, str]) -> Result:
    """``result`` with the placeholders of its reply put back, for the caller."""
    if result.message is None or not mapping:
        return result
    return dataclasses.replace(result, message=REDACTION.restore(result.message, mapping))


def _ready(value: tuple[Result, dict[str, str]]) -> Flow:
    """A flow that is already done (an item loaded from the checkpoint or rejected up front)."""
    return value
    yield  # pragma: no cover - makes this a generator


def _normalize(ctx: CallContext, index: int, item: Any, *, batch: bool = False) -> dict[str, Any]:
    """An item (``client.create``'s keyword arguments as a dict) as the request that is sent;
    ``batch``: it goes through the Message Batches API (checked against that API's caps)."""
    if not isinstance(item, Mapping):
        raise InvalidInputError(
            f"request {index} is a {type(item).__name__}; each request must be a dict such as "
            "{'messages': [{'role': 'user', 'content': 'Hi'}], 'max_tokens': 256}"
        )
    params = dict(item)
    if "messages" not in params:
        raise InvalidInputError(f"request {index} has no 'messages'; each request needs its messages")
    messages = params.pop("messages")
    system = params.pop("system", None)
    max_tokens = params.pop("max_tokens", 1024)
    model = params.pop("model", None)
    request: dict[str, Any] = ctx.build(messages, system, max_tokens, model, params, batch=batch)
    return request


def _dump(result: Result) -> dict[str, Any]:
    return {"message": result.message.model_dump(mode="json"), "attempts": result.attempts, "latency": result.latency}


def _load(index: int, saved: dict[str, Any]) -> Result:
    message = anthropic.types.Message.model_validate(saved["message"])
    return Result(index, message, None, saved["attempts"], saved["latency"], from_checkpoint=True)


# -- through the Message Batches API ------------------------------------------------------------


def _via_batches_api(ctx: CallContext, requests: Iterable[Any], store: Checkpoint | None, bar: Any) -> Flow:
    """Each item redacted and its worst case held (batch prices) before its batch is submitted;
    each result settled into the budget and the stats, then restored (see ``_guards``)."""
    results: list[Result | None] = []
    open_: dict[int, tuple[Ticket, dict[str, str], str | None]] = {}  # held, not yet settled
    submitted: list[tuple[Any, list[tuple[int, str]]]] = []  # (batch, [(index, digest)])
    chunk: list[tuple[int, str, dict[str, Any]]] = []
    size = 0
    try:
        for index, item in enumerate(requests):
            results.append(None)
            try:
                sent, mapping = REDACTION.protect(ctx, _normalize(ctx, index, item, batch=True))
                text = canonical(sent)
                key = digest(text)
                saved = store.get(str(index), key) if store is not None else None
                cache_key = CACHE.key(ctx, sent, user_of(sent)) if saved is None else None
                cached = yield from CACHE.lookup(ctx, cache_key)
                if saved is None and cached is None:
                    ticket = Ticket(sent["model"], user_of(sent), sent)
                    COSTS.hold(ctx, ticket, batch=True)
                    open_[index] = (ticket, mapping, cache_key)
            except ConvoError as exc:  # unusable, or over the budget: it fails alone, unsent
                results[index] = Result(index, error=exc)
                bar.update(1)
                continue
            if saved is not None or cached is not None:
                found = _load(index, saved) if saved is not None else Result(index, cached)
                results[index] = _restored(found, mapping)
                bar.update(1)
                continue
            chunk.append((index, key, sent))
            size += len(text) + 64
            if len(chunk) >= MAX_BATCH_REQUESTS or size >= MAX_BATCH_BYTES:
                submitted.append(((yield from _submit(chunk, store, ctx)), [(i, k) for i, k, _ in chunk]))
                chunk, size = [], 0
        if chunk:
            submitted.append(((yield from _submit(chunk, store, ctx)), [(i, k) for i, k, _ in chunk]))
        del chunk
        for batch, items in submitted:
            batch = yield from _wait(batch, ctx, bar)
            got = yield from run(ctx, BatchResults(batch.id))
            latency = (batch.ended_at - batch.created_at).total_seconds() if batch.ended_at else 0.0
            done = []
            for index, key in items:
                result = _from_batch(index, got.pop(str(index), None), latency, batch.id)
                ticket, mapping, cache_key = open_.pop(index)
                usage = getattr(result.message, "usage", None) if result.ok else None
                COSTS.settle_item(ctx, ticket, usage)
                ACCOUNTING.item_finished(ctx, ticket, usage, result.error, latency)
                if result.ok:  # the reply as the server wrote it: placeholders, never restored values
                    done.append((str(index), key, _dump(result)))
                    yield from CACHE.store(ctx, cache_key, result.message)
                results[index] = _restored(result, mapping)
            if store is not None:  # all of a batch's results or none; the batch is then consumed
                store.put_many(done, meta={_batch_name(items): None})
            bar.update(len(items))
    finally:  # an error, a cancellation: what no result settled is given back to the budget
        for ticket, _, _ in open_.values():
            COSTS.release(ticket)
    return results


def _submit(chunk: list[tuple[int, str, dict[str, Any]]], store: Checkpoint | None, ctx: CallContext) -> Flow:
    """Create a batch for ``chunk``, or resume the one created for exactly these items before."""
    name = _batch_name([(i, k) for i, k, _ in chunk])
    batch_id = store.meta(name) if store is not None else None
    if batch_id is not None:
        try:
            return (yield from api_call("messages.batches.retrieve", {"message_batch_id": batch_id}, ctx))
        except NotFoundError:  # deleted, or another workspace: submit again
            log.warning("convo: batch %s from the checkpoint is gone; submitting the requests again", batch_id)
    requests = [{"custom_id": str(index), "params": request} for index, _, request in chunk]
    batch = yield from api_call("messages.batches.create", {"requests": requests}, ctx)
    if store is not None:
        store.set_meta(name, batch.id)
    return batch


def _batch_name(items: list[tuple[int, str]]) -> str:
    """The checkpoint's name for the batch holding exactly these (index, digest) items."""
    return "batches_api:" + digest(items)


def _wait(batch: Any, ctx: CallContext, bar: Any) -> Flow:
    """Poll until the batch has ended, waiting longer each time (the client's sleep)."""
    delay = POLL_FIRST
    while batch.processing_status != "ended":
        bar.set_postfix_str(f"{batch.id} {batch.processing_status}", refresh=False)
        yield Sleep(delay)
        delay = min(delay * POLL_FACTOR, POLL_MAX)
        batch = yield from api_call("messages.batches.retrieve", {"message_batch_id": batch.id}, ctx)
    return batch


def _from_batch(index: int, result: Any, latency: float, batch_id: str) -> Result:
    kind = getattr(result, "type", None)
    if kind == "succeeded":
        return Result(index, result.message, None, 1, latency)
    if kind == "errored":
        body = result.error
        err = getattr(body, "error", None)
        error_type = getattr(err, "type", None) or "api_error"
        detail = types.SimpleNamespace(
            status_code=_STATUS_OF.get(error_type, 500),
            type=error_type,
            api_message=f"batch {batch_id}, custom_id {index}: {getattr(err, 'message', '')}",
            request_id=getattr(body, "request_id", None),
        )
        return Result(index, None, api_error(detail), 1, latency)
    what = kind if kind in ("canceled", "expired") else "missing from the results"
    error = APIError(
        f"request {index} of batch {batch_id} was {what} and did not run; run the batch again "
        "(with checkpoint= only the items that did not succeed are sent)",
        error_type=kind or "missing",
    )
    return Result(index, None, error, 1 if kind else 0, latency)

