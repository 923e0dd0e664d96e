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

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ._edit_rules import (  # noqa: F401  (re-exported: the public names of the edits)
    _COMPACT_TRIGGER,
    _DEFAULT_KEEP,
    _DEFAULT_TRIGGER,
    BETA,
    CLEAR_THINKING,
    CLEAR_TOOL_USES,
    COMPACT,
    COMPACT_BETA,
    PLACEHOLDER,
    adopt_compaction,
    apply_edits,
    check_config,
    compact,
)
from ._exceptions import InvalidConfigError
from .strategies import (
    Selection,
    SlidingWindow,
    Strategy,
    StrategyLike,
    TrimState,
    as_selection,
    as_strategy,
    merge_params,
    strategy_from_config,
)

if TYPE_CHECKING:
    from .summarize import Fold

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

_MODEL = re.compile(r"^claude-(?:(?:opus|sonnet|haiku)-(\d+)|(\d+)-\d+-(?:opus|sonnet|haiku))")


def supports_context_edits(model: str) -> bool:
    """True for the models that take context edits: Claude 4 and later (opus, sonnet, haiku)."""
    m = _MODEL.match(model or "")
    return m is not None and int(m.group(1) or m.group(2)) >= 4


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
    :meth:`observe` reads a reply. The fallback's own hooks are used too: its params are
    merged in, it observes each reply, and it plans a fold (a :class:`~convo.Summarize`
    fallback summarizes) whenever the whole history would not be sent.
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
        """Extra request fields for ``model``: ``context_management`` and the beta header when the
        edits are active, merged with the fallback's own."""
        own: dict[str, Any] = {}
        if self.active(model):
            betas = f"{BETA},{COMPACT_BETA}" if self.compact else BETA
            own = {"context_management": {"edits": self.edits()}, "extra_headers": {"anthropic-beta": betas}}
        return merge_params(own, as_strategy(self.fallback).params(model))

    def observe(self, reply: Any) -> list[AppliedEdit]:
        """Read what the server cleared (:attr:`last_applied`) and compacted (:attr:`last_compaction`);
        the fallback observes the reply too."""
        self.last_applied = applied_edits(reply)
        self.last_compaction = compaction_of(reply)
        as_strategy(self.fallback).observe(reply)
        return self.last_applied

    def __call__(self, state: TrimState) -> Selection:
        estimate = self._edited(state)
        if estimate is not None:
            raw = state.cost(0)
            note = "" if estimate == raw else f"the server's edits bring {raw} tokens down to {estimate}"
            return Selection(0, note=note, estimate=estimate)
        return as_selection(self.fallback(state))

    def plan(self, state: TrimState, *, force: bool = False) -> Fold | None:
        """The fallback's fold (e.g. a :class:`~convo.Summarize` fallback), unless the server's
        edits make the whole history fit, so that the fallback would not be used (``force``
        asks the fallback regardless)."""
        fold = as_strategy(self.fallback).plan(state, force=force)
        if fold is None or force:
            return fold
        return None if self._edited(state) is not None else fold

    def __copy__(self) -> ServerEdits:
        """A copy with its own fallback and its own record of the last reply (for ``conv.fork()``)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.fallback = copy.copy(self.fallback)
        twin.last_applied = list(self.last_applied)
        return twin

    def _edited(self, state: TrimState) -> int | None:
        """The whole history's size after the server's edits, when they are active and it fits."""
        if self.active(state.model) and state.counter is not None and state.turns:
            estimate = self.estimate(state)
            if estimate <= state.budget:
                return estimate
        return None

    def estimate(self, state: TrimState) -> int:
        """The whole history's request size (input + max_tokens) after the server's clearing edits.

        Compaction is left out: its summary's size is the server's to choose.
        """
        count = state.counter.count_message if state.counter else (lambda m: 0)
        edits = [e for e in self.edits() if e["type"] != COMPACT]
        edited, _ = apply_edits(state.messages, edits, lambda ms: state.fixed + sum(count(m) for m in ms))
        return state.fixed + state.max_tokens + sum(count(m) for m in edited)

    def config(self) -> dict[str, Any]:
        return {
            "type": self._saved_type(), "clear_tool_uses": self.clear_tool_uses,
            "clear_thinking": self.clear_thinking, "trigger_tokens": self.trigger_tokens,
            "keep_tool_uses": self.keep_tool_uses, "clear_at_least": self.clear_at_least,
            "exclude_tools": list(self.exclude_tools), "clear_tool_inputs": self.clear_tool_inputs,
            "keep_thinking_turns": self.keep_thinking_turns, "compact": self.compact,
            "compact_trigger_tokens": self.compact_trigger_tokens, "compact_instructions": self.compact_instructions,
            "pause_after_compaction": self.pause_after_compaction, "supported": self.supported,
            "fallback": as_strategy(self.fallback).config(),
        }  # fmt: skip

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ServerEdits:
        """Rebuild from :meth:`config` (as saved with a conversation), the fallback included."""
        kw = {k: v for k, v in config.items() if k not in ("type", "fallback")}
        kw["exclude_tools"] = tuple(kw.get("exclude_tools") or ())
        fallback = config.get("fallback")
        return cls(**kw, fallback=SlidingWindow() if fallback is None else strategy_from_config(fallback))


# -- the server's side ---------------------------------------------------------------------------
