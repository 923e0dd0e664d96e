"""What a strategy sees and what it answers: :class:`TrimState` and :class:`Selection`.

Kept apart from :mod:`convo.strategies` (which re-exports both) so that module holds the
strategies themselves; see there for how they are used.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._exceptions import ContextOverflowError, InvalidConfigError
from .messages import Message
from .tokens import TokenCounter

if TYPE_CHECKING:
    from .summarize import Summary

__all__ = ["Selection", "TrimState", "as_selection"]


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


def as_selection(value: Selection | int) -> Selection:
    """A strategy's answer as a :class:`Selection` (a bare int is the first turn kept)."""
    if isinstance(value, Selection):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Selection(start=value)
    raise InvalidConfigError(f"a strategy must return a Selection or a turn index, got {type(value).__name__}")
