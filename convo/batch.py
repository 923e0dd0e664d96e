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
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass
from typing import Any

import anthropic

from ._calls import call_flow
from ._context import CallContext
from ._exceptions import ConvoError, InvalidConfigError, InvalidInputError
from ._flow import Call, Flow, Gather, Outcome
from ._guards import REDACTION
from ._progress import OnProgress, Progress
from .checkpoint import Checkpoint, digest

__all__ = ["Result", "batch_flow", "dump", "item_flow", "load", "normalize", "restored"]

log = logging.getLogger("convo")


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
    bar = Progress(total, desc="batch", unit="req", bar=progress, leave=True, on_progress=on_progress)
    try:
        if via == "messages":
            store = Checkpoint(checkpoint) if checkpoint is not None else None
            try:
                return (yield from _via_messages(ctx, requests, concurrency, store, bar))
            finally:
                if store is not None:
                    store.close()
        from ._batches_api import Options, collect, start

        job = yield from start(ctx, requests, checkpoint, bar)
        try:
            return (yield from collect(job, Options(concurrency=concurrency), bar))
        finally:  # an error, a cancellation: what no result settled is given back to the budget
            job.release()
    finally:
        bar.close()


# -- one request per item ---------------------------------------------------------------------


def _via_messages(ctx: CallContext, requests: Iterable[Any], concurrency: int, store: Checkpoint | None, bar: Any) -> Flow:
    keys: dict[int, str] = {}  # digests of the items in flight, for the checkpoint
    broken: list[BaseException] = []

    def flows() -> Iterable[Flow]:
        for index, item in enumerate(requests):
            try:
                sent, mapping = REDACTION.protect(ctx, normalize(ctx, index, item))
            except ConvoError as exc:
                yield _ready((Result(index, error=exc), {}))
                continue
            if store is not None:
                key = keys[index] = digest(sent)
                saved = store.get(str(index), key)
                if saved is not None:
                    keys.pop(index)
                    yield _ready((load(index, saved), mapping))
                    continue
            yield item_flow(index, sent, mapping, ctx)

    def on_done(index: int, outcome: Outcome) -> None:
        result = outcome.value[0] if outcome.ok else Result(index, error=outcome.error)
        key = keys.pop(index, None)
        if store is not None and key is not None and result.ok and not broken:
            try:  # the reply as the server wrote it: placeholders, never the restored values
                store.put(str(index), key, dump(result))
            except (sqlite3.Error, OSError) as exc:  # disk full, file locked or gone: the results are still good
                broken.append(exc)
                log.warning("convo: cannot write the checkpoint %s (%s); going on without it", store.path, exc)
        bar.update(1)

    outcomes = yield Gather(flows(), concurrency, on_done)
    return [restored(*o.value) if o.ok else Result(i, error=o.error) for i, o in enumerate(outcomes)]


def item_flow(index: int, sent: dict[str, Any], mapping: dict[str, str], ctx: CallContext) -> Flow:
    """``call_flow`` for one (redacted) item, counting its attempts and turning a failure into a
    Result; returns it with the mapping that restores its reply."""
    start = ctx.clock()
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
    return Result(index, message, error, attempts, ctx.clock() - start), mapping


def restored(result: Result, mapping: dict[str, str]) -> Result:
    """``result`` with the placeholders of its reply put back, for the caller."""
    if result.message is None or not mapping:
        return result
    return dataclasses.replace(result, message=REDACTION.restore(result.message, mapping))


def _ready(value: tuple[Result, dict[str, str]]) -> Flow:
    """A flow that is already done (an item loaded from the checkpoint or rejected up front)."""
    return value
    yield  # pragma: no cover - makes this a generator


def normalize(ctx: CallContext, index: int, item: Any, *, batch: bool = False) -> dict[str, Any]:
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


def dump(result: Result) -> dict[str, Any]:
    return {"message": result.message.model_dump(mode="json"), "attempts": result.attempts, "latency": result.latency}


def load(index: int, saved: dict[str, Any]) -> Result:
    message = anthropic.types.Message.model_validate(saved["message"])
    return Result(index, message, None, saved["attempts"], saved["latency"], from_checkpoint=True)
