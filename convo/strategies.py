"""Strategies that fit a conversation into its token budget, as small objects over one state.

A strategy is any callable ``strategy(state: TrimState) -> Selection``. It sees the history as
whole *turns* — a user message and everything that answers it, so a ``tool_use`` stays with
its ``tool_result`` and a thinking block with its reply — together with their token sizes,
and chooses which turns to send. It never mutates the conversation, so a test builds a state
and calls the strategy: no network, no sleeping.

Besides fitting, a strategy may plan a summarizing step, add request fields and read each
reply: :class:`StrategyProtocol` lists these hooks, :class:`Strategy` gives no-op defaults, and
the conversation calls every hook through :func:`as_strategy`, so a plain callable works too.
Strategies compose: ``first | second`` uses ``first`` and falls back to ``second`` when
``first`` raises a :class:`~convo.ConvoError` or returns a selection that does not fit; a
composite passes every other hook on to its parts. Built-in strategies save and load exactly
(:meth:`Strategy.config`, :func:`strategy_from_config`); one that cannot be rebuilt is refused
when the conversation is saved, never swapped for another when it is loaded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Union

from ._exceptions import ContextOverflowError, ConversationFileError, ConvoError, InvalidConfigError
from ._trim import Selection, TrimState, as_selection

if TYPE_CHECKING:
    from .summarize import Fold

__all__ = [
    "OrElse",
    "Selection",
    "SlidingWindow",
    "Strategy",
    "StrategyLike",
    "StrategyProtocol",
    "TrimState",
    "as_selection",
    "as_strategy",
    "merge_params",
    "stepped_start",
    "strategy_from_config",
]


#: What ``Conversation(strategy=...)`` takes: a :class:`Strategy`, or any callable from a state to a
#: selection (or to the first turn kept), with any of the other hooks of :class:`StrategyProtocol`.
StrategyLike = Union["Strategy", Callable[[TrimState], Selection | int]]


class StrategyProtocol(Protocol):
    """Every hook the conversation calls on its strategy, declared once.

    ``__call__`` fits: it picks the turns to send (pure). ``plan`` returns the turns to fold
    into the summary before fitting, or None; the returned :class:`~convo.summarize.Fold` names
    the writer that summarizes them (see :class:`~convo.Summarize`). ``params`` gives extra
    request fields for a model (server-side edits, beta headers); ``observe`` reads each reply;
    ``config`` is the JSON-able form saved with a conversation and rebuilt by
    :func:`strategy_from_config`. Subclass :class:`Strategy` for no-op defaults of all but
    ``__call__``; a plain callable is a strategy with only ``__call__``.
    """

    def __call__(self, state: TrimState) -> Selection | int: ...

    def plan(self, state: TrimState, *, force: bool = False) -> Fold | None: ...

    def params(self, model: str) -> dict[str, Any]: ...

    def observe(self, reply: Any) -> object: ...

    def config(self) -> dict[str, Any]: ...


class Strategy:
    """Base of the strategies: no-op hooks (see :class:`StrategyProtocol`), ``|`` and saving.

    A subclass that sets its own ``name`` is registered under it, so a saved conversation can
    rebuild it: override :meth:`config` and :meth:`from_config` when it has settings. One
    without its own ``name`` cannot be saved, and :meth:`config` says so at save time.
    """

    name: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Strategy]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.__dict__.get("name"):  # its own name: a subclass of SlidingWindow is not one
            Strategy.registry[cls.name] = cls

    def __call__(self, state: TrimState) -> Selection:  # pragma: no cover - abstract
        raise NotImplementedError

    def __or__(self, other: StrategyLike) -> OrElse:
        return OrElse((self, other))

    def plan(self, state: TrimState, *, force: bool = False) -> Fold | None:
        """The turns to summarize before fitting; None: this strategy does not summarize."""
        return None

    def params(self, model: str) -> dict[str, Any]:
        """Extra request fields for ``model``; none by default."""
        return {}

    def observe(self, reply: Any) -> object:
        """Read a reply to a request this strategy fitted; nothing by default."""
        return None

    def config(self) -> dict[str, Any]:
        """A JSON-able description, saved with a conversation so ``load`` can rebuild it.

        Raises :class:`~convo.ConversationFileError` for a strategy that cannot be rebuilt.
        """
        return {"type": self._saved_type()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Strategy:
        """Rebuild from :meth:`config`; the default takes no settings."""
        return cls()

    def _saved_type(self) -> str:
        kind = type(self)
        if not kind.__dict__.get("name") or Strategy.registry.get(kind.name) is not kind:
            raise unsavable(self, f"{kind.__name__} has no registered name")
        return kind.name


def unsavable(strategy: object, why: str) -> ConversationFileError:
    """The error for a strategy that a saved conversation could not rebuild."""
    return ConversationFileError(
        f"the strategy {label(strategy)} cannot be saved ({why}), so a saved conversation could not rebuild it. "
        "Save with conv.save(path, strategy=False) and pass Conversation.load(path, strategy=...), or make it "
        "a Strategy subclass with its own name, config() and from_config()"
    )


def as_strategy(strategy: StrategyLike) -> Strategy:
    """``strategy`` with every hook: a :class:`Strategy` as is, anything else adapted."""
    return strategy if isinstance(strategy, Strategy) else _Adapted(strategy)


class _Adapted(Strategy):
    """A plain callable (or an object with some of the hooks) seen as a Strategy: the hooks it
    defines are used, the others are no-ops, and it cannot be saved unless it has ``config``."""

    __slots__ = ("inner",)

    def __init__(self, inner: StrategyLike) -> None:
        self.inner = inner

    def __call__(self, state: TrimState) -> Selection:
        return as_selection(self.inner(state))

    def plan(self, state: TrimState, *, force: bool = False) -> Fold | None:
        hook = getattr(self.inner, "plan", None)
        return hook(state, force=force) if hook is not None else None

    def params(self, model: str) -> dict[str, Any]:
        hook = getattr(self.inner, "params", None)
        return dict(hook(model)) if hook is not None else {}

    def observe(self, reply: Any) -> object:
        hook = getattr(self.inner, "observe", None)
        return hook(reply) if hook is not None else None

    def config(self) -> dict[str, Any]:
        hook = getattr(self.inner, "config", None)
        if hook is None:
            raise unsavable(self.inner, "it is a plain callable")
        return dict(hook())


def strategy_from_config(config: Mapping[str, Any]) -> Strategy:
    """Rebuild a strategy from :meth:`Strategy.config`, exactly; a type it does not know is an error.

    Raises :class:`~convo.InvalidConfigError` (``Conversation.load`` reports it as a
    :class:`~convo.ConversationFileError`) rather than put another strategy in its place.
    """
    kind = config.get("type") if isinstance(config, Mapping) else None
    if kind == "custom":
        raise InvalidConfigError(
            "the conversation was saved without its strategy (a custom one); pass it again: "
            "Conversation.load(path, strategy=...)"
        )
    from . import context_edits, summarize  # noqa: F401  (register the built-ins defined there)

    cls = Strategy.registry.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted(Strategy.registry))
        raise InvalidConfigError(
            f"unknown strategy {config!r} (known types: {known}); import the module that defines it "
            "before loading, or pass Conversation.load(path, strategy=...)"
        )
    return cls.from_config(config)


def merge_params(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Request fields of ``first`` with those of ``second`` added: nested dicts (``extra_headers``,
    ``context_management``) are merged, ``first`` wins a clash, and two ``anthropic-beta`` headers
    are joined. Neither argument is changed."""
    out = dict(first)
    for key, value in second.items():
        mine = out.get(key)
        if key not in out:
            out[key] = value
        elif isinstance(mine, Mapping) and isinstance(value, Mapping):
            out[key] = merge_params(mine, value)
        elif key == "anthropic-beta" and isinstance(mine, str) and isinstance(value, str):
            betas = [b.strip() for b in f"{mine},{value}".split(",") if b.strip()]
            out[key] = ",".join(dict.fromkeys(betas))
    return out


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
        kind = self._saved_type()
        return {"type": kind, "low_water": self.low_water} if self.low_water < 1 else {"type": kind}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SlidingWindow:
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
    """Try each strategy in turn; the first whose selection fits wins (``first | second``).

    Every other hook goes to all parts: the first part that plans a fold folds, ``params`` of
    all parts are merged (earlier parts win a clash), and each part observes every reply.
    """

    strategies: tuple[StrategyLike, ...] = field(default=())
    name: ClassVar[str] = "or_else"

    def __post_init__(self) -> None:
        if not self.strategies or not all(callable(s) for s in self.strategies):
            raise InvalidConfigError(
                f"OrElse needs one or more strategies (callables), got {self.strategies!r}; e.g. "
                "SlidingWindow(low_water=0.6) | SlidingWindow()"
            )
        object.__setattr__(self, "strategies", tuple(self.strategies))

    def __or__(self, other: StrategyLike) -> OrElse:
        return OrElse((*self.strategies, other))

    def __copy__(self) -> OrElse:
        """A copy whose parts are copies too (so ``conv.fork()`` shares no part's state)."""
        return type(self)(tuple(copy.copy(s) for s in self.strategies))

    def __call__(self, state: TrimState) -> Selection:
        reasons: list[str] = []
        for strategy in self.strategies:
            try:
                sel = as_selection(strategy(state))
            except ConvoError as exc:
                reasons.append(f"{label(strategy)}: {exc}")
                continue
            if state.cost(sel) <= state.budget:
                note = "; ".join(reasons)
                return replace(sel, note="; ".join(filter(None, (note, sel.note))))
            reasons.append(f"{label(strategy)}: selection needs {state.cost(sel)} tokens > budget {state.budget}")
        if state.cost(state.turns - 1) > state.budget:
            raise state.overflow()
        raise ContextOverflowError(
            "no strategy produced a request within the budget (" + "; ".join(reasons) + ")",
            needed=state.minimum(),
            allowed=state.budget,
        )

    def plan(self, state: TrimState, *, force: bool = False) -> Fold | None:
        for strategy in self.strategies:
            fold = as_strategy(strategy).plan(state, force=force)
            if fold is not None:
                return fold
        return None

    def params(self, model: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for strategy in self.strategies:
            out = merge_params(out, as_strategy(strategy).params(model))
        return out

    def observe(self, reply: Any) -> object:
        for strategy in self.strategies:
            as_strategy(strategy).observe(reply)
        return None

    def config(self) -> dict[str, Any]:
        return {"type": self._saved_type(), "strategies": [as_strategy(s).config() for s in self.strategies]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OrElse:
        """Rebuild from :meth:`config`, each part by :func:`strategy_from_config`."""
        parts = config.get("strategies")
        if not isinstance(parts, list):
            raise InvalidConfigError(f"an or_else strategy needs a list of 'strategies', got {parts!r}")
        return cls(tuple(strategy_from_config(c) for c in parts))


def label(strategy: object) -> str:
    """A short name for a strategy in messages."""
    if isinstance(strategy, _Adapted):
        strategy = strategy.inner
    if isinstance(strategy, Strategy):
        return type(strategy).__name__
    return str(getattr(strategy, "__name__", None) or type(strategy).__name__)
