"""Context receipts: what each request of a conversation sent, dropped, cached and cost.

>>> conv.send("Hello")
>>> print(conv.last_receipt)
sent 12 msgs (3,410 tok) | dropped 30 (9,822) | summarized 0 | pinned 2 | cache: system, messages[11] | est 3,520 / actual 3,518 in (read 3,100, write 380) | 61 out | $0.002911

A receipt is drafted when the request is fitted (what was kept, dropped, summarized, where the
breakpoints went, the estimate) and completed from the reply's ``usage`` (actual input, cache
reads and writes, cost). ``conv.receipts`` keeps them all, ``conv.last_receipt`` the newest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from .prices import PriceTable, UnknownModelError

if TYPE_CHECKING:
    from .strategies import Selection, TrimState

__all__ = ["Receipt", "draft"]


class Receipt(BaseModel):
    """One request made through a :class:`~convo.Conversation`; ``str()`` is one line."""

    model_config = ConfigDict(frozen=True)

    model: str
    kept_messages: int
    kept_tokens: int
    dropped_messages: int = 0
    dropped_tokens: int = 0
    summarized_messages: int = 0  # messages the summary stands in for
    summarized_tokens: int = 0  # their tokens
    summary_tokens: int = 0  # the summary's own tokens, as sent
    pinned_messages: int = 0  # pinned messages sent from before the window
    breakpoints: tuple[str, ...] = ()  # where cache_control went: "system", "messages[i]", ...
    estimated_input: int
    input_tokens: int | None = None  # actual total input: cache reads + writes + uncached
    cache_read: int | None = None
    cache_write: int | None = None
    output_tokens: int | None = None
    cost: float | None = None  # USD, None when the model has no price
    note: str = ""

    @property
    def cache_hit_rate(self) -> float | None:
        """Share of the input read from the cache."""
        if not self.input_tokens or self.cache_read is None:
            return None
        return self.cache_read / self.input_tokens

    def completed(self, usage: Any, prices: PriceTable | None = None) -> Receipt:
        """This receipt with the actual numbers from a reply's ``usage``."""
        if usage is None:
            return self

        def get(name: str) -> int:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
            return int(value or 0)

        read, write = get("cache_read_input_tokens"), get("cache_creation_input_tokens")
        try:
            cost: float | None = (prices or PriceTable.default()).cost(usage, self.model)
        except UnknownModelError:
            cost = None
        return self.model_copy(
            update={
                "input_tokens": get("input_tokens") + read + write,
                "cache_read": read,
                "cache_write": write,
                "output_tokens": get("output_tokens"),
                "cost": cost,
            }
        )

    def __str__(self) -> str:
        parts = [
            f"sent {self.kept_messages} msgs ({self.kept_tokens:,} tok)",
            f"dropped {self.dropped_messages} ({self.dropped_tokens:,})",
            f"summarized {self.summarized_messages} ({self.summarized_tokens:,} -> {self.summary_tokens:,})"
            if self.summarized_messages
            else "summarized 0",
            f"pinned {self.pinned_messages}",
            "cache: " + (", ".join(self.breakpoints) or "off"),
        ]
        actual = "?" if self.input_tokens is None else f"{self.input_tokens:,}"
        tail = f"est {self.estimated_input:,} / actual {actual} in"
        if self.input_tokens is not None:
            tail += f" (read {self.cache_read:,}, write {self.cache_write:,})"
        parts.append(tail)
        if self.output_tokens is not None:
            parts.append(f"{self.output_tokens:,} out")
        if self.cost is not None:
            parts.append(f"${self.cost:.6f}")
        if self.note:
            parts.append(self.note)
        return " | ".join(parts)


def _pinned_messages(state: TrimState, upto: int) -> tuple[int, int]:
    """(messages, tokens) of the pinned turns before turn ``upto``."""
    msgs = sum(len(state.turn(t)) for t in state.pinned if t < upto)
    return msgs, state.pinned_before(upto)


def draft(
    model: str, state: TrimState, selection: Selection, breakpoints: list[str], summary_tokens: int = 0
) -> Receipt:
    """The receipt of a fitted request, before it is sent."""
    start = selection.start
    pinned_msgs, pinned_tokens = _pinned_messages(state, start)
    covered = min(state.summary.turns, start) if selection.context and state.summary is not None else 0
    cov_msgs, cov_pinned_tokens = _pinned_messages(state, covered)
    summarized_messages = state.starts[covered] - cov_msgs if covered < state.turns else 0
    summarized_tokens = state.prefix[covered] - cov_pinned_tokens
    before = state.starts[start] - pinned_msgs
    before_tokens = state.prefix[start] - pinned_tokens
    kept_messages = len(state.messages) - state.starts[start] + pinned_msgs
    kept_tokens = state.prefix[-1] - state.prefix[start] + pinned_tokens
    return Receipt(
        model=model,
        kept_messages=kept_messages,
        kept_tokens=kept_tokens,
        dropped_messages=before - summarized_messages,
        dropped_tokens=before_tokens - summarized_tokens,
        summarized_messages=summarized_messages,
        summarized_tokens=summarized_tokens,
        summary_tokens=summary_tokens,
        pinned_messages=pinned_msgs,
        breakpoints=tuple(breakpoints),
        estimated_input=state.cost(selection) - state.max_tokens,
        note=selection.note,
    )
