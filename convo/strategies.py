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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Union

from ._exceptions import ContextOverflowError, ConvoError, InvalidConfigError
from .messages import Message
from .tokens import TokenCounter

if TYPE_CHECKING:
    from .summarize import Summary

__all__ = ["Selection", "SlidingWindow", "Strategy", "StrategyLike", "TrimState", "stepped_start", "strategy_from_config"]


@dataclass(frozen=True, slots=True)
class TrimState:
    """What a strategy sees. Built by the conversation without copying its history.

    ``prefix[i]`` is the token total of turns ``0..i-1`` (so ``len(prefix) == turns + 1``);
    ``pinned`` lists the turns that must be kept, ascending, and ``pinned_prefix[k]`` is the
    token total of the first ``k`` of them. ``fixed`` is the request's framing, system prompt
    and tools. ``summary`` is the conversation's stored summary of its first turns, if any
    (see :class:`~convo.Summarize`); strategies that do not summarize ignore it.

    ``budget`` is in the counter's uncorrected units: the conversation shrinks its budget by
    the model's calibration ``factor`` (see :func:`~convo.tokens.calibrated_budget`) and keeps
    the budget it was given as ``limit``, so that errors speak in the server's tokens.
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
    model: str = ""  # the conversation's model (server-side edits depend on it)
    factor: float = 1.0  # the calibration factor ``budget`` was fitted with
    limit: int | None = None  # the budget as given (None: ``budget`` itself)

    @property
    def turns(self) -> int:
        """How many turns the history has."""
        return len(self.starts)

    def turn(self, i: int) -> Sequence[Message]:
        """The messages of turn ``i``."""
        end = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.messages)
        return self.messages[self.starts[i] : end]

    def turn_tokens(self, i: int) -> int:
        """Tokens of turn ``i``, from the running totals."""
        return self.prefix[i + 1] - self.prefix[i]

    def pinned_before(self, start: int) -> int:
        """Tokens of the pinned turns that come before turn ``start``."""
        return self.pinned_prefix[bisect.bisect_left(self.pinned, start)]

    def cost(self, selection: Selection | int) -> int:
        """Estimated input tokens + max_tokens of the request a selection makes (its own
        ``estimate`` when it has one, e.g. after the server's context edits)."""
        sel = as_selection(selection)
        if sel.estimate is not None:
            return sel.estimate
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
        needed, allowed = self.minimum(), self.budget
        pinned = self.pinned_before(last)
        corrected = ""
        if self.limit is not None:  # in the server's tokens: the estimate corrected, the budget as given
            needed = self.max_tokens + math.ceil((needed - self.max_tokens) * self.factor)
            allowed = self.limit
            if self.factor != 1.0:
                corrected = f" (estimates below x{self.factor:.3f}, as learned from the model's responses)"
        return ContextOverflowError(
            f"the request needs at least {needed} tokens but the budget allows {allowed}{corrected}: "
            f"system prompt and framing {self.fixed}, pinned turns {pinned}, the last turn "
            f"{self.turn_tokens(last)}, max_tokens {self.max_tokens}. Raise the budget, lower "
            "max_tokens, unpin messages or shorten the last message.",
            needed=needed,
            allowed=allowed,
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """A strategy's answer: send turns ``start..`` plus the pinned turns before ``start``.

    ``context`` messages (for example a summary of what was dropped) go first. ``note`` says
    why, when a strategy fell back or did something worth recording. ``estimate``, when set,
    is the request's size (input + max_tokens) as the model will see it — smaller than the
    history sent when the server edits it (:class:`~convo.ServerEdits`); the budget checks it.
    """

    start: int
    context: tuple[Message, ...] = ()
    note: str = ""
    estimate: int | None = None


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

    ``low_water`` (below 1) makes the window cut in steps, for prompt caching: once the
    request reaches the budget, old turns are dropped in one block until it is down to
    ``low_water`` x budget, and the cut then stays put until the budget is reached again — so
    the sent prefix is identical, and read from the cache, for many turns. The cut is derived
    from the history alone (see :func:`stepped_start`), so the strategy stays a pure function.
    """

    low_water: float = 1.0
    name: ClassVar[str] = "sliding_window"

    def __post_init__(self) -> None:
        lw = self.low_water
        if isinstance(lw, bool) or not isinstance(lw, (int, float)) or not 0 < lw <= 1:
            raise InvalidConfigError(f"low_water must be a fraction of the budget in (0, 1], e.g. 0.65; got {lw!r}")

    def __call__(self, state: TrimState) -> Selection:
        last = state.turns - 1
        if state.cost(last) > state.budget:
            raise state.overflow()
        if self.low_water < 1:
            return Selection(start=stepped_start(state, self.low_water))
        # cost(start) never grows with start: binary-search the first start that fits.
        lo, hi = 0, last
        while lo < hi:
            mid = (lo + hi) // 2
            if state.cost(mid) <= state.budget:
                hi = mid
            else:
                lo = mid + 1
        return Selection(start=lo)

    def config(self) -> dict[str, Any]:
        return {"type": self.name, "low_water": self.low_water} if self.low_water < 1 else {"type": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SlidingWindow:
        """Rebuild from :meth:`config` (as saved with a conversation); no ``low_water`` means 1.0."""
        return cls(low_water=config.get("low_water", 1.0))


def stepped_start(state: TrimState, low_water: float, floor: int = 0, extra: int = 0) -> int:
    """The cut of a window that drops old turns in blocks, replayed from the history.

    Starting at turn ``floor``, walk the history as it grew: whenever the turns from the cut to
    some turn ``n`` (plus ``extra`` tokens of context) no longer fit the budget, move the cut to
    the first turn that brings that request down to ``low_water`` x budget. Finished turns never
    change, so earlier cuts never move and the kept prefix stays byte-identical between the
    steps. Each step is two binary searches over the running totals. The result always fits:
    the caller checks first that the last turn (with pinned turns and ``extra``) does.
    """
    prefix, budget, last = state.prefix, state.budget, state.turns
    base = state.fixed + state.max_tokens + extra

    def cost(start: int, n: int) -> int:  # the request turns start..n-1 made, when n turns existed
        return base + prefix[n] - prefix[start] + state.pinned_before(start)

    cut = floor
    while cost(cut, last) > budget:
        lo, hi = cut + 1, last  # the first history length at which the window overflowed
        while lo < hi:
            mid = (lo + hi) // 2
            if cost(cut, mid) > budget:
                hi = mid
            else:
                lo = mid + 1
        n = lo
        target = budget * low_water
        lo, hi = cut, n - 1  # the first start that brings it down to the low-water mark
        while lo < hi:
            mid = (lo + hi) // 2
            if cost(mid, n) <= target:
                hi = mid
            else:
                lo = mid + 1
        cut = max(lo, cut + 1)
    return cut


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
                return replace(sel, note="; ".join(filter(None, (note, sel.note))))
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
