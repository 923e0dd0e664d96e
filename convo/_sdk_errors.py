"""Translating the SDK's exceptions into convo's tree (:mod:`convo._exceptions`): the class by
status and a message that says what to do; the SDK error is kept as the ``__cause__``, its
credentials blanked (:mod:`convo._credentials`)."""

from __future__ import annotations

from typing import Any

from ._credentials import scrub_credentials
from ._exceptions import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConvoError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
    SpendLimitError,
    request_id_of,
)

__all__ = ["STATUS_OF_TYPE", "api_error"]

#: The API's error ``type`` -> the HTTP status it comes with: an ``error`` event mid-stream and an
#: errored batch item carry the type alone (on a 200 response, or none).
STATUS_OF_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}  # fmt: skip

_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    422: BadRequestError,
    429: RateLimitError,
    529: OverloadedError,
}


def api_error(exc: Any, *, attempts: int = 1, spend_limit: bool = False) -> ConvoError:
    """Translate an SDK exception into convo's tree, with a message that says what to do; the
    credentials in the request it holds are blanked, since it becomes the ``__cause__``."""
    if isinstance(exc, BaseException):  # a batch item's error is a plain record, never sent
        scrub_credentials(exc)
    status = getattr(exc, "status_code", None)
    if status is None:
        what = type(exc).__name__
        return APIConnectionError(
            f"could not complete the request after {attempts} attempt(s): {what}: {str(exc).rstrip('.')}. "
            "Check the network and base_url; a timeout can be raised with Client(timeout=...)",
            attempts=attempts,
        )
    cls = SpendLimitError if spend_limit else _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    error_type = getattr(exc, "type", None)
    api_message = getattr(exc, "api_message", None) or str(exc)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return cls(
        f"{status} {error_type or 'error'}{tries}: {api_message} — {cls.hint}",
        status_code=status,
        error_type=error_type,
        request_id=request_id_of(exc),
        attempts=attempts,
    )
