"""The rules of server-side context edits, as the API applies them: shared by the simulator
(which applies them) and by :class:`convo.ServerEdits` (which estimates their effect).

``check_config`` validates a ``context_management`` field, ``apply_edits`` clears old tool
results and thinking, ``compact`` and ``adopt_compaction`` handle server-side compaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .messages import Message, RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock

__all__ = [
    "BETA",
    "CLEAR_THINKING",
    "CLEAR_TOOL_USES",
    "COMPACT",
    "COMPACT_BETA",
    "PLACEHOLDER",
    "adopt_compaction",
    "apply_edits",
    "check_config",
    "compact",
]

#: The ``anthropic-beta`` header value that enables ``context_management``.
BETA = "context-management-2025-06-27"
CLEAR_TOOL_USES = "clear_tool_uses_20250919"
CLEAR_THINKING = "clear_thinking_20251015"
#: Server-side compaction: the server summarizes the history past a trigger and returns a
#: ``compaction`` content block, which the client sends back in place of what it replaced.
COMPACT = "compact_20260112"
#: The ``anthropic-beta`` value compaction needs as well (the SDK's ``AnthropicBetaParam``).
COMPACT_BETA = "compact-2026-01-12"
#: What a cleared tool result says instead (the simulator's wording; the API's may differ).
PLACEHOLDER = "[tool result cleared by context management]"
_DEFAULT_TRIGGER = 100_000  # input tokens, the API's documented default
_DEFAULT_KEEP = 3  # tool uses, likewise
_COMPACT_TRIGGER = 150_000  # input tokens, the SDK's documented default for compaction

def _value(obj: Any, kind: str, where: str, low: int = 0) -> int:
    if not isinstance(obj, Mapping) or obj.get("type") != kind or set(obj) != {"type", "value"}:
        raise ValueError(f"{where}: expected {{'type': '{kind}', 'value': <int>}}, got {obj!r}")
    v = obj["value"]
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{where}.value: must be an integer >= {low}, got {v!r}")
    return v


def check_config(config: Any, *, thinking_enabled: bool) -> list[dict[str, Any]]:
    """Validate a ``context_management`` body field; raise ValueError (a 400) saying what is wrong.

    The two clearing edits and compaction are known; any other type is refused by name, so a
    caller never believes an edit ran when it did not.
    """
    if not isinstance(config, Mapping) or set(config) - {"edits"}:
        raise ValueError(f"context_management: expected {{'edits': [...]}}, got {config!r}")
    edits = config.get("edits") or []
    if not isinstance(edits, list) or not all(isinstance(e, Mapping) for e in edits):
        raise ValueError("context_management.edits: Input should be a list of edit objects")
    for i, e in enumerate(edits):
        where, kind = f"context_management.edits.{i}", e.get("type")
        if kind == CLEAR_TOOL_USES:
            extra = set(e) - {"type", "trigger", "keep", "clear_at_least", "exclude_tools", "clear_tool_inputs"}
            if extra:
                raise ValueError(f"{where}.{min(extra)}: Extra inputs are not permitted")
            trig = e.get("trigger")
            if trig is not None:
                _value(
                    trig, trig.get("type") if trig.get("type") == "tool_uses" else "input_tokens", f"{where}.trigger", 1
                )
            if e.get("keep") is not None:
                _value(e["keep"], "tool_uses", f"{where}.keep")
            if e.get("clear_at_least") is not None:
                _value(e["clear_at_least"], "input_tokens", f"{where}.clear_at_least", 1)
            tools = e.get("exclude_tools")
            if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, str) for t in tools)):
                raise ValueError(f"{where}.exclude_tools: Input should be a list of tool names")
            cti = e.get("clear_tool_inputs")
            if (
                cti is not None
                and not isinstance(cti, bool)
                and not (isinstance(cti, list) and all(isinstance(t, str) for t in cti))
            ):
                raise ValueError(f"{where}.clear_tool_inputs: Input should be a boolean or a list of tool names")
        elif kind == CLEAR_THINKING:
            if set(e) - {"type", "keep"}:
                raise ValueError(f"{where}.{min(set(e) - {'type', 'keep'})}: Extra inputs are not permitted")
            keep = e.get("keep")
            if keep is not None and keep != "all" and not (isinstance(keep, Mapping) and keep.get("type") == "all"):
                _value(keep, "thinking_turns", f"{where}.keep", 1)
            if not thinking_enabled:
                raise ValueError(f"{where}: {CLEAR_THINKING} requires thinking to be enabled in the request")
            if i != 0:
                raise ValueError(f"{where}: {CLEAR_THINKING} must be the first edit in context_management.edits")
        elif kind == COMPACT:
            extra = set(e) - {"type", "trigger", "instructions", "pause_after_compaction"}
            if extra:
                raise ValueError(f"{where}.{min(extra)}: Extra inputs are not permitted")
            if e.get("trigger") is not None:
                _value(e["trigger"], "input_tokens", f"{where}.trigger", 1)
            if e.get("instructions") is not None and not isinstance(e["instructions"], str):
                raise ValueError(f"{where}.instructions: Input should be a valid string")
            if not isinstance(e.get("pause_after_compaction", False), bool):
                raise ValueError(f"{where}.pause_after_compaction: Input should be a valid boolean")
        else:
            raise ValueError(
                f"{where}.type: unknown edit type {kind!r}; expected {CLEAR_TOOL_USES!r}, {CLEAR_THINKING!r} or {COMPACT!r}"
            )
    return [dict(e) for e in edits]


def apply_edits(
    messages: Sequence[Message], edits: Sequence[Mapping[str, Any]], size: Callable[[Sequence[Message]], int]
) -> tuple[list[Message], list[dict[str, Any]]]:
    """Apply checked edits (see :func:`check_config`) in order; return the edited history and
    the ``applied_edits`` report. ``size(messages)`` is the request's input tokens for them.
    Compaction is not a clearing edit (and not reported here): see :func:`compact`."""
    out, applied = list(messages), []
    for e in edits:
        if e["type"] == COMPACT:
            continue
        before = size(out)
        if e["type"] == CLEAR_THINKING:
            edited, count = _clear_thinking(out, e.get("keep"))
            key = "cleared_thinking_turns"
        else:
            edited, count = _clear_tool_uses(out, e, before)
            key = "cleared_tool_uses"
        if not count:
            continue
        freed = max(0, before - size(edited))
        floor = e.get("clear_at_least")
        if floor is not None and freed < floor["value"]:
            continue  # the API edits only when at least that much goes
        out = edited
        applied.append({"type": e["type"], key: count, "cleared_input_tokens": freed})
    return out, applied


def _clear_thinking(messages: list[Message], keep: Any) -> tuple[list[Message], int]:
    if keep == "all" or (isinstance(keep, Mapping) and keep.get("type") == "all"):
        return messages, 0
    n = 1 if keep is None else keep["value"]
    assistant = [i for i, m in enumerate(messages) if m.role == "assistant"]
    out, cleared = list(messages), 0
    for i in assistant[: max(0, len(assistant) - n)]:
        content = out[i].content
        if isinstance(content, str):
            continue
        kept = tuple(b for b in content if not isinstance(b, (ThinkingBlock, RedactedThinkingBlock)))
        if len(kept) < len(content) and kept:
            out[i] = out[i].model_copy(update={"content": kept})
            cleared += 1
    return out, cleared


def _clear_tool_uses(messages: list[Message], e: Mapping[str, Any], input_tokens: int) -> tuple[list[Message], int]:
    uses = [
        b for m in messages if m.role == "assistant" and not isinstance(m.content, str)
        for b in m.content if isinstance(b, ToolUseBlock)
    ]  # fmt: skip
    trig = e.get("trigger") or {"type": "input_tokens", "value": _DEFAULT_TRIGGER}
    if (len(uses) if trig["type"] == "tool_uses" else input_tokens) <= trig["value"]:
        return messages, 0
    keep = (e.get("keep") or {"value": _DEFAULT_KEEP})["value"]
    exclude = set(e.get("exclude_tools") or ())
    clearable = [u for u in uses if u.name not in exclude]
    victims = {u.id: u for u in clearable[: max(0, len(clearable) - keep)]}
    inputs = e.get("clear_tool_inputs") or False
    out, cleared = [], set()
    for m in messages:
        if isinstance(m.content, str):
            out.append(m)
            continue
        blocks = []
        for b in m.content:
            if isinstance(b, ToolResultBlock) and b.tool_use_id in victims and b.content != PLACEHOLDER:
                b = b.model_copy(update={"content": PLACEHOLDER})
                cleared.add(b.tool_use_id)
            elif (
                isinstance(b, ToolUseBlock)
                and b.id in victims
                and b.input
                and (inputs is True or (isinstance(inputs, list) and b.name in inputs))
            ):
                b = b.model_copy(update={"input": {}})
                cleared.add(b.id)
            blocks.append(b)
        out.append(m.model_copy(update={"content": tuple(blocks)}))
    return out, len(cleared)


def compact(
    messages: Sequence[Message],
    edit: Mapping[str, Any],
    size: Callable[[Sequence[Message]], int],
    summarize: Callable[[Sequence[Message], str | None], str],
) -> tuple[list[Message], str | None]:
    """Apply a checked compaction edit: past its trigger, everything before the last user turn
    is replaced by ``summarize(those messages, instructions)``, which opens that turn. Returns the
    history the model sees and the summary (None when nothing was compacted)."""
    trig = (edit.get("trigger") or {"value": _COMPACT_TRIGGER})["value"]
    if size(messages) < trig:
        return list(messages), None
    starts = [i for i, m in enumerate(messages) if m.role == "user" and not m.tool_result_ids()]
    cut = starts[-1] if starts else 0
    if cut == 0:
        return list(messages), None  # nothing before the current turn to summarize
    summary = summarize(messages[:cut], edit.get("instructions"))
    first = messages[cut]
    opened = first.model_copy(update={"content": (TextBlock(text=summary), *first.blocks)})
    return [opened, *messages[cut + 1 :]], summary


def adopt_compaction(raw: Any) -> Any:
    """Resolve ``compaction`` blocks in a request's raw messages, as the server does: drop all
    that comes before the last one and let its summary open the history (a block with null
    content is a no-op). Raises ValueError for two blocks with content (send only the newest)."""
    if not isinstance(raw, list) or not any(_compactions(m) for m in raw):
        return raw
    found = [(i, j) for i, m in enumerate(raw) for j in _compactions(m)]
    full = [(i, j) for i, j in found if raw[i]["content"][j].get("content") is not None]
    if len(full) > 1:
        raise ValueError("more than one compaction block has content; send only the block returned last")
    out = [dict(m, content=[b for b in m["content"] if not _is_compaction(b)]) if _compactions(m) else m for m in raw]
    if not full:
        return [m for m in out if m["content"]]
    i, j = full[0]
    block = raw[i]["content"][j]
    rest = [b for b in raw[i]["content"][j + 1 :] if not _is_compaction(b)]
    opening = {"type": "text", "text": block["content"]}
    tail = ([{"role": raw[i]["role"], "content": rest}] if rest else []) + out[i + 1 :]
    if not tail or tail[0].get("role") != "user":
        return [{"role": "user", "content": [opening]}, *tail]
    first = tail[0]["content"]
    first = [{"type": "text", "text": first}] if isinstance(first, str) else list(first)
    results = [b for b in first if isinstance(b, Mapping) and b.get("type") == "tool_result"]
    others = [b for b in first if b not in results]
    return [dict(tail[0], content=[*results, opening, *others]), *tail[1:]]


def _is_compaction(block: Any) -> bool:
    return isinstance(block, Mapping) and block.get("type") == "compaction"


def _compactions(message: Any) -> list[int]:
    content = message.get("content") if isinstance(message, Mapping) else None
    return [j for j, b in enumerate(content) if _is_compaction(b)] if isinstance(content, list) else []
