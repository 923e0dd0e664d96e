"""Server-side context management, as the context-editing and compaction pages describe it.

``context_management.edits`` (beta ``context-management-2025-06-27``) run on the server before
the prompt reaches the model; the client keeps its full history:

* ``clear_tool_uses_20250919``: past ``trigger`` (input tokens, default 100,000; or a count of
  tool uses), the oldest tool results are replaced by a placeholder, keeping the newest
  ``keep`` tool uses (default 3), never those of ``exclude_tools``; ``clear_tool_inputs`` also
  empties the calls' inputs; ``clear_at_least`` skips the edit unless that many tokens go.
* ``clear_thinking_20251015``: thinking blocks of all but the last ``keep`` assistant turns
  (default 1; ``"all"`` keeps everything) are dropped; needs thinking on, and comes first.
* ``compact_20260112`` (beta ``compact-2026-01-12`` as well): past ``trigger`` (default
  150,000) the history before the current turn is summarized; the reply opens with a
  ``compaction`` block that the client sends back, and the server then ignores all before it.

The reply reports what was cleared in ``context_management.applied_edits``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .request import Turn

__all__ = [
    "BETA", "CLEAR_THINKING", "CLEAR_TOOL_USES", "COMPACT", "COMPACT_BETA", "PLACEHOLDER", "adopt_compaction",
    "apply_edits", "check_config", "compact",
]  # fmt: skip

BETA = "context-management-2025-06-27"
COMPACT_BETA = "compact-2026-01-12"
CLEAR_TOOL_USES = "clear_tool_uses_20250919"
CLEAR_THINKING = "clear_thinking_20251015"
COMPACT = "compact_20260112"
#: What a cleared tool result holds instead (the simulator's wording).
PLACEHOLDER = "[tool result cleared by context management]"
TRIGGER = 100_000
KEEP = 3
COMPACT_TRIGGER = 150_000

Size = Callable[[Sequence["Turn"]], int]


def _counted(obj: Any, kinds: tuple[str, ...], where: str, low: int) -> int:
    if not isinstance(obj, Mapping) or obj.get("type") not in kinds or set(obj) != {"type", "value"}:
        shapes = " or ".join(f"{{'type': '{k}', 'value': <int>}}" for k in kinds)
        raise ValueError(f"{where}: expected {shapes}, got {obj!r}")
    v = obj["value"]
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{where}.value: must be an integer >= {low}, got {v!r}")
    return v


def _no_extra(e: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(e) - allowed)
    if extra:
        raise ValueError(f"{where}.{extra[0]}: Extra inputs are not permitted")


def check_config(config: Any, *, thinking_enabled: bool) -> list[dict[str, Any]]:
    """The checked ``context_management.edits``; ValueError (a 400) names what is wrong."""
    if not isinstance(config, Mapping) or set(config) - {"edits"}:
        raise ValueError(f"context_management: expected {{'edits': [...]}}, got {config!r}")
    edits = config.get("edits") or []
    if not isinstance(edits, list) or not all(isinstance(e, Mapping) for e in edits):
        raise ValueError("context_management.edits: Input should be a list of edit objects")
    for i, e in enumerate(edits):
        where, kind = f"context_management.edits.{i}", e.get("type")
        if kind == CLEAR_TOOL_USES:
            _no_extra(e, {"type", "trigger", "keep", "clear_at_least", "exclude_tools", "clear_tool_inputs"}, where)
            if e.get("trigger") is not None:
                _counted(e["trigger"], ("input_tokens", "tool_uses"), f"{where}.trigger", 1)
            if e.get("keep") is not None:
                _counted(e["keep"], ("tool_uses",), f"{where}.keep", 0)
            if e.get("clear_at_least") is not None:
                _counted(e["clear_at_least"], ("input_tokens",), f"{where}.clear_at_least", 1)
            names = e.get("exclude_tools")
            if names is not None and not (isinstance(names, list) and all(isinstance(t, str) for t in names)):
                raise ValueError(f"{where}.exclude_tools: Input should be a list of tool names")
            inputs = e.get("clear_tool_inputs")
            listed = isinstance(inputs, list) and all(isinstance(t, str) for t in inputs)
            if inputs is not None and not isinstance(inputs, bool) and not listed:
                raise ValueError(f"{where}.clear_tool_inputs: Input should be a boolean or a list of tool names")
        elif kind == CLEAR_THINKING:
            _no_extra(e, {"type", "keep"}, where)
            keep = e.get("keep")
            if keep is not None and not _keeps_all(keep):
                _counted(keep, ("thinking_turns",), f"{where}.keep", 1)
            if not thinking_enabled:
                raise ValueError(f"{where}: {CLEAR_THINKING} requires thinking to be enabled in the request")
            if i != 0:
                raise ValueError(f"{where}: {CLEAR_THINKING} must be the first edit in context_management.edits")
        elif kind == COMPACT:
            _no_extra(e, {"type", "trigger", "instructions", "pause_after_compaction"}, where)
            if e.get("trigger") is not None:
                _counted(e["trigger"], ("input_tokens",), f"{where}.trigger", 1)
            if e.get("instructions") is not None and not isinstance(e["instructions"], str):
                raise ValueError(f"{where}.instructions: Input should be a valid string")
            if not isinstance(e.get("pause_after_compaction", False), bool):
                raise ValueError(f"{where}.pause_after_compaction: Input should be a valid boolean")
        else:
            raise ValueError(
                f"{where}.type: unknown edit type {kind!r}; expected {CLEAR_TOOL_USES!r}, {CLEAR_THINKING!r} "
                f"or {COMPACT!r}"
            )
    return [dict(e) for e in edits]


def _keeps_all(keep: Any) -> bool:
    return keep == "all" or (isinstance(keep, Mapping) and keep.get("type") == "all")


def betas_needed(edits: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``anthropic-beta`` values a request with these edits must send."""
    return [BETA, *([COMPACT_BETA] if any(e["type"] == COMPACT for e in edits) else [])]


# -- clearing ----------------------------------------------------------------------------------


def apply_edits(turns: Sequence[Turn], edits: Sequence[Mapping[str, Any]], size: Size) -> tuple[list[Turn], list[dict[str, Any]]]:
    """Run the clearing edits in order: the history the model sees, and ``applied_edits``."""
    out, applied = list(turns), []
    for e in edits:
        if e["type"] == COMPACT:
            continue
        before = size(out)
        if e["type"] == CLEAR_THINKING:
            edited, n = _clear_thinking(out, e.get("keep"))
            key = "cleared_thinking_turns"
        else:
            edited, n = _clear_tool_uses(out, e, before)
            key = "cleared_tool_uses"
        if not n:
            continue
        freed = max(0, before - size(edited))
        floor = e.get("clear_at_least")
        if floor is not None and freed < floor["value"]:
            continue
        out = edited
        applied.append({"type": e["type"], key: n, "cleared_input_tokens": freed})
    return out, applied


def _clear_thinking(turns: list[Turn], keep: Any) -> tuple[list[Turn], int]:
    from .request import Turn

    if _keeps_all(keep):
        return turns, 0
    kept_turns = 1 if keep is None else keep["value"]
    mine = [i for i, t in enumerate(turns) if t.role == "assistant"]
    out, n = list(turns), 0
    for i in mine[: max(0, len(mine) - kept_turns)]:
        rest = tuple(b for b in out[i].blocks if b.get("type") not in ("thinking", "redacted_thinking"))
        if rest and len(rest) < len(out[i].blocks):
            out[i] = Turn(out[i].role, rest)
            n += 1
    return out, n


def _clear_tool_uses(turns: list[Turn], e: Mapping[str, Any], input_tokens: int) -> tuple[list[Turn], int]:
    from .request import Turn

    uses = [b for t in turns if t.role == "assistant" for b in t.of_type("tool_use")]
    trigger = e.get("trigger") or {"type": "input_tokens", "value": TRIGGER}
    measure = len(uses) if trigger["type"] == "tool_uses" else input_tokens
    if measure <= trigger["value"]:
        return turns, 0
    keep = (e.get("keep") or {"value": KEEP})["value"]
    excluded = set(e.get("exclude_tools") or ())
    clearable = [u for u in uses if u["name"] not in excluded]
    victims = {u["id"]: u["name"] for u in clearable[: max(0, len(clearable) - keep)]}
    inputs = e.get("clear_tool_inputs") or False
    cleared: set[str] = set()
    out = []
    for t in turns:
        blocks = []
        for b in t.blocks:
            kind = b.get("type")
            if kind == "tool_result" and b["tool_use_id"] in victims and b.get("content") != PLACEHOLDER:
                b = {**b, "content": PLACEHOLDER}
                cleared.add(b["tool_use_id"])
            elif (
                kind == "tool_use" and b["id"] in victims and b.get("input")
                and (inputs is True or (isinstance(inputs, list) and b["name"] in inputs))
            ):  # fmt: skip
                b = {**b, "input": {}}
                cleared.add(b["id"])
            blocks.append(b)
        out.append(Turn(t.role, tuple(blocks)))
    return out, len(cleared)


# -- compaction ----------------------------------------------------------------------------------


def compact(
    turns: Sequence[Turn], edit: Mapping[str, Any], size: Size, summarize: Callable[[Sequence[Turn], str | None], str]
) -> tuple[list[Turn], str | None]:
    """Past the trigger, replace everything before the current user turn by a summary that
    opens it. Returns the history the model sees and the summary (None: nothing compacted)."""
    from .request import Turn

    trigger = (edit.get("trigger") or {"value": COMPACT_TRIGGER})["value"]
    if size(turns) < trigger:
        return list(turns), None
    starts = [i for i, t in enumerate(turns) if t.role == "user" and not t.tool_result_ids()]
    cut = starts[-1] if starts else 0
    if cut == 0:
        return list(turns), None
    summary = summarize(turns[:cut], edit.get("instructions"))
    first = turns[cut]
    return [Turn("user", ({"type": "text", "text": summary}, *first.blocks)), *turns[cut + 1 :]], summary


def _is_compaction(block: Any) -> bool:
    return isinstance(block, Mapping) and block.get("type") == "compaction"


def adopt_compaction(raw: list[Any]) -> list[Any]:
    """Resolve ``compaction`` blocks in the raw messages as the server does: everything before
    the last block with content is dropped and its summary opens the history; a block whose
    content is null is a no-op. Two blocks with content are refused (send the newest only)."""
    spots = [
        (i, j) for i, m in enumerate(raw) if isinstance(m, Mapping) and isinstance(m.get("content"), list)
        for j, b in enumerate(m["content"]) if _is_compaction(b)
    ]  # fmt: skip
    if not spots:
        return raw
    full = [(i, j) for i, j in spots if raw[i]["content"][j].get("content") is not None]
    if len(full) > 1:
        raise ValueError("more than one compaction block has content; send only the block returned last")

    def without(m: Any) -> Any:
        if isinstance(m, Mapping) and isinstance(m.get("content"), list):
            return {**m, "content": [b for b in m["content"] if not _is_compaction(b)]}
        return m

    if not full:
        return [m for m in map(without, raw) if not isinstance(m, Mapping) or m.get("content") != []]
    i, j = full[0]
    summary = {"type": "text", "text": raw[i]["content"][j]["content"]}
    after = [b for b in raw[i]["content"][j + 1 :] if not _is_compaction(b)]
    tail = ([{"role": raw[i]["role"], "content": after}] if after else []) + [without(m) for m in raw[i + 1 :]]
    if not tail or tail[0].get("role") != "user":
        return [{"role": "user", "content": [summary]}, *tail]
    head = tail[0]["content"]
    head = [{"type": "text", "text": head}] if isinstance(head, str) else list(head)
    results = [b for b in head if isinstance(b, Mapping) and b.get("type") == "tool_result"]
    others = [b for b in head if not (isinstance(b, Mapping) and b.get("type") == "tool_result")]
    return [{**tail[0], "content": [*results, summary, *others]}, *tail[1:]]
