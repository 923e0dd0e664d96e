"""The wire format: request validation, the error envelope, ids (response shapes: ``events``).

Messages are checked with convo's own rules (:func:`convo.messages.check_history`), so the
simulator refuses exactly what convo would refuse, with the same messages.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import context_edits
from .._exceptions import InvalidInputError
from ..messages import Message, TextBlock, check_history, to_system
from .blocks import (
    check_final_assistant,
    check_thinking,
    check_tool_choice,
    check_tools,
    forces_tool,
)
from .events import (  # noqa: F401  (the response shapes, used through this module by app.py)
    BLOCK_START,
    BLOCK_STOP,
    MESSAGE_STOP,
    PING,
    block_json,
    content_events,
    delta_event,
    dumps,
    error_event,
    message_delta_event,
    message_json,
    sse,
    start_event,
    usage_json,
)

__all__ = [
    "ERROR_TYPES",
    "ErrorReply",
    "Ids",
    "MessageRequest",
    "content_events",
    "dumps",
    "error_body",
    "message_json",
    "parse_count_request",
    "parse_message_request",
    "sse",
]

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
#: The largest max_tokens the simulator accepts (the largest output of current models).
MAX_OUTPUT_TOKENS = 128_000
_KNOWN_FIELDS = frozenset(
    {
        "model", "max_tokens", "messages", "system", "stream", "temperature", "top_p", "top_k",
        "stop_sequences", "tools", "tool_choice", "thinking", "metadata", "service_tier", "container",
        "context_management", "mcp_servers", "output_config", "output_format", "inference_geo", "speed",
        "cache_control", "diagnostics", "user_profile_id",
    }
)  # fmt: skip
_COUNT_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "context_management", "mcp_servers",
     "output_config", "output_format", "cache_control", "speed", "user_profile_id"}
)  # fmt: skip


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
        type: str | None = None,  # noqa: A002 - the API's own field name
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
    return ErrorReply(400, message)


def error_body(err: ErrorReply, request_id: str | None) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": err.type, "message": err.message}
    if err.details is not None:
        inner["details"] = err.details
    body: dict[str, Any] = {"type": "error", "error": inner}
    if request_id is not None:
        body["request_id"] = request_id
    return body


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class Ids:
    """Ids shaped like the API's (``msg_01…``, ``req_011…``), reproducible for a seed."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"ids:{seed}")

    def new(self, prefix: str) -> str:
        rng = self._rng
        return prefix + "".join(rng.choice(_B62) for _ in range(22))

    def message(self) -> str:
        return self.new("msg_01")

    def request(self) -> str:
        return self.new("req_011")

    def batch(self) -> str:
        return self.new("msgbatch_01")


# -- requests ----------------------------------------------------------------------------


@dataclass
class MessageRequest:
    """A validated ``POST /v1/messages`` (or count_tokens) body."""

    model: str
    messages: list[Message]
    max_tokens: int = 0
    system: str | tuple[TextBlock, ...] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None  # None when thinking is off
    stop_sequences: list[str] = field(default_factory=list)
    stream: bool = False
    cache_control: Any = None  # the top-level (automatic) breakpoint
    edits: list[dict[str, Any]] | None = None  # checked context_management.edits, if sent


def _require(body: Mapping[str, Any], name: str) -> Any:
    if name not in body:
        raise invalid(f"{name}: Field required")
    return body[name]


def _check_model(model: Any) -> str:
    if not isinstance(model, str) or not model.strip():
        raise invalid("model: Input should be a valid non-empty string, e.g. 'claude-sonnet-4-5'")
    if not model.startswith("claude"):
        raise ErrorReply(404, f"model: {model}", type="not_found_error")
    return model


def _check_common(body: Any, allowed: frozenset[str]) -> MessageRequest:
    if not isinstance(body, Mapping):
        raise invalid(f"The request body must be a JSON object, got {type(body).__name__}")
    extra = sorted(k for k in body if k not in allowed)
    if extra:
        raise invalid(f"{extra[0]}: Extra inputs are not permitted")
    model = _check_model(_require(body, "model"))
    raw = _require(body, "messages")
    if not isinstance(raw, list):
        raise invalid(f"messages: Input should be a valid list, got {type(raw).__name__}")
    if not raw:
        raise invalid("messages: at least one message is required")
    try:
        messages = check_history(context_edits.adopt_compaction(raw))
    except ValueError as exc:
        raise invalid(f"messages: {exc}") from None
    except InvalidInputError as exc:
        raise invalid(f"messages: {exc}") from None
    last = messages[-1]
    if last.role == "assistant" and last.text and last.text != last.text.rstrip():
        raise invalid("messages: final assistant content cannot end with trailing whitespace")
    system = body.get("system")
    try:
        system = to_system(system)
    except InvalidInputError as exc:
        raise invalid(f"system: {str(exc).split(';')[0]}") from None
    try:
        tools = check_tools(body.get("tools"))
        tool_choice = check_tool_choice(body.get("tool_choice"), tools)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    return MessageRequest(
        model=model, messages=messages, system=system, tools=tools, tool_choice=tool_choice,
        cache_control=body.get("cache_control"),
    )  # fmt: skip


def _check_thinking(req: MessageRequest, body: Mapping[str, Any]) -> None:
    try:
        req.thinking = check_thinking(body.get("thinking"), req.max_tokens or None)
        if req.thinking is not None and forces_tool(req.tool_choice):
            raise ValueError("Thinking may not be enabled when tool_choice forces tool use.")
        check_final_assistant(req.messages, req.thinking)
        if body.get("context_management") is not None:
            req.edits = context_edits.check_config(body["context_management"], thinking_enabled=req.thinking is not None)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def parse_message_request(body: Any) -> MessageRequest:
    """Validate a Messages API body; raise :class:`ErrorReply` (400/404) the way the API would."""
    req = _check_common(body, _KNOWN_FIELDS)
    max_tokens = _require(body, "max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise invalid(f"max_tokens: Input should be a valid integer, got {max_tokens!r}")
    if max_tokens < 1:
        raise invalid(f"max_tokens: must be greater than or equal to 1, got {max_tokens}")
    if max_tokens > MAX_OUTPUT_TOKENS:
        raise invalid(f"max_tokens: {max_tokens} > {MAX_OUTPUT_TOKENS}, which is the maximum allowed")
    req.max_tokens = max_tokens
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid(f"stream: Input should be a valid boolean, got {stream!r}")
    req.stream = stream
    stops = body.get("stop_sequences", [])
    if stops is None:
        stops = []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop_sequences: Input should be a list of strings")
    if any(not s.strip() for s in stops):
        raise invalid("stop_sequences: each stop sequence must contain non-whitespace")
    req.stop_sequences = stops
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1
    ):
        raise invalid(f"temperature: Input should be a number between 0 and 1, got {temperature!r}")
    _check_thinking(req, body)
    return req


def parse_count_request(body: Any) -> MessageRequest:
    """Validate a count_tokens body (the Messages body without ``max_tokens`` and ``stream``)."""
    req = _check_common(body, _COUNT_FIELDS)
    _check_thinking(req, body)
    return req


_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def parse_batch_create(body: Any) -> list[tuple[str, dict[str, Any]]]:
    """Validate a batch create body; the params of each request are checked when it runs."""
    if not isinstance(body, Mapping):
        raise invalid(f"The request body must be a JSON object, got {type(body).__name__}")
    requests = _require(body, "requests")
    if not isinstance(requests, list) or not requests:
        raise invalid("requests: Input should be a non-empty list of {custom_id, params} objects")
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, Mapping) or set(item) - {"custom_id", "params"}:
            raise invalid(f"requests.{i}: Input should be an object with only 'custom_id' and 'params'")
        cid, params = item.get("custom_id"), item.get("params")
        if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
            raise invalid(f"requests.{i}.custom_id: must be 1-64 characters of letters, digits, '-' or '_'")
        if cid in seen:
            raise invalid(f"requests.{i}.custom_id: {cid!r} is used twice; custom_id must be unique in a batch")
        seen.add(cid)
        if not isinstance(params, Mapping):
            raise invalid(f"requests.{i}.params: Field required")
        if params.get("stream"):
            raise invalid(f"requests.{i}.params.stream: streaming is not supported in batches")
        out.append((cid, dict(params)))
    return out


# -- responses ---------------------------------------------------------------------------


def text_of(system: str | Sequence[TextBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n".join(b.text for b in system)
