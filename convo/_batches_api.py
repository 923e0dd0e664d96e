"""The Message Batches API as a job: submit now, collect later, send again what failed.

A job is its items — each redacted, its worst case held on the budget at batch prices — and the
batches that carry them (``custom_id`` = the item's index). ``start`` submits; ``collect`` waits
with backoff (at most ``max_wait`` seconds of sleeping in all, then :class:`BatchTimeoutError`),
downloads, settles each item into the budget and the stats and sends again, in a new batch or
one by one through ``messages.create``, the items that ``errored`` with a passing error (a 429,
a 5xx, an overload) or ``expired`` (at most ``retries`` times each). Every item ends with one
result: a reply or a typed error; none is settled twice, none is lost.

With a checkpoint, everything a job needs is on disk: each redacted request (placeholders, never
the values they stand for), the ids of its batches the moment they exist, every result as it is
settled. ``load`` rebuilds the job in another process (holding anew what its unsettled items may
cost); ``by_ids`` rebuilds one from batch ids alone (the requests unknown: results are settled
at their cost when they arrive, and failed items cannot be sent again).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._batch_lines import from_batch, index_of, missing, passing
from ._call_spans import tally_result
from ._calls import BatchResults, api_call
from ._context import CallContext, user_of
from ._exceptions import BatchTimeoutError, ConvoError, InvalidConfigError, NotFoundError
from ._flow import Flow, Gather, Outcome, Sleep
from ._guards import ACCOUNTING, CACHE, COSTS, REDACTION, Ticket
from ._pipeline import run
from .batch import Result, dump, item_flow, load, normalize, restored
from .budget import BudgetExceededError, Hold
from .checkpoint import Checkpoint, canonical, digest

__all__ = ["BatchTimeoutError", "Item", "Job", "Options", "by_ids", "cancel", "collect", "load_job", "start", "status"]

log = logging.getLogger("convo")

#: The Message Batches API takes at most 100,000 requests and 256 MB per batch.
MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 200 * 1024 * 1024
POLL_FIRST, POLL_FACTOR, POLL_MAX = 1.0, 1.5, 60.0
#: A batch ends within 24 h of its creation (then its unfinished requests expire); waiting for a
#: batch and one resubmission of what expired fits in this.
MAX_WAIT = 48 * 3600.0
JOB = "batches_api:job"
RETRY_VIA = ("batches_api", "messages")


@dataclass(frozen=True)
class Options:
    """How ``collect`` waits and what it does with failed items."""

    max_wait: float = MAX_WAIT
    retries: int = 2
    retry_via: str = "batches_api"
    concurrency: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.max_wait, bool) or not isinstance(self.max_wait, (int, float)) or self.max_wait < 0:
            raise InvalidConfigError(f"max_wait must be seconds >= 0, got {self.max_wait!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise InvalidConfigError(f"retries must be an int >= 0 (0: keep errors as they are), got {self.retries!r}")
        if self.retry_via not in RETRY_VIA:
            raise InvalidConfigError(f"retry_via must be 'batches_api' or 'messages', got {self.retry_via!r}")


@dataclass(slots=True)
class Item:
    """One item on its way through the Batches API; ``sent`` is None when it is not known."""

    index: int
    key: str
    sent: dict[str, Any] | None
    ticket: Ticket
    mapping: dict[str, str] = field(default_factory=dict)
    cache_key: str | None = None
    tries: int = 0  # the batches that carried it


@dataclass(slots=True)
class Sent:
    """One submitted batch; ``indices`` is None for a batch known by its id alone."""

    id: str
    indices: list[int] | None
    batch: Any = None  # the MessageBatch last retrieved
    done: bool = False


@dataclass
class Job:
    """The state of one job (see the module doc)."""

    ctx: CallContext
    path: Any = None  # the checkpoint file, or None
    results: list[Result | None] = field(default_factory=list)
    items: dict[int, Item] = field(default_factory=dict)  # not final yet
    keys: list[str | None] = field(default_factory=list)  # each index's digest (None: never sent)
    sent: list[Sent] = field(default_factory=list)
    resend: list[int] = field(default_factory=list)  # loaded between a failure and its resubmission

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.sent]

    def open(self) -> Checkpoint | None:
        return Checkpoint(self.path) if self.path is not None else None

    def record(self) -> dict[str, Any]:
        """What ``load_job`` needs, for the checkpoint."""
        pending = [[s.id, [[i, self.keys[i]] for i in s.indices or ()]] for s in self.sent if not s.done]
        return {"total": len(self.results), "keys": self.keys, "batches": pending}

    def release(self) -> None:
        """Give back the holds that no result settled (an error, a cancellation, ``close``)."""
        for item in self.items.values():
            COSTS.release(item.ticket)


def _batch_name(items: Iterable[tuple[int, str | None]]) -> str:
    """The checkpoint's name for the batch holding exactly these (index, digest) items."""
    return "batches_api:" + digest([list(pair) for pair in items])


# -- submitting ---------------------------------------------------------------------------------


def start(ctx: CallContext, requests: Iterable[Any], path: Any, bar: Any) -> Flow:
    """Redact, hold and submit every item (or resume the batches a checkpoint names); returns the
    :class:`Job`. Items loaded from the checkpoint or the response cache, or refused (unusable,
    over the budget), are final at once."""
    job = Job(ctx, path)
    store = job.open()
    chunk: list[int] = []
    size = 0
    try:
        for index, item in enumerate(requests):
            job.results.append(None)
            job.keys.append(None)
            try:
                sent, mapping = REDACTION.protect(ctx, normalize(ctx, index, item, batch=True))
                text = canonical(sent)
                key = digest(text)
                saved = store.get(str(index), key) if store is not None else None
                cache_key = CACHE.key(ctx, sent, user_of(sent)) if saved is None else None
                cached = yield from CACHE.lookup(ctx, cache_key)
                if saved is None and cached is None:
                    ticket = Ticket(sent["model"], user_of(sent), sent)
                    COSTS.hold(ctx, ticket, batch=True)
                    job.items[index] = Item(index, key, sent, ticket, mapping, cache_key)
            except ConvoError as exc:  # unusable, or over the budget: it fails alone, unsent
                job.results[index] = Result(index, error=exc)
                bar.update(1)
                continue
            job.keys[index] = key
            if saved is not None or cached is not None:
                found = load(index, saved) if saved is not None else Result(index, cached)
                if store is not None and saved is None:  # so that a resumed job has it too
                    store.put(str(index), key, dump(found))
                job.results[index] = restored(found, mapping)
                bar.update(1)
                continue
            chunk.append(index)
            size += len(text) + 64
            if len(chunk) >= MAX_BATCH_REQUESTS or size >= MAX_BATCH_BYTES:
                yield from _submit(job, chunk, store)
                chunk, size = [], 0
        if chunk:
            yield from _submit(job, chunk, store)
        if store is not None:
            store.set_meta(JOB, job.record())
    except BaseException:
        job.release()
        raise
    finally:
        if store is not None:
            store.close()
    return job


def _submit(job: Job, indices: list[int], store: Checkpoint | None) -> Flow:
    """Create a batch for these items, or resume the one a checkpoint names for exactly them."""
    ctx = job.ctx
    name = _batch_name((i, job.keys[i]) for i in indices)
    batch_id = store.meta(name) if store is not None else None
    batch = None
    if batch_id is not None:
        try:
            batch = yield from api_call("messages.batches.retrieve", {"message_batch_id": batch_id}, ctx)
        except NotFoundError:  # deleted, or another workspace: submit again
            log.warning("convo: batch %s from the checkpoint is gone; submitting the requests again", batch_id)
    if batch is None:
        if store is not None:  # the requests first, so that a job resumed from the file can hold and resend them
            store.put_many((f"request:{i}", job.items[i].key, job.items[i].sent) for i in indices)
        requests = [{"custom_id": str(i), "params": job.items[i].sent} for i in indices]
        batch = yield from api_call("messages.batches.create", {"requests": requests}, ctx)
    for i in indices:
        job.items[i].tries += 1
    job.sent.append(Sent(batch.id, list(indices), batch))
    if store is not None:
        store.put_many((), meta={name: batch.id, JOB: job.record()})


# -- resuming -----------------------------------------------------------------------------------


def load_job(ctx: CallContext, path: Any) -> Job:
    """The job a checkpoint describes; its unsettled items hold their worst case anew."""
    job = Job(ctx, path)
    with Checkpoint(path) as store:
        record = store.meta(JOB)
        if record is None:
            raise InvalidConfigError(
                f"{str(path)!r} holds no Message Batches job; pass the checkpoint given to "
                "client.batch(..., via='batches_api', checkpoint=...), or a batch id"
            )
        job.keys = list(record["keys"])
        job.results = [None] * int(record["total"])
        for batch_id, pairs in record["batches"]:
            indices = []
            for index, key in pairs:
                sent = store.get(f"request:{index}", key)
                if sent is None:
                    raise InvalidConfigError(f"{str(path)!r} lacks request {index} of batch {batch_id}; it is damaged")
                ticket = Ticket(sent["model"], user_of(sent), sent)
                try:
                    COSTS.hold(ctx, ticket, batch=True)
                except BudgetExceededError:  # sent already: its cost is settled when it arrives
                    _hold_nothing(ctx, ticket)
                job.items[index] = Item(index, key, sent, ticket, {}, CACHE.key(ctx, sent, ticket.user), tries=1)
                indices.append(index)
            job.sent.append(Sent(batch_id, indices))
        for index, key in enumerate(job.keys):
            if index in job.items:
                continue
            saved = store.get(str(index), key) if key is not None else None
            sent = store.get(f"request:{index}", key) if key is not None and saved is None else None
            if saved is not None:
                job.results[index] = load(index, saved)
            elif sent is not None and key is not None:  # it failed and was to be sent again
                ticket = Ticket(sent["model"], user_of(sent), sent)
                job.items[index] = Item(index, key, sent, ticket, {}, CACHE.key(ctx, sent, ticket.user), tries=1)
                job.resend.append(index)
            else:
                job.results[index] = Result(index, error=InvalidConfigError(
                    f"request {index} was not sent: it failed before submission in the run that made this job "
                    "(an unusable request, or over the budget)"
                ))
    return job


def by_ids(ctx: CallContext, ids: Sequence[str]) -> Job:
    """A job known by its batch ids alone (items appear with the results)."""
    job = Job(ctx)
    job.sent = [Sent(batch_id, None) for batch_id in ids]
    return job


def _hold_nothing(ctx: CallContext, ticket: Ticket) -> None:
    """A hold of 0 on the budget, so that the item's cost is settled into it when it arrives."""
    if ctx.spend is not None:
        ticket.spend, ticket.hold = ctx.spend, Hold(0.0, ticket.user)


# -- waiting and collecting -----------------------------------------------------------------------


def status(job: Job) -> Flow:
    """Retrieve every batch not yet collected; returns them (``MessageBatch`` objects)."""
    for s in job.sent:
        if not s.done:
            s.batch = yield from api_call("messages.batches.retrieve", {"message_batch_id": s.id}, job.ctx)
    return [s.batch for s in job.sent]


def cancel(job: Job) -> Flow:
    """Ask the API to cancel every batch still running; returns them."""
    for s in job.sent:
        if not s.done:
            s.batch = yield from api_call("messages.batches.cancel", {"message_batch_id": s.id}, job.ctx)
    return [s.batch for s in job.sent]


def collect(job: Job, options: Options, bar: Any) -> Flow:
    """Wait for every batch, settle each result, send failed items again; the results in order."""
    waited = [0.0]
    again, job.resend = job.resend, []
    try:
        while True:
            pending = [s for s in job.sent if not s.done]
            if not pending and not again:
                break
            for s in pending:
                yield from _wait(job, s, options, waited, bar)
                again += yield from _settle(job, s, options, bar)
            if not again:
                continue
            if options.retry_via == "messages":
                yield from _send_one_by_one(job, again, options, bar)
                again = []
                continue
            fresh = []
            for index in again:  # each resubmission holds its worst case again
                item = job.items[index]
                try:
                    if item.ticket.hold is None:  # held already if an earlier submission of it failed
                        COSTS.hold(job.ctx, item.ticket, batch=True)
                except BudgetExceededError as exc:
                    _final(job, index, Result(index, error=exc), bar)
                    continue
                fresh.append(index)
            again = fresh
            if fresh:
                store = job.open()
                try:
                    yield from _submit(job, fresh, store)
                finally:
                    if store is not None:
                        store.close()
            again = []
    except BaseException:  # a timeout, a cancellation: what was to be sent again still is, next time
        job.resend = [i for i in again if i in job.items]
        raise
    size = max((len(job.results), *(i + 1 for i in job.items)), default=0)
    job.results += [None] * (size - len(job.results))
    return [r if r is not None else Result(i, error=missing(i, "the job", None)) for i, r in enumerate(job.results)]


def _wait(job: Job, s: Sent, options: Options, waited: list[float], bar: Any) -> Flow:
    """Poll ``s`` until it has ended, each wait longer, within ``max_wait`` in all."""
    batch = s.batch  # fresh from create or retrieve in this process, or None
    if batch is None:
        batch = yield from api_call("messages.batches.retrieve", {"message_batch_id": s.id}, job.ctx)
    delay = POLL_FIRST
    while batch.processing_status != "ended":
        left = options.max_wait - waited[0]
        if left <= 0:
            raise BatchTimeoutError(
                f"batch {s.id} is still {batch.processing_status} after {waited[0]:.0f} s of waiting (max_wait="
                f"{options.max_wait:g}); it goes on at Anthropic: call results() again, or BatchJob.resume("
                f"{s.id!r}, client=...) later",
                batch_ids=job.ids, waited=waited[0],
            )
        bar.set_postfix_str(f"{s.id} {batch.processing_status}", refresh=False)
        step = min(delay, left)
        yield Sleep(step)
        waited[0] += step
        delay = min(delay * POLL_FACTOR, POLL_MAX)
        batch = yield from api_call("messages.batches.retrieve", {"message_batch_id": s.id}, job.ctx)
    s.batch = batch


def _settle(job: Job, s: Sent, options: Options, bar: Any) -> Flow:
    """Download an ended batch and settle each of its items; returns the items to send again."""
    ctx = job.ctx
    got = yield from run(ctx, BatchResults(s.id))
    batch = s.batch
    latency = (batch.ended_at - batch.created_at).total_seconds() if batch.ended_at else 0.0
    if s.indices is None:  # known by id alone: the items are what the results name
        s.indices = sorted(index_of(custom_id, s.id) for custom_id in got)
    done: list[tuple[str, str, Any]] = []
    again: list[int] = []
    for index in s.indices:
        result = from_batch(index, got.pop(str(index), None), latency, s.id)
        item = job.items.get(index)
        if item is None:  # a batch known by id: nothing held, the cost is settled as it is
            model = getattr(result.message, "model", None) or ""
            item = job.items[index] = Item(index, "", None, Ticket(model))
            _hold_nothing(ctx, item.ticket)
        if item.tries > 1:  # sent in more than one batch: count them all
            result = dataclasses.replace(result, attempts=item.tries)
        usage = getattr(result.message, "usage", None) if result.ok else None
        cost = COSTS.settle_item(ctx, item.ticket, usage)
        if result.ok:
            tally_result(result.message, cost)
        ACCOUNTING.item_finished(ctx, item.ticket, usage, result.error, latency)
        if not result.ok and item.sent is not None and item.tries <= options.retries and passing(result.error):
            again.append(index)
            continue
        if result.ok:  # the reply as the server wrote it: placeholders, never restored values
            done.append((str(index), item.key, dump(result)))
            yield from CACHE.store(ctx, item.cache_key, result.message)
        _final(job, index, restored(result, item.mapping), bar)
    s.done = True
    store = job.open()
    if store is not None:  # all of a batch's results or none; the batch is then consumed
        try:
            name = _batch_name((i, job.keys[i] if i < len(job.keys) else None) for i in s.indices)
            store.put_many(done, meta={name: None, JOB: job.record()})
        finally:
            store.close()
    return again


def _final(job: Job, index: int, result: Result, bar: Any) -> None:
    if index >= len(job.results):
        job.results += [None] * (index + 1 - len(job.results))
    job.results[index] = result
    job.items.pop(index, None)
    bar.update(1)


def _send_one_by_one(job: Job, indices: list[int], options: Options, bar: Any) -> Flow:
    """Failed items through ``messages.create`` (every guard, sync prices), concurrently."""
    store = job.open()

    def flows() -> Iterable[Flow]:
        for index in indices:
            item = job.items[index]
            assert item.sent is not None
            yield item_flow(index, item.sent, item.mapping, job.ctx)

    def on_done(k: int, outcome: Outcome) -> None:
        index = indices[k]
        result = outcome.value[0] if outcome.ok else Result(index, error=outcome.error)
        if store is not None and result.ok:
            store.put(str(index), job.items[index].key, dump(result))
        _final(job, index, restored(result, job.items[index].mapping), bar)

    try:
        yield Gather(flows(), options.concurrency, on_done)
    finally:
        if store is not None:
            store.close()
