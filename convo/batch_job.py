"""Submit now, collect later: a handle on work sent through the Message Batches API.

>>> job = client.batch(requests, via="batches_api", wait=False, checkpoint="job.ckpt")
>>> job.id, job.status().processing_status
('msgbatch_01...', 'in_progress')
>>> results = job.results()          # blocks until the batch has ended; input order
>>> # another process, days later:
>>> results = convo.BatchJob.resume("job.ckpt", client=client).results()

``client.batch(..., via="batches_api", wait=False)`` redacts each item, holds its worst case on
the budget at batch prices, submits and returns at once. ``results()`` polls with backoff
(``max_wait`` seconds of waiting in all, then :class:`BatchTimeoutError`; the job goes on and
``results()`` may be called again), settles each item into the budget and ``client.stats``, and
sends again the items that ``errored`` with a passing error or ``expired``: ``retries`` times at
most, in a new batch (``retry_via="batches_api"``) or one by one through ``messages.create``
(``retry_via="messages"``, at full price, no waiting). Every item ends with a reply or a typed
error in its :class:`convo.Result`.

:meth:`BatchJob.resume` takes a checkpoint file (everything is in it: the redacted requests, the
batch ids, the results settled so far; the unsettled items hold their worst case again, and the
items that had not succeeded are sent again, as running ``client.batch`` again with the
checkpoint would) or batch ids (the requests are unknown: results are settled at
their cost as they arrive and failed items stay failed). A resumed job has no redaction mapping:
replies keep their placeholders. :class:`AsyncBatchJob` is the twin for an
:class:`convo.AsyncClient`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

from ._batches_api import BatchTimeoutError, Job, Options, by_ids, cancel, collect, load_job, start, status
from ._drivers import run_async, run_sync
from ._exceptions import InvalidConfigError
from ._progress import OnProgress, Progress
from ._telemetry import span
from .batch import Result

__all__ = ["AsyncBatchJob", "BatchJob", "BatchStatus", "BatchTimeoutError"]

_COUNTS = ("processing", "succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True, eq=False)
class BatchStatus:
    """Where a job stands: ``processing_status`` (``in_progress``, ``canceling`` or ``ended``,
    over all its batches) and ``request_counts`` summed over them; ``batch_ids`` in order.
    It compares equal to its ``processing_status``: ``job.status() == "ended"``."""

    processing_status: str
    request_counts: dict[str, int] = field(default_factory=dict)
    batch_ids: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.processing_status

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.processing_status == other
        if isinstance(other, BatchStatus):
            return (self.processing_status, self.request_counts, self.batch_ids) == (
                other.processing_status, other.request_counts, other.batch_ids)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.processing_status)

    @property
    def ended(self) -> bool:
        """Whether every batch has ended, so ``results()`` returns without waiting."""
        return self.processing_status == "ended"


def _status_of(batches: Sequence[Any], ids: Sequence[str]) -> BatchStatus:
    states = {getattr(b, "processing_status", "ended") for b in batches if b is not None}
    state = next((s for s in ("in_progress", "canceling") if s in states), "ended")
    counts = dict.fromkeys(_COUNTS, 0)
    for b in batches:
        got = getattr(b, "request_counts", None)
        for k in _COUNTS:
            counts[k] += getattr(got, k, 0) or 0
    return BatchStatus(state, counts, tuple(ids))


def _ids(source: Any) -> list[str] | None:
    """Batch ids given to ``resume`` (one, a comma-separated list or a sequence), else None."""
    if isinstance(source, str) and source.startswith("msgbatch_"):
        return [part.strip() for part in source.split(",") if part.strip()]
    if isinstance(source, Sequence) and not isinstance(source, str) and source and all(
        isinstance(s, str) and s.startswith("msgbatch_") for s in source
    ):
        return list(source)
    return None


def _plumbing(client: Any, kind: str) -> tuple[Any, Any]:
    from .client import AsyncClient, Client

    wanted = Client if kind == "sync" else AsyncClient
    if not isinstance(client, wanted):
        other = "AsyncBatchJob" if kind == "sync" else "BatchJob"
        raise InvalidConfigError(
            f"{'BatchJob' if kind == 'sync' else 'AsyncBatchJob'} needs a convo.{wanted.__name__}, got "
            f"{type(client).__name__}; use {other} for the other kind"
        )
    return client._ctx, client._env  # the client's own pipeline state: a job is part of the client


def _job_for(source: Any, ctx: Any) -> Job:
    ids = _ids(source)
    if ids is not None:
        return by_ids(ctx, ids)
    if isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise InvalidConfigError(
                f"{str(source)!r} is neither a batch id (msgbatch_...) nor an existing checkpoint file"
            )
        return load_job(ctx, source)
    raise InvalidConfigError(f"resume takes a batch id, a list of them or a checkpoint path, got {type(source).__name__}")


class _Handle:
    """What both twins share: the job, its progress settings, the results once collected."""

    def __init__(self, client: Any, job: Job, progress: bool = False, on_progress: OnProgress | None = None) -> None:
        self.client = client
        self._job = job
        self._progress = progress
        self._on_progress = on_progress
        self._results: list[Result] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, batches={len(self._job.sent)})"

    @property
    def id(self) -> str | None:
        """The first batch's id (None if no item needed sending); ``ids`` lists every batch."""
        return self._job.sent[0].id if self._job.sent else None

    @property
    def ids(self) -> list[str]:
        """Every batch of the job, resubmissions included, in order."""
        return self._job.ids

    @property
    def unsent(self) -> list[Result]:
        """The items final without being sent: loaded from the checkpoint or the response cache,
        or refused before submission (unusable, or over the budget: ``ok`` is False)."""
        return [r for i, r in enumerate(self._job.results) if r is not None and i not in self._job.items]

    @property
    def checkpoint(self) -> Any:
        """The checkpoint file that describes the job (None without one)."""
        return self._job.path

    def _collect_flow(self, max_wait: float | None, retries: int, retry_via: str) -> Any:
        from ._batches_api import MAX_WAIT

        options = Options(MAX_WAIT if max_wait is None else max_wait, retries, retry_via, self.client.max_concurrency)
        final = sum(r is not None for r in self._job.results) - len(self._job.items)
        total = len(self._job.results) or None
        bar = Progress(total, desc="batch", unit="req", bar=self._progress, leave=True, on_progress=self._on_progress)
        bar.update(max(final, 0))

        def flow() -> Any:
            attributes = {"convo.batch.via": "batches_api", "convo.batch.size": total or -1, "convo.batch.ids": self.ids}
            try:
                with span("batch", attributes):  # the polls and result reads under one root
                    results = yield from collect(self._job, options, bar)
            finally:
                bar.close()
            self._results = results
            return results

        return flow()


class BatchJob(_Handle):
    """A Message Batches job of a :class:`convo.Client` (see the module doc)."""

    @classmethod
    def resume(cls, id_or_checkpoint: str | os.PathLike[str] | Sequence[str], *, client: Any) -> BatchJob:
        """The job a checkpoint file or batch id(s) describe, on ``client`` (no request is sent yet)."""
        ctx, _ = _plumbing(client, "sync")
        return cls(client, _job_for(id_or_checkpoint, ctx))

    def status(self) -> BatchStatus:
        """Ask the API where every batch stands."""
        _, env = _plumbing(self.client, "sync")
        return _status_of(run_sync(status(self._job), env), self.ids)

    def results(self, *, max_wait: float | None = None, retries: int = 2, retry_via: str = "batches_api") -> list[Result]:
        """Every item's :class:`convo.Result` in input order, once the batches have ended.

        ``max_wait``: seconds of polling at most (default 48 h), then :class:`BatchTimeoutError`.
        ``retries``: how many times an item that errored in passing or expired is sent again;
        ``retry_via``: ``"batches_api"`` (a new batch) or ``"messages"`` (one by one, now).
        """
        if self._results is not None:
            return self._results
        _, env = _plumbing(self.client, "sync")
        results: list[Result] = run_sync(self._collect_flow(max_wait, retries, retry_via), env)
        return results

    def cancel(self) -> BatchStatus:
        """Ask the API to cancel the batches; items not yet done end ``canceled`` in ``results()``."""
        _, env = _plumbing(self.client, "sync")
        return _status_of(run_sync(cancel(self._job), env), self.ids)

    def close(self) -> None:
        """Give back to the budget what the unsettled items hold (the batches go on)."""
        self._job.release()


class AsyncBatchJob(_Handle):
    """The async twin of :class:`BatchJob`, for a :class:`convo.AsyncClient`."""

    @classmethod
    def resume(cls, id_or_checkpoint: str | os.PathLike[str] | Sequence[str], *, client: Any) -> AsyncBatchJob:
        """The job a checkpoint file or batch id(s) describe, on ``client`` (no request is sent yet)."""
        ctx, _ = _plumbing(client, "async")
        return cls(client, _job_for(id_or_checkpoint, ctx))

    async def status(self) -> BatchStatus:
        """Ask the API where every batch stands."""
        _, env = _plumbing(self.client, "async")
        return _status_of(await run_async(status(self._job), env), self.ids)

    async def results(self, *, max_wait: float | None = None, retries: int = 2, retry_via: str = "batches_api") -> list[Result]:
        """The async twin of :meth:`BatchJob.results`."""
        if self._results is not None:
            return self._results
        _, env = _plumbing(self.client, "async")
        results: list[Result] = await run_async(self._collect_flow(max_wait, retries, retry_via), env)
        return results

    async def cancel(self) -> BatchStatus:
        """The async twin of :meth:`BatchJob.cancel`."""
        _, env = _plumbing(self.client, "async")
        return _status_of(await run_async(cancel(self._job), env), self.ids)

    async def close(self) -> None:
        """The async twin of :meth:`BatchJob.close`."""
        self._job.release()


def submit_flow(ctx: Any, requests: Iterable[Any], checkpoint: Any, progress: bool, on_progress: OnProgress | None) -> Any:
    """The flow of ``client.batch(..., wait=False)``: submit, return the job (see the module doc)."""
    from collections.abc import Mapping

    from ._exceptions import InvalidInputError

    if isinstance(requests, (str, bytes, Mapping)) or not isinstance(requests, Iterable):
        raise InvalidInputError("requests must be an iterable of request dicts, e.g. [{'messages': [...]}, ...]")
    bar = Progress(None, desc="batch", unit="req", bar=False)
    size = len(requests) if isinstance(requests, Sized) else -1
    try:
        with span("batch", {"convo.batch.via": "batches_api", "convo.batch.size": size}) as current:
            job = yield from start(ctx, requests, checkpoint, bar)
            if current is not None:
                current.set_attribute("convo.batch.ids", job.ids)
            return job
    finally:
        bar.close()


def wrap(client: Any, job: Job, progress: bool, on_progress: OnProgress | None) -> BatchJob | AsyncBatchJob:
    """The handle of the right kind for ``client``."""
    from .client import Client

    cls = BatchJob if isinstance(client, Client) else AsyncBatchJob
    return cls(client, job, progress, on_progress)


def wait_check(via: str) -> None:
    """``wait=False`` is for the Message Batches API only."""
    if via != "batches_api":
        raise InvalidConfigError(
            f"wait=False returns a BatchJob of the Message Batches API; pass via='batches_api' (got via={via!r}), "
            "or leave wait=True"
        )
