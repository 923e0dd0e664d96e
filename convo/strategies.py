"""Strategies that fit a conversation into its token budget, as small objects over one state.

A strategy is any callable ``strategy(state: TrimState) -> Selection``. It sees the history as
whole *turns* — a user message and everything that answers it, so a ``tool_use`` stays with
its ``tool_result`` and a thinking block with its reply — together with their token sizes,
and chooses which turns to send. It never mutates the conversation, so a test builds a state
and calls the strategy: no network, no sleeping.

Strategies compose: ``first | second`` uses ``first`` and falls back to ``second`` when
``first`` raises a :class:`~convo.ConvoError` or returns a selection that does not fit.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Union

from ._exceptions import ContextOverflowError, ConvoError, InvalidConfigError
from .messages import Message
from .tokens import TokenCounter

if TYPE_CHECKING:
    from .summarize import Summary

__all__ = ["Selection", "SlidingWindow", "Strategy", "StrategyLike", "TrimState", "strategy_from_config"]


@dataclass(frozen=True, slots=True)
class TrimState:
    """What a strategy sees. Built by the conversation without copying its history.

    ``prefix[i]`` is the token total of turns ``0..i-1`` (so ``len(prefix) == turns + 1``);
    ``pinned`` lists the turns that must be kept, ascending, and ``pinned_prefix[k]`` is the
    token total of the first ``k`` of them. ``fixed`` is the request's framing, system prompt
    and tools. ``summary`` is the conversation's stored summary of its first turns, if any
    (see :class:`~convo.Summarize`); strategies that do not summarize ignore it.
    """

    messages: Sequence[Message]
    starts: Sequence[int]
    prefix: Sequence[int]
    pinned: Sequence[int]
    pinned_prefix: Sequence[int]
    fixed: int
    max_tokens: int
    budget: int
    counter: TokenCounter | None = None
    summary: Summary | None = None

    @property
    def turns(self) -> int:
        return len(self.starts)

    def turn(self, i: int) -> Sequence[Message]:
        """The messages of turn ``i``."""
        end = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.messages)
        return self.messages[self.starts[i] : end]

    def turn_tokens(self, i: int) -> int:
        return self.prefix[i + 1] - self.prefix[i]

    def pinned_before(self, start: int) -> int:
        """Tokens of the pinned turns that come before turn ``start``."""
        return self.pinned_prefix[bisect.bisect_left(self.pinned, start)]

    def cost(self, selection: Selection | int) -> int:
        """Estimated input tokens + max_tokens of the request a selection makes."""
        sel = as_selection(selection)
        context = 0
        if sel.context:
            count = self.counter.count_message if self.counter else (lambda m: 0)
            context = sum(count(m) for m in sel.context)
        kept = self.prefix[-1] - self.prefix[sel.start] + self.pinned_before(sel.start)
        return self.fixed + self.max_tokens + context + kept

    def minimum(self) -> int:
        """The smallest possible request: everything pinned plus the last turn."""
        return self.cost(self.turns - 1)

    def overflow(self) -> ContextOverflowError:
        """The error for a history whose must-keep part does not fit."""
        last = self.turns - 1
        needed = self.minimum()
        pinned = self.pinned_before(last)
        return ContextOverflowError(
            f"the request needs at least {needed} tokens but the budget allows {self.budget}: "
            f"system prompt and framing {self.fixed}, pinned turns {pinned}, the last turn "
            f"{self.turn_tokens(last)}, max_tokens {self.max_tokens}. Raise the budget, lower "
            "max_tokens, unpin messages or shorten the last message.",
            needed=needed,
            allowed=self.budget,
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """A strategy's answer: send turns ``start..`` plus the pinned turns before ``start``.

    ``context`` messages (for example a summary of what was dropped) go first. ``note`` says
    why, when a strategy fell back or did something worth recording.
    """

    start: int
    context: tuple[Message, ...] = ()
    note: str = ""


StrategyLike = Union["Strategy", Callable[[TrimState], Union[Selection, int]]]


def as_selection(value: Selection | int) -> Selection:
    if isinstance(value, Selection):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Selection(start=value)
    raise InvalidConfigError(f"a strategy must return a Selection or a turn index, got {type(value).__name__}")


class Strategy:
    """Base of the built-in strategies: adds composition with ``|`` and a saved config."""

    name: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Strategy]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            Strategy.registry[cls.name] = cls

    def __call__(self, state: TrimState) -> Selection:  # pragma: no cover - abstract
        raise NotImplementedError

    def __or__(self, other: StrategyLike) -> OrElse:
        return OrElse((self, other))

    def config(self) -> dict[str, Any]:
        """A JSON-able description, saved with a conversation so ``load`` can rebuild it."""
        return {"type": self.name}


def strategy_from_config(config: dict[str, Any] | None) -> Strategy:
    """Rebuild a built-in strategy from :meth:`Strategy.config`; unknown ones become a window."""
    if not config or config.get("type") not in Strategy.registry:
        return SlidingWindow()
    cls = Strategy.registry[config["type"]]
    return cls.from_config(config)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SlidingWindow(Strategy):
    """Keep the newest turns that fit; drop the oldest whole turns first.

    The system prompt and pinned turns are always kept, a turn is never split (so the request
    starts with a user turn and every ``tool_use`` keeps its ``tool_result``), and the last
    turn is always sent. When even those do not fit it raises
    :class:`~convo.ContextOverflowError`. Finding the cut is a binary search over running
    totals, so it costs O(log n) however long the history is.
    """

    name: ClassVar[str] = "sliding_window"

    def __call__(self, state: TrimState) -> Selection:
        last = state.turns - 1
        if state.cost(last) > state.budget:
            raise state.overflow()
        # cost(start) never grows with start: binary-search the first start that fits.
        lo, hi = 0, last
        while lo < hi:
            mid = (lo + hi) // 2
            if state.cost(mid) <= state.budget:
                hi = mid
            else:
                lo = mid + 1
        return Selection(start=lo)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SlidingWindow:
        return cls()


@dataclass(frozen=True)
class OrElse(Strategy):
    """Try each strategy in turn; the first whose selection fits wins."""

    strategies: tuple[StrategyLike, ...] = field(default=())
    name: ClassVar[str] = "or_else"

    def __or__(self, other: StrategyLike) -> OrElse:
        return OrElse((*self.strategies, other))

    def __call__(self, state: TrimState) -> Selection:
        reasons: list[str] = []
        for strategy in self.strategies:
            try:
                sel = as_selection(strategy(state))
            except ConvoError as exc:
                reasons.append(f"{_label(strategy)}: {exc}")
                continue
            if state.cost(sel) <= state.budget:
                note = "; ".join(reasons)
                return Selection(sel.start, sel.context, "; ".join(filter(None, (note, sel.note))))
            reasons.append(f"{_label(strategy)}: selection needs {state.cost(sel)} tokens > budget {state.budget}")
        if state.cost(state.turns - 1) > state.budget:
            raise state.overflow()
        raise ContextOverflowError(
            "no strategy produced a request within the budget (" + "; ".join(reasons) + ")",
            needed=state.minimum(),
            allowed=state.budget,
        )

    def config(self) -> dict[str, Any]:
        parts = [s.config() if isinstance(s, Strategy) else {"type": "custom"} for s in self.strategies]
        return {"type": self.name, "strategies": parts}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Strategy:
        parts = [strategy_from_config(c) for c in config.get("strategies", [])]
        return cls(tuple(parts)) if parts else SlidingWindow()


def _label(strategy: Any) -> str:
    return type(strategy).__name__ if isinstance(strategy, Strategy) else getattr(strategy, "__name__", "strategy")
