"""Server-side context editing: let the API clear old tool results and thinking, not convo.

The Messages API (beta ``context-management-2025-06-27``) accepts a ``context_management``
field whose ``edits`` run on the server before the prompt reaches the model: the full history
stays on the client, and the reply says what was cleared (``context_management.applied_edits``).
:class:`ServerEdits` is a strategy that sends that configuration when the model supports it
and otherwise trims with its fallback:

>>> from convo import Conversation, ServerEdits
>>> edits = ServerEdits(trigger_tokens=30_000, keep_tool_uses=3)
>>> conv = Conversation(model="claude-sonnet-4-6", budget=200_000, strategy=edits)
>>> conv.add_user("hi")
>>> request = conv.request(**edits.params(conv.model))   # + context_management, beta header
>>> sorted(request)
['context_management', 'extra_headers', 'max_tokens', 'messages', 'model']

After the call, ``edits.observe(reply)`` (or ``applied_edits(reply)``) reads back what the
server cleared; ``edits.last_applied`` keeps it. With ``compact=True`` the server may also
summarize the history (beta ``compact-2026-01-12``): the reply then opens with a ``compaction``
block (``edits.last_compaction``) that must be sent back with the reply. Since the server
shrinks the history, the budget is checked against :meth:`ServerEdits.estimate`, the history
after the predicted clearing, so a tool loop longer than the budget is still sent. :func:`apply_edits` is the same semantics as a
pure function over a history: the simulator serves it, and tests can predict the server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ._exceptions import InvalidConfigError
from .messages import Message, RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock
from .strategies import Selection, SlidingWindow, Strategy, StrategyLike, TrimState, as_selection

__all__ = [
    "BETA",
    "CLEAR_THINKING",
    "CLEAR_TOOL_USES",
    "COMPACT",
    "COMPACT_BETA",
    "AppliedEdit",
    "Compaction",
    "ServerEdits",
    "applied_edits",
    "apply_edits",
    "compact",
    "compaction_of",
    "supports_context_edits",
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
_MODEL = re.compile(r"^claude-(?:(?:opus|sonnet|haiku)-(\d+)|(\d+)-\d+-(?:opus|sonnet|haiku))")


def supports_context_edits(model: str) -> bool:
    """True for the models that take context edits: Claude 4 and later (opus, sonnet, haiku)."""
    m = _MODEL.match(model or "")
    return bool(m) and int(m.group(1) or m.group(2)) >= 4


class AppliedEdit(BaseModel):
    """One edit the server applied, as reported in ``context_management.applied_edits``."""

    model_config = ConfigDict(frozen=True, extra="allow")
    type: str
    cleared_input_tokens: int = 0
    cleared_tool_uses: int = 0
    cleared_thinking_turns: int = 0

    def __str__(self) -> str:
        what = (
            f"{self.cleared_tool_uses} tool uses" if self.type == CLEAR_TOOL_USES
            else f"{self.cleared_thinking_turns} thinking turns"
        )  # fmt: skip
        return f"{self.type}: cleared {what}, {self.cleared_input_tokens} input tokens"


def applied_edits(reply: Any) -> list[AppliedEdit]:
    """What the server cleared for ``reply`` (an SDK message, a dict, or a stream's final message)."""
    cm = reply.get("context_management") if isinstance(reply, Mapping) else getattr(reply, "context_management", None)
    if cm is None and not isinstance(reply, Mapping):  # plain (non-beta) SDK models keep it as an extra
        cm = (getattr(reply, "model_extra", None) or {}).get("context_management")
    if cm is None:
        return []
    edits = cm.get("applied_edits") if isinstance(cm, Mapping) else getattr(cm, "applied_edits", None)
    out = []
    for e in edits or []:
        out.append(AppliedEdit.model_validate(e if isinstance(e, Mapping) else e.model_dump()))
    return out


class Compaction(BaseModel):
    """A ``compaction`` block from a reply: the server's summary of the history it replaced.

    Send ``block`` back verbatim, in the assistant message that carried it: the server then
    ignores everything before it. ``content`` is None when compaction failed (a no-op block).
    """

    model_config = ConfigDict(frozen=True)
    content: str | None = None
    block: dict[str, Any]

    def __str__(self) -> str:
        return f"{COMPACT}: history replaced by a {len(self.content or '')}-character summary"


def compaction_of(reply: Any) -> Compaction | None:
    """The ``compaction`` block of ``reply`` (an SDK message or a dict), or None."""
    content = reply.get("content") if isinstance(reply, Mapping) else getattr(reply, "content", None)
    for b in content or []:
        raw = b if isinstance(b, Mapping) else (b.model_dump(exclude_none=True) if hasattr(b, "model_dump") else {})
        if raw.get("type") == "compaction":
            return Compaction(content=raw.get("content"), block=dict(raw))
    return None


@dataclass
class ServerEdits(Strategy):
    """Send ``context_management`` edits when the model supports them; else trim with ``fallback``.

    ``trigger_tokens``: clear once the input passes this many tokens; ``keep_tool_uses``: the
    newest tool uses left intact; ``clear_at_least``: clear only if that many tokens go (so a
    broken prompt cache is worth it); ``exclude_tools``: tool names never cleared;
    ``keep_thinking_turns``: assistant turns whose thinking is kept (``None`` keeps all, which
    keeps the cache; needs ``thinking`` enabled in the request). ``compact``: also let the
    server summarize the history once the input reaches ``compact_trigger_tokens`` (with
    ``compact_instructions``; ``pause_after_compaction`` returns the summary alone, with
    ``stop_reason`` "compaction"). ``supported`` forces the decision (e.g. False for an account
    without the beta); by default the model decides.

    As a strategy it sends the whole history when the server's clearing is predicted (by
    :func:`apply_edits` with the conversation's counter) to bring it under the budget, and
    otherwise selects turns like ``fallback``. :meth:`params` gives the request fields;
    :meth:`observe` reads a reply.
    """

    clear_tool_uses: bool = True
    clear_thinking: bool = False
    trigger_tokens: int = _DEFAULT_TRIGGER
    keep_tool_uses: int = _DEFAULT_KEEP
    clear_at_least: int | None = None
    exclude_tools: tuple[str, ...] = ()
    clear_tool_inputs: bool = False
    keep_thinking_turns: int | None = 1
    compact: bool = False
    compact_trigger_tokens: int = _COMPACT_TRIGGER
    compact_instructions: str | None = None
    pause_after_compaction: bool = False
    supported: bool | None = None
    fallback: StrategyLike = field(default_factory=SlidingWindow)
    #: What the server cleared in the last reply seen by :meth:`observe`.
    last_applied: list[AppliedEdit] = field(default_factory=list, init=False, compare=False)
    #: The compaction block of the last reply seen by :meth:`observe`, if the server compacted.
    last_compaction: Compaction | None = field(default=None, init=False, compare=False)
    name: ClassVar[str] = "server_edits"

    def __post_init__(self) -> None:
        if not (self.clear_tool_uses or self.clear_thinking or self.compact):
            raise InvalidConfigError(
                "ServerEdits needs at least one of clear_tool_uses=True, clear_thinking=True or compact=True"
            )
        for what, value, low in (
            ("trigger_tokens", self.trigger_tokens, 1), ("keep_tool_uses", self.keep_tool_uses, 0),
            ("clear_at_least", self.clear_at_least, 1), ("keep_thinking_turns", self.keep_thinking_turns, 1),
            ("compact_trigger_tokens", self.compact_trigger_tokens, 1),
        ):  # fmt: skip
            if value is None and what in ("clear_at_least", "keep_thinking_turns"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidConfigError(f"{what} must be an int >= {low}, got {value!r}")
        if isinstance(self.exclude_tools, str) or not all(isinstance(t, str) for t in self.exclude_tools):
            raise InvalidConfigError(f"exclude_tools must be a list of tool names, got {self.exclude_tools!r}")
        self.exclude_tools = tuple(self.exclude_tools)
        if self.compact_instructions is not None and not isinstance(self.compact_instructions, str):
            raise InvalidConfigError(f"compact_instructions must be a str, got {self.compact_instructions!r}")
        if not callable(self.fallback):
            raise InvalidConfigError(f"fallback must be a strategy (e.g. SlidingWindow()), got {self.fallback!r}")

    def active(self, model: str) -> bool:
        """Whether requests for ``model`` carry the edits (else only the fallback trims)."""
        return self.supported if self.supported is not None else supports_context_edits(model)

    def edits(self) -> list[dict[str, Any]]:
        """The ``context_management.edits`` list, in the API's shape (thinking first, as it requires)."""
        out: list[dict[str, Any]] = []
        if self.clear_thinking:
            keep: Any = "all" if self.keep_thinking_turns is None else {
                "type": "thinking_turns", "value": self.keep_thinking_turns}  # fmt: skip
            out.append({"type": CLEAR_THINKING, "keep": keep})
        if self.clear_tool_uses:
            edit: dict[str, Any] = {
                "type": CLEAR_TOOL_USES,
                "trigger": {"type": "input_tokens", "value": self.trigger_tokens},
                "keep": {"type": "tool_uses", "value": self.keep_tool_uses},
            }
            if self.clear_at_least is not None:
                edit["clear_at_least"] = {"type": "input_tokens", "value": self.clear_at_least}
            if self.exclude_tools:
                edit["exclude_tools"] = list(self.exclude_tools)
            if self.clear_tool_inputs:
                edit["clear_tool_inputs"] = True
            out.append(edit)
        if self.compact:
            compaction: dict[str, Any] = {
                "type": COMPACT, "trigger": {"type": "input_tokens", "value": self.compact_trigger_tokens},
                "pause_after_compaction": self.pause_after_compaction,
            }  # fmt: skip
            if self.compact_instructions is not None:
                compaction["instructions"] = self.compact_instructions
            out.append(compaction)
        return out

    def params(self, model: str) -> dict[str, Any]:
        """Extra request fields for ``model``: ``context_management`` and the beta header, or {}."""
        if not self.active(model):
            return {}
        betas = f"{BETA},{COMPACT_BETA}" if self.compact else BETA
        return {"context_management": {"edits": self.edits()}, "extra_headers": {"anthropic-beta": betas}}

    def observe(self, reply: Any) -> list[AppliedEdit]:
        """Read what the server cleared (:attr:`last_applied`) and compacted (:attr:`last_compaction`)."""
        self.last_applied = applied_edits(reply)
        self.last_compaction = compaction_of(reply)
        return self.last_applied

    def __call__(self, state: TrimState) -> Selection:
        if self.active(state.model) and state.counter is not None and state.turns:
            estimate = self.estimate(state)
            if estimate <= state.budget:
                raw = state.cost(0)
                note = "" if estimate == raw else f"the server's edits bring {raw} tokens down to {estimate}"
                return Selection(0, note=note, estimate=estimate)
        return as_selection(self.fallback(state))

    def estimate(self, state: TrimState) -> int:
        """The whole history's request size (input + max_tokens) after the server's clearing edits.

        Compaction is left out: its summary's size is the server's to choose.
        """
        count = state.counter.count_message if state.counter else (lambda m: 0)
        edits = [e for e in self.edits() if e["type"] != COMPACT]
        edited, _ = apply_edits(state.messages, edits, lambda ms: state.fixed + sum(count(m) for m in ms))
        return state.fixed + state.max_tokens + sum(count(m) for m in edited)

    def config(self) -> dict[str, Any]:
        fb = self.fallback.config() if isinstance(self.fallback, Strategy) else {"type": "custom"}
        return {
            "type": self.name, "clear_tool_uses": self.clear_tool_uses, "clear_thinking": self.clear_thinking,
            "trigger_tokens": self.trigger_tokens, "keep_tool_uses": self.keep_tool_uses,
            "clear_at_least": self.clear_at_least, "exclude_tools": list(self.exclude_tools),
            "clear_tool_inputs": self.clear_tool_inputs, "keep_thinking_turns": self.keep_thinking_turns,
            "compact": self.compact, "compact_trigger_tokens": self.compact_trigger_tokens,
            "compact_instructions": self.compact_instructions, "pause_after_compaction": self.pause_after_compaction,
            "supported": self.supported, "fallback": fb,
        }  # fmt: skip

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ServerEdits:
        from .strategies import strategy_from_config

        kw = {k: v for k, v in config.items() if k not in ("type", "fallback")}
        kw["exclude_tools"] = tuple(kw.get("exclude_tools") or ())
        return cls(**kw, fallback=strategy_from_config(config.get("fallback")))


# -- the server's side ---------------------------------------------------------------------------


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
