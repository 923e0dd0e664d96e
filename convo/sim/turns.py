"""The messages of a Messages API body, as the simulator reads them: :class:`Turn` and the
checks of each content block's shape, of the roles' blocks and of tool call/result pairing.

Consecutive turns of one role are merged into one, as the API does; a block type the simulator
does not know needs only a string ``type``. The rest of the body is read by
:mod:`convo.sim.request`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .edits import adopt_compaction
from .errors import invalid

__all__ = ["Turn", "check_block", "parse_turns"]

_ROLES = ("user", "assistant")
_IMAGE_SOURCES = ("base64", "url", "file")
#: Not ``container_upload``: it is also a response block (the SDK's ``ContentBlock`` union holds
#: ``ContainerUploadBlock``, "a file uploaded to the container"), so assistant turns sent back hold it.
_USER_ONLY = frozenset({"tool_result", "image", "document", "search_result"})
_ASSISTANT_ONLY = frozenset({"tool_use", "thinking", "redacted_thinking", "server_tool_use", "mcp_tool_use"})


@dataclass(frozen=True)
class Turn:
    """One message as the model sees it: a role and its content blocks (API-shaped dicts)."""

    role: str
    blocks: tuple[dict[str, Any], ...]

    @property
    def text(self) -> str:
        return "".join(b["text"] for b in self.blocks if b.get("type") == "text")

    def of_type(self, *kinds: str) -> list[dict[str, Any]]:
        return [b for b in self.blocks if b.get("type") in kinds]

    def tool_use_ids(self) -> list[str]:
        return [b["id"] for b in self.of_type("tool_use")]

    def tool_result_ids(self) -> list[str]:
        return [b["tool_use_id"] for b in self.of_type("tool_result")]

    def to_api(self) -> dict[str, Any]:
        return {"role": self.role, "content": [dict(b) for b in self.blocks]}


def _string(block: Mapping[str, Any], key: str, where: str) -> None:
    if key not in block:
        raise invalid(f"{where}.{key}: Field required")
    if not isinstance(block[key], str):
        raise invalid(f"{where}.{key}: Input should be a valid string")


def check_block(block: Any, where: str) -> dict[str, Any]:
    """One content block's basic shape (by type); unknown types need only a string ``type``."""
    if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
        raise invalid(f"{where}: Input should be a content block object with a string 'type'")
    kind = block["type"]
    if kind == "text":
        _string(block, "text", where)
        if not block["text"]:
            if block.get("cache_control") is not None:
                raise invalid(f"{where}.text: cache_control cannot be set for empty text blocks")
            raise invalid(f"{where}: text content blocks must be non-empty")
    elif kind == "image":
        src = block.get("source")
        if not isinstance(src, Mapping) or src.get("type") not in _IMAGE_SOURCES:
            raise invalid(f"{where}.source: Input should be a 'base64', 'url' or 'file' image source")
        if src["type"] == "base64":
            _string(src, "media_type", f"{where}.source")
            _string(src, "data", f"{where}.source")
        elif src["type"] == "url":
            _string(src, "url", f"{where}.source")
        else:
            _string(src, "file_id", f"{where}.source")
    elif kind == "document":
        if not isinstance(block.get("source"), Mapping) or not isinstance(block["source"].get("type"), str):
            raise invalid(f"{where}.source: Field required")
    elif kind == "tool_use":
        _string(block, "id", where)
        _string(block, "name", where)
        if not isinstance(block.get("input"), Mapping):
            raise invalid(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        _string(block, "tool_use_id", where)
        content = block.get("content")
        if content is not None and not isinstance(content, str):
            if not isinstance(content, list):
                raise invalid(f"{where}.content: Input should be a valid string or a list of content blocks")
            for k, inner in enumerate(content):
                check_block(inner, f"{where}.content.{k}")
        if block.get("is_error") is not None and not isinstance(block["is_error"], bool):
            raise invalid(f"{where}.is_error: Input should be a valid boolean")
    elif kind == "thinking":
        _string(block, "thinking", where)
        _string(block, "signature", where)
    elif kind == "redacted_thinking":
        _string(block, "data", where)
    return dict(block)


def _content(raw: Any, i: int, role: str) -> tuple[dict[str, Any], ...]:
    where = f"messages.{i}.content"
    if isinstance(raw, str):
        return ({"type": "text", "text": raw},) if raw else ()
    if not isinstance(raw, list):
        raise invalid(f"{where}: Input should be a valid string or a list of content blocks")
    blocks = tuple(check_block(b, f"{where}.{j}") for j, b in enumerate(raw))
    for j, b in enumerate(blocks):
        kind = b["type"]
        if role == "assistant" and kind in _USER_ONLY:
            raise invalid(f"{where}.{j}.type: `{kind}` blocks can only be in `user` messages")
        if role == "user" and kind in _ASSISTANT_ONLY:
            raise invalid(f"{where}.{j}.type: `{kind}` blocks can only be in `assistant` messages")
    return blocks


def parse_turns(raw: Any) -> list[Turn]:
    """The messages of a request as turns: checked, compaction resolved, same roles merged."""
    if not isinstance(raw, list):
        raise invalid(f"messages: Input should be a valid list, got {type(raw).__name__}")
    if not raw:
        raise invalid("messages: at least one message is required")
    try:
        raw = adopt_compaction(raw)
    except ValueError as exc:
        raise invalid(f"messages: {exc}") from None
    turns: list[Turn] = []
    for i, m in enumerate(raw):
        if not isinstance(m, Mapping):
            raise invalid(f"messages.{i}: Input should be an object with 'role' and 'content'")
        role = _require_in(m, "role", i)
        if role not in _ROLES:
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant', got {role!r}")
        blocks = _content(_require_in(m, "content", i), i, role)
        last = i == len(raw) - 1
        if not blocks and not (last and role == "assistant"):
            raise invalid(
                f"messages.{i}: all messages must have non-empty content except for the optional final assistant message"
            )
        texts = [b for b in blocks if b["type"] == "text"]
        final_prefill = last and role == "assistant"
        if blocks and len(texts) == len(blocks) and not any(b["text"].strip() for b in texts) and not final_prefill:
            raise invalid(f"messages.{i}: text content blocks must contain non-whitespace text")
        if turns and turns[-1].role == role:  # the API merges consecutive turns of one role
            turns[-1] = Turn(role, turns[-1].blocks + blocks)
        else:
            turns.append(Turn(role, blocks))
    if turns[0].role != "user":
        raise invalid('messages: first message must use the "user" role')
    _check_pairs(turns)
    return turns


def _require_in(m: Mapping[str, Any], key: str, i: int) -> Any:
    if key not in m:
        raise invalid(f"messages.{i}.{key}: Field required")
    return m[key]


def _check_pairs(turns: Sequence[Turn]) -> None:
    """Every tool_use is answered in the next turn, every tool_result answers the turn before."""
    for i, turn in enumerate(turns):
        if turn.role == "user":
            asked = set(turns[i - 1].tool_use_ids()) if i > 0 else set()
            stray = [t for t in turn.tool_result_ids() if t not in asked]
            if stray:
                raise invalid(
                    f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(stray)}. Each `tool_result` block must have a corresponding `tool_use` block "
                    "in the previous message."
                )
            continue
        ids = turn.tool_use_ids()
        if not ids or i + 1 >= len(turns):
            continue
        answered = set(turns[i + 1].tool_result_ids())
        missing = [t for t in ids if t not in answered]
        if missing:
            raise invalid(
                f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in "
                "the next message."
            )
