"""The response side of the wire format: JSON message bodies and server-sent events.

Byte-exact with the fact sheet's SSE grammar: ``event:`` and ``data:`` lines, a blank line
after each event, usage cumulative in ``message_delta``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .blocks import Block, Reply

__all__ = [
    "BLOCK_START",
    "BLOCK_STOP",
    "MESSAGE_STOP",
    "PING",
    "block_json",
    "content_events",
    "delta_event",
    "dumps",
    "error_event",
    "message_delta_event",
    "message_json",
    "sse",
    "start_event",
    "usage_json",
]


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse(event: str, data: Mapping[str, Any] | str) -> bytes:
    """One server-sent event: ``event:`` and ``data:`` lines and the blank line after them."""
    payload = data if isinstance(data, str) else dumps(data)
    return f"event: {event}\ndata: {payload}\n\n".encode()


PING = b'event: ping\ndata: {"type": "ping"}\n\n'

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
    if block.type in ("tool_use", "server_tool_use"):
        return {"type": block.type, "id": block.id, "name": block.name, "input": block.input}
    return dict(block.body or {"type": block.type})


def server_tool_usage(blocks: Sequence[Block]) -> dict[str, int] | None:
    """``usage.server_tool_use``: the web searches and fetches a reply ran (None when none)."""
    names = [b.name for b in blocks if b.type == "server_tool_use"]
    if not names:
        return None
    return {"web_search_requests": names.count("web_search"), "web_fetch_requests": names.count("web_fetch")}


def message_json(
    msg_id: str, model: str, reply: Reply, input_tokens: int, *, service_tier: str = "standard",
    cache: Mapping[str, Any] | None = None, applied: list[dict[str, Any]] | None = None,
    iterations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A complete Message object, shaped like the API's (``applied``: context edits, when asked
    for; ``iterations``: ``usage.iterations``, reported when the server compacted)."""
    extra: dict[str, Any] = {} if applied is None else {"context_management": {"applied_edits": applied}}
    usage = usage_json(input_tokens, reply.output_tokens, cache=cache, service_tier=service_tier)
    if iterations is not None:
        usage["iterations"] = iterations
    if reply.stop_details is not None:
        extra["stop_details"] = reply.stop_details
    tools = server_tool_usage(reply.blocks)
    if tools is not None:
        usage["server_tool_use"] = tools
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


def start_event(
    msg_id: str, model: str, input_tokens: int, cache: Mapping[str, Any] | None = None, service_tier: str = "standard"
) -> bytes:
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
                    "service_tier": service_tier,
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
    "server_tool_use": ("input_json_delta", "partial_json"),
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
    elif block.type in ("tool_use", "server_tool_use"):
        opened = {"type": block.type, "id": block.id, "name": block.name, "input": {}}
    else:  # a server tool's result arrives whole, without deltas
        opened = block_json(block)
    return sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": opened})


def _block_stop(index: int) -> bytes:
    return BLOCK_STOP if index == 0 else sse("content_block_stop", {"type": "content_block_stop", "index": index})


def content_events(blocks: Sequence[Block]) -> tuple[bytes, list[bytes], bytes]:
    """A stream's content as (opening, pieces, closing): the opening is the first block's start
    and a ping; each piece is one content_block_delta event, followed, at the end of a block, by
    its stop and the next block's start; the closing stops the last block. Stream faults land
    between pieces, so they count deltas across all blocks. Blocks without deltas (a server
    tool's result) ride on the piece before them."""
    if not blocks:
        return b"", [], b""
    opening = _block_start(0, blocks[0]) + PING
    pieces: list[bytes] = []
    for i, block in enumerate(blocks):
        if i > 0:
            turn = _block_stop(i - 1) + _block_start(i, block)
            if pieces:
                pieces[-1] += turn
            else:
                opening += turn
        pieces.extend(delta_event(d, i, block.type) for d in block.deltas)
        if block.type == "thinking":
            delta = {"type": "signature_delta", "signature": block.signature}
            pieces.append(sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
    return opening, pieces, _block_stop(len(blocks) - 1)


def message_delta_event(
    stop_reason: str, stop_sequence: str | None, output_tokens: int, applied: list[dict[str, Any]] | None = None,
    iterations: list[dict[str, Any]] | None = None, cache: Mapping[str, Any] | None = None,
    stop_details: Mapping[str, Any] | None = None, server_tools: Mapping[str, int] | None = None,
) -> bytes:
    """The final delta; its usage is cumulative and, as real streams do, repeats the input and
    cache fields (``cache``: the fields of the request's cache usage) beside ``output_tokens``."""
    usage: dict[str, Any] = {
        k: v for k, v in (cache or {}).items()
        if k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    }  # fmt: skip
    usage["output_tokens"] = output_tokens
    if iterations is not None:
        usage["iterations"] = iterations
    if server_tools is not None:
        usage["server_tool_use"] = server_tools
    delta: dict[str, Any] = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
    if stop_details is not None:
        delta["stop_details"] = dict(stop_details)
    event: dict[str, Any] = {"type": "message_delta", "delta": delta, "usage": usage}
    if applied is not None:  # the API reports context edits on the final delta
        event["context_management"] = {"applied_edits": applied}
    return sse("message_delta", event)


def error_event(error_type_: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    return sse("error", {"type": "error", "error": {"details": None, "type": error_type_, "message": message}})
