"""A line of a Message Batch's results as convo's :class:`~convo.Result` (see ``_batches_api``)."""

from __future__ import annotations

import types
from typing import Any

from ._exceptions import APIError, InvalidConfigError
from ._sdk_errors import STATUS_OF_TYPE, api_error
from .batch import Result

__all__ = ["from_batch", "index_of", "missing", "passing"]

#: Errored items worth sending again: the API's transient failures.
_PASSING = frozenset({"rate_limit_error", "api_error", "timeout_error", "overloaded_error"})


def passing(error: BaseException | None) -> bool:
    """Whether a failed item is worth sending again: a passing error, or it never ran."""
    kind = getattr(error, "error_type", None)
    return kind in _PASSING or kind in ("expired", "missing")


def index_of(custom_id: str, batch_id: str) -> int:
    if not custom_id.isdigit():
        raise InvalidConfigError(
            f"batch {batch_id} has custom_id {custom_id!r}: it was not made by convo (whose custom_ids are the "
            "items' indices); read it with the SDK's messages.batches.results"
        )
    return int(custom_id)


def missing(index: int, where: str, kind: str | None) -> APIError:
    what = kind if kind in ("canceled", "expired") else "missing from the results"
    return APIError(
        f"request {index} of {where} was {what} and did not run; run the batch again "
        "(with checkpoint= only the items that did not succeed are sent)",
        error_type=kind or "missing",
    )


def from_batch(index: int, result: Any, latency: float, batch_id: str) -> Result:
    kind = getattr(result, "type", None)
    if kind == "succeeded":
        return Result(index, result.message, None, 1, latency)
    if kind == "errored":
        body = result.error
        err = getattr(body, "error", None)
        error_type = getattr(err, "type", None) or "api_error"
        detail = types.SimpleNamespace(
            status_code=STATUS_OF_TYPE.get(error_type, 500),
            type=error_type,
            api_message=f"batch {batch_id}, custom_id {index}: {getattr(err, 'message', '')}",
            request_id=getattr(body, "request_id", None),
        )
        return Result(index, None, api_error(detail), 1, latency)
    return Result(index, None, missing(index, f"batch {batch_id}", kind), 1 if kind else 0, latency)
