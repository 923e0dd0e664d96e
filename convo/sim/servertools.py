"""Server-tool steps in replies: the ``server_tool_use`` block and its result block.

The API runs server tools (web search, web fetch, code execution) itself and shows each step
in the reply: a ``server_tool_use`` block (streamed like ``tool_use``) and the tool's result
block (sent whole in its ``content_block_start``). A long step can end the turn with
``stop_reason: "pause_turn"``; the client sends the assistant content back to let it go on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .blocks import Block, json_chunks

__all__ = ["REFUSAL", "server_step", "wants_server_tool"]

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ASKS = {
    "web_search": re.compile(r"\b(?:search|look up|find online|latest|news)\b", re.IGNORECASE),
    "web_fetch": re.compile(r"\bfetch\b|https?://", re.IGNORECASE),
    "code_execution": re.compile(r"\b(?:run|execute|compute|calculate)\b", re.IGNORECASE),
}
#: ``stop_details`` of an injected refusal (the shape of the SDK's RefusalStopDetails).
REFUSAL = {
    "type": "refusal",
    "category": None,
    "explanation": "The simulator refused this turn (an injected 'refusal' fault).",
}


def _kind(tool: Mapping[str, Any]) -> str:
    """web_search_20250305 -> web_search."""
    return re.sub(r"_\d{8}$", "", str(tool.get("type") or tool.get("name") or ""))


def wants_server_tool(tools: Sequence[Mapping[str, Any]], text: str) -> Mapping[str, Any] | None:
    """The server tool the last user message names or asks for, if any."""
    for tool in tools:
        name, kind = str(tool.get("name") or ""), _kind(tool)
        if (name and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)) or (
            kind in _ASKS and _ASKS[kind].search(text)
        ):
            return tool
    return None


def _id(key: str) -> str:
    n = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=17).digest(), "big")
    out = []
    for _ in range(22):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "srvtoolu_01" + "".join(out)


def server_step(tool: Mapping[str, Any] | None, text: str, key: str) -> list[Block]:
    """One server-tool step about ``text``: the call and its result (web search by default)."""
    kind = _kind(tool) if tool is not None else "web_search"
    name = kind if kind in ("web_search", "web_fetch", "code_execution") else "web_search"
    words = " ".join(text.split()[:8]) or "example"
    uid = _id(f"{key}\x00{name}")
    if name == "web_fetch":
        url = (re.findall(r"https?://\S+", text) or ["https://example.com/"])[0]
        args: dict[str, Any] = {"url": url}
        result: dict[str, Any] = {
            "type": "web_fetch_tool_result", "tool_use_id": uid,
            "content": {"type": "web_fetch_result", "url": url, "retrieved_at": "2026-01-01T00:00:00Z",
                        "content": {"type": "document", "title": url,
                                    "source": {"type": "text", "media_type": "text/plain", "data": f"A page about {words}."}}},
        }  # fmt: skip
    elif name == "code_execution":
        args = {"code": f"print({json.dumps(words)})"}
        result = {
            "type": "code_execution_tool_result", "tool_use_id": uid,
            "content": {"type": "code_execution_result", "stdout": words + "\n", "stderr": "", "return_code": 0,
                        "content": []},
        }  # fmt: skip
    else:
        args = {"query": words}
        slug = re.sub(r"[^a-z0-9]+", "-", words.lower()).strip("-") or "result"
        result = {
            "type": "web_search_tool_result", "tool_use_id": uid,
            "content": [{"type": "web_search_result", "url": f"https://example.com/{slug}", "title": words,
                         "encrypted_content": hashlib.sha256(words.encode()).hexdigest(), "page_age": None}],
        }  # fmt: skip
    payload = json.dumps(args, ensure_ascii=False)
    return [
        Block("server_tool_use", json_chunks(payload), id=uid, name=name, input=args),
        Block(result["type"], (), body=result),
    ]
