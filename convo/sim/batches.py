"""Message Batches: a state machine in simulated time.

A batch is ``in_progress`` for ``batch_seconds`` (its requests finishing evenly over that
time), then ``ended``. A cancel makes it ``canceling`` for a short while (a quarter of
``batch_seconds``, at most until it would have ended anyway); requests not finished when the
cancel arrived end ``canceled``. A batch still running at ``expires_at`` (created + 24 h) ends
with its unfinished requests ``expired``. As in the API, ``request_counts`` show every request
as ``processing`` until the whole batch ends, and ``results_url`` is set only then.
Everything is computed from the injected clock when asked, so nothing runs in the background.

Batches keep their own time (:class:`ScaledClock`): ``Simulator(batch_speed=3600)`` makes an
hour of batch processing pass in a second of the simulator's clock, so a test or a demo with a
real clock can use realistic ``batch_seconds``; timestamps of batches are on that clock.

Faults on demand (:class:`BatchFaults`): ``Simulator(batch_faults={"errored": 0.1, "expired":
0.05})`` ends that share of requests ``errored`` (an ``overloaded_error``, retryable) or
``expired``, drawn per batch and ``custom_id`` from the seed (a request sent again in another
batch draws again); ``sim.batch_faults = ...`` changes it between batches. A request whose
params contain the marker ``[sim:errored]`` or ``[sim:expired]`` (e.g. in its text) always
ends that way.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorReply, SimConfigError
from .limits import rfc3339

__all__ = ["Batch", "BatchFaults", "BatchStore", "ScaledClock"]

EXPIRY_SECONDS = 24 * 3600.0
#: One request's result: ("succeeded", message) or ("errored", error response body).
Runner = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]
FAULT_KINDS = ("errored", "expired")


class ScaledClock:
    """``base`` running ``speed`` times faster from the moment this is made."""

    def __init__(self, base: Callable[[], float], speed: float = 1.0) -> None:
        if not speed > 0:
            raise SimConfigError(f"batch_speed must be positive, got {speed!r}")
        self.base, self.speed = base, float(speed)
        self.origin = base()

    def __call__(self) -> float:
        return self.origin + (self.base() - self.origin) * self.speed


@dataclass(frozen=True)
class BatchFaults:
    """The share of batch requests that end ``errored`` or ``expired`` (see the module doc)."""

    errored: float = 0.0
    expired: float = 0.0

    @classmethod
    def coerce(cls, value: BatchFaults | Mapping[str, float] | None) -> BatchFaults:
        if value is None:
            return cls()
        if isinstance(value, BatchFaults):
            return value
        unknown = set(value) - set(FAULT_KINDS)
        if unknown or any(not 0 <= float(r) <= 1 for r in value.values()):
            raise SimConfigError(
                f"batch_faults takes rates in [0, 1] for {', '.join(FAULT_KINDS)}, got {dict(value)!r}"
            )
        return cls(**{k: float(r) for k, r in value.items()})

    def pick(self, batch_id: str, custom_id: str, params: dict[str, Any], seed: int) -> str | None:
        """The fault this request ends with, if any."""
        text = json.dumps(params)
        for kind in FAULT_KINDS:
            if f"[sim:{kind}]" in text:
                return kind
        if self.errored or self.expired:
            draw = random.Random(f"{seed}:{batch_id}:{custom_id}").random()
            if draw < self.errored:
                return "errored"
            if draw < self.errored + self.expired:
                return "expired"
        return None


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

    def __init__(
        self, runner: Runner, *, batch_seconds: float, seed: int = 0, faults: Callable[[], BatchFaults] | None = None
    ) -> None:
        self.runner = runner
        self.seed = seed
        self.faults = faults or BatchFaults
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
            faults = self.faults()
            results = []
            for i, (custom_id, params) in enumerate(batch.requests):
                fault = faults.pick(batch.id, custom_id, params, self.seed)
                result: dict[str, Any]
                if fault == "expired":
                    result = {"type": "expired"}
                elif fault == "errored":
                    message = "simulated batch fault: this request errored (Simulator batch_faults); send it again"
                    body: dict[str, Any] = {"type": "error", "error": {"type": "overloaded_error", "message": message}}
                    result = {"type": "errored", "error": body}
                elif batch.done_at(i) <= end and (batch.cancel_at is None or batch.done_at(i) <= batch.cancel_at):
                    kind, payload = self.runner(params)
                    key = "message" if kind == "succeeded" else "error"
                    result = {"type": kind, key: payload}
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
