"""Message Batches: a state machine in simulated time.

A batch is ``in_progress`` for ``batch_seconds`` (its requests finishing evenly over that
time), then ``ended``. A cancel makes it ``canceling`` for a short while (a quarter of
``batch_seconds``, at most until it would have ended anyway); requests not finished when the
cancel arrived end ``canceled``. A batch still running at ``expires_at`` (created + 24 h) ends
with its unfinished requests ``expired``. As in the API, ``request_counts`` show every request
as ``processing`` until the whole batch ends, and ``results_url`` is set only then.
Everything is computed from the injected clock when asked, so nothing runs in the background.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorReply
from .limits import rfc3339

__all__ = ["Batch", "BatchStore"]

EXPIRY_SECONDS = 24 * 3600.0
#: One request's result: ("succeeded", message) or ("errored", error response body).
Runner = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]


@dataclass
class Batch:
    id: str
    created: float
    requests: list[tuple[str, dict[str, Any]]]
    duration: float
    cancel_at: float | None = None
    archived_at: float | None = None
    results: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def expires(self) -> float:
        return self.created + EXPIRY_SECONDS

    def done_at(self, i: int) -> float:
        """When request ``i`` finishes if nothing stops it."""
        return self.created + self.duration * (i + 1) / len(self.requests)

    def ends(self, cancel_delay: float) -> float:
        natural = min(self.created + self.duration, self.expires)
        if self.cancel_at is None:
            return natural
        return min(natural, self.cancel_at + cancel_delay)

    def status(self, now: float, cancel_delay: float) -> str:
        if now >= self.ends(cancel_delay):
            return "ended"
        return "in_progress" if self.cancel_at is None else "canceling"


class BatchStore:
    """The batches of one simulator. ``runner`` produces one request's result."""

    def __init__(self, runner: Runner, *, batch_seconds: float, seed: int = 0) -> None:
        self.runner = runner
        self.batch_seconds = batch_seconds
        self.cancel_delay = batch_seconds / 4
        self._batches: dict[str, Batch] = {}  # insertion order = creation order
        self._rng = random.Random(f"batches:{seed}")

    def create(self, batch_id: str, requests: list[tuple[str, dict[str, Any]]], now: float) -> Batch:
        batch = Batch(batch_id, now, requests, self.batch_seconds)
        self._batches[batch_id] = batch
        return batch

    def get(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None or batch.archived_at is not None:
            raise ErrorReply(404, f"message_batch {batch_id!r} not found", type="not_found_error")
        return batch

    def cancel(self, batch_id: str, now: float) -> Batch:
        batch = self.get(batch_id)
        if batch.status(now, self.cancel_delay) == "in_progress":
            batch.cancel_at = now
        return batch

    def delete(self, batch_id: str, now: float) -> dict[str, str]:
        batch = self.get(batch_id)
        status = batch.status(now, self.cancel_delay)
        if status != "ended":
            raise ErrorReply(
                400,
                f"message_batch {batch_id!r} is {status}; only ended batches can be deleted (cancel it first)",
            )
        batch.archived_at = now
        return {"id": batch_id, "type": "message_batch_deleted"}

    def page(
        self, now: float, base_url: str = "", *, limit: int = 20, before_id: str | None = None, after_id: str | None = None) -> dict[str, Any]:
        """A page of batches, newest first, in the API's list shape."""
        if before_id and after_id:
            raise ErrorReply(400, "before_id and after_id cannot be given together")
        if not 1 <= limit <= 1000:
            raise ErrorReply(400, f"limit: must be between 1 and 1000, got {limit}")
        ordered = [b for b in reversed(self._batches.values()) if b.archived_at is None]
        ids = [b.id for b in ordered]
        if after_id:
            if after_id not in ids:
                raise ErrorReply(404, f"message_batch {after_id!r} not found", type="not_found_error")
            start = ids.index(after_id) + 1
            window, has_more = ordered[start : start + limit], start + limit < len(ordered)
        elif before_id:
            if before_id not in ids:
                raise ErrorReply(404, f"message_batch {before_id!r} not found", type="not_found_error")
            end = ids.index(before_id)
            window, has_more = ordered[max(0, end - limit) : end], end - limit > 0
        else:
            window, has_more = ordered[:limit], limit < len(ordered)
        data = [self.to_json(b, now, base_url) for b in window]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def _finish(self, batch: Batch) -> list[dict[str, Any]]:
        if batch.results is None:
            end = batch.ends(self.cancel_delay)
            results = []
            for i, (custom_id, params) in enumerate(batch.requests):
                if batch.done_at(i) <= end and (batch.cancel_at is None or batch.done_at(i) <= batch.cancel_at):
                    kind, payload = self.runner(params)
                    key = "message" if kind == "succeeded" else "error"
                    result: dict[str, Any] = {"type": kind, key: payload}
                elif batch.cancel_at is not None and batch.cancel_at < batch.expires:
                    result = {"type": "canceled"}
                else:
                    result = {"type": "expired"}
                results.append({"custom_id": custom_id, "result": result})
            self._rng.shuffle(results)  # the API does not keep the order; match on custom_id
            batch.results = results
        return batch.results

    def results(self, batch_id: str, now: float) -> list[dict[str, Any]]:
        batch = self.get(batch_id)
        status = batch.status(now, self.cancel_delay)
        if status != "ended":
            raise ErrorReply(
                400,
                f"message_batch {batch_id!r} is {status}; results are available once processing_status is 'ended'",
            )
        return self._finish(batch)

    def to_json(self, batch: Batch, now: float, base_url: str = "") -> dict[str, Any]:
        status = batch.status(now, self.cancel_delay)
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if status == "ended":
            for r in self._finish(batch):
                counts[r["result"]["type"]] += 1
        else:
            counts["processing"] = len(batch.requests)
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": rfc3339(batch.ends(self.cancel_delay), micro=True) if status == "ended" else None,
            "created_at": rfc3339(batch.created, micro=True),
            "expires_at": rfc3339(batch.expires, micro=True),
            "archived_at": rfc3339(batch.archived_at, micro=True) if batch.archived_at is not None else None,
            "cancel_initiated_at": rfc3339(batch.cancel_at, micro=True) if batch.cancel_at is not None else None,
            "results_url": f"{base_url}/v1/messages/batches/{batch.id}/results" if status == "ended" else None,
        }
