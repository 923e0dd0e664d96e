"""The simulator's own errors: :class:`SimConfigError` for a bad setting (a Python error, raised
where the simulator is configured) and :class:`ErrorReply` for an API error response to send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_MESSAGES", "ERROR_TYPES", "ErrorReply", "SimConfigError", "error_type", "injected_message", "invalid",
]  # fmt: skip


class SimConfigError(ValueError):
    """A simulator setting is wrong (a fault spec, a limit, a latency); the message says which."""


#: HTTP status -> error.type, from the errors page (other 4xx are invalid_request_error).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "The requested resource could not be found.",
    409: "The request conflicts with the current state of the resource.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of requests has exceeded your rate limit. Retry after the time in the retry-after header.",
    500: "Internal server error",
    504: "The request timed out while processing. Use streaming for long requests.",
    529: "Overloaded",
}


def injected_message(status: int, fault: str) -> str:
    """The message of an injected status fault. Throttling and server errors use the API's own
    wording (clients match on it); a client error says it was injected, since nothing in the
    request is wrong and a bare "Invalid request." would send the reader looking for a cause."""
    if status == 429 or status >= 500:
        return DEFAULT_MESSAGES.get(status, f"Injected fault ({status}).")
    what = DEFAULT_MESSAGES.get(status, "The request was refused.").rstrip(".")
    return f"{what}: an injected {fault!r} fault from the simulator's fault schedule (the request itself is valid)"


def error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


class ErrorReply(Exception):
    """An error response to send: status, ``error.type``, message, extra headers and details."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.type = type or error_type(status)
        self.message = message or DEFAULT_MESSAGES.get(status, "Error")
        self.headers = dict(headers or {})
        self.details = dict(details) if details is not None else None
        super().__init__(f"{status} {self.type}: {self.message}")


def invalid(message: str) -> ErrorReply:
    """A 400 invalid_request_error with ``message``."""
    return ErrorReply(400, message)
