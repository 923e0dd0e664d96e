"""The wire format: request validation, response and event shapes, the error envelope, ids.

Messages are checked with convo's own rules (:func:`convo.messages.check_history`), so the
simulator refuses exactly what convo would refuse, with the same messages.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import context_edits
from .._exceptions import InvalidInputError
from ..messages import Message, TextBlock, check_history, to_system
from .blocks import (
    Block,
    Reply,
    check_final_assistant,
    check_thinking,
    check_tool_choice,
    check_tools,
    forces_tool,
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


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def error_body(err: ErrorReply, request_id: str | None) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": err.type, "message": err.message}
    if err.details is not None:
        inner["details"] = err.details
    body: dict[str, Any] = {"type": "error", "error": inner}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def sse(event: str, data: Mapping[str, Any] | str) -> bytes:
    """One server-sent event: ``event:`` and ``data:`` lines and the blank line after them."""
    payload = data if isinstance(data, str) else dumps(data)
    return f"event: {event}\ndata: {payload}\n\n".encode()


PING = b'event: ping\ndata: {"type": "ping"}\n\n'

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


def usage_json(
    input_tokens: int, output_tokens: int, *, cache: Mapping[str, Any] | None = None, service_tier: str = "standard"
) -> dict[str, Any]:
    """``cache``: the input and cache fields of a :class:`~convo.sim.cache.CacheUsage` (``fields()``)."""
    usage = dict(cache) if cache is not None else {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    }  # fmt: skip
    usage["output_tokens"] = output_tokens
    usage["service_tier"] = service_tier
    return usage


def block_json(block: Block) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": block.value}
    if block.type == "thinking":
        return {"type": "thinking", "thinking": block.value, "signature": block.signature}
    if block.type == "compaction":
        return {"type": "compaction", "content": block.value}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}


def message_json(
    msg_id: str, model: str, reply: Reply, input_tokens: int, *, service_tier: str = "standard",
    cache: Mapping[str, Any] | None = None, applied: list[dict[str, Any]] | None = None,
    iterations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A complete Message object, shaped like the API's (``applied``: context edits, when asked
    for; ``iterations``: ``usage.iterations``, reported when the server compacted)."""
    extra = {} if applied is None else {"context_management": {"applied_edits": applied}}
    usage = usage_json(input_tokens, reply.output_tokens, cache=cache, service_tier=service_tier)
    if iterations is not None:
        usage["iterations"] = iterations
    return extra | {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block_json(b) for b in reply.blocks],
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": usage,
    }


def start_event(msg_id: str, model: str, input_tokens: int, cache: Mapping[str, Any] | None = None) -> bytes:
    return sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    **(cache or {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                                 "cache_read_input_tokens": 0}),
                    "output_tokens": 1,
                },
            },
        },
    )


BLOCK_START = sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
BLOCK_STOP = sse("content_block_stop", {"type": "content_block_stop", "index": 0})
MESSAGE_STOP = sse("message_stop", {"type": "message_stop"})
#: Block type -> its delta's type and the field that carries the payload.
_DELTAS = {
    "text": ("text_delta", "text"),
    "thinking": ("thinking_delta", "thinking"),
    "tool_use": ("input_json_delta", "partial_json"),
    "compaction": ("compaction_delta", "content"),  # one delta carries the whole summary
}


def delta_event(text: str, index: int = 0, kind: str = "text") -> bytes:
    name, key = _DELTAS[kind]
    delta = {"type": name, key: text}
    return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _block_start(index: int, block: Block) -> bytes:
    if block.type == "text":
        if index == 0:
            return BLOCK_START
        opened: dict[str, Any] = {"type": "text", "text": ""}
    elif block.type == "thinking":
        opened = {"type": "thinking", "thinking": "", "signature": ""}
    elif block.type == "compaction":
        opened = {"type": "compaction", "content": None}
    else:
        opened = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
    return sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": opened})


def _block_stop(index: int) -> bytes:
    return BLOCK_STOP if index == 0 else sse("content_block_stop", {"type": "content_block_stop", "index": index})


def content_events(blocks: Sequence[Block]) -> tuple[bytes, list[bytes], bytes]:
    """A stream's content as (opening, pieces, closing): the opening is the first block's start
    and a ping; each piece is one content_block_delta event, followed, at the end of a block, by
    its stop and the next block's start; the closing stops the last block. Stream faults land
    between pieces, so they count deltas across all blocks."""
    if not blocks:
        return b"", [], b""
    pieces: list[bytes] = []
    for i, block in enumerate(blocks):
        events = [delta_event(d, i, block.type) for d in block.deltas]
        if block.type == "thinking":
            delta = {"type": "signature_delta", "signature": block.signature}
            events.append(sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
        if i + 1 < len(blocks):
            events[-1] += _block_stop(i) + _block_start(i + 1, blocks[i + 1])
        pieces.extend(events)
    return _block_start(0, blocks[0]) + PING, pieces, _block_stop(len(blocks) - 1)


def message_delta_event(
    stop_reason: str, stop_sequence: str | None, output_tokens: int, applied: list[dict[str, Any]] | None = None,
    iterations: list[dict[str, Any]] | None = None,
) -> bytes:
    event: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": {"output_tokens": output_tokens} | ({} if iterations is None else {"iterations": iterations}),
    }
    if applied is not None:  # the API reports context edits on the final delta
        event["context_management"] = {"applied_edits": applied}
    return sse("message_delta", event)


def error_event(error_type_: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    return sse("error", {"type": "error", "error": {"details": None, "type": error_type_, "message": message}})


def text_of(system: str | Sequence[TextBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n".join(b.text for b in system)
