"""Summarize: fold the oldest turns into a rolling summary once a conversation nears its budget.

>>> conv = Conversation(model="claude-sonnet-4-6", budget=8000, strategy=Summarize(), client=client)
>>> conv.send("...")   # past 80% of the budget, the oldest turns are summarized first

Summarizing calls a model, so it cannot happen inside a strategy (strategies are pure). It is a
step of its own that the conversation runs before fitting each request (and on
``conv.compact()``): :meth:`Summarize.plan` picks the turns to fold, the summarizer writes the
new summary from the previous one and those turns only — so each turn is summarized once — and
the conversation stores it with the number of turns it covers. Fitting then stays a pure
function of :class:`~convo.TrimState` and that stored :class:`Summary`: the summary goes first
as one marked user message, pinned turns verbatim, then the turns after the summary; when that
does not fit, older turns are dropped as by the sliding window.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ._exceptions import ClientMismatchError, InvalidConfigError, SummaryError
from .messages import Message, to_message
from .strategies import Selection, SlidingWindow, Strategy, TrimState, stepped_start, unsavable

__all__ = ["HEADER", "Fold", "FoldWriter", "Summarize", "Summarizer", "Summary", "redact_fold", "summary_request"]

#: The first line of the context message that carries the summary.
HEADER = "[Summary of the earlier conversation]"

SYSTEM = (
    "You keep the running summary of a conversation between a user and an assistant. Merge the "
    "summary so far with the new turns into one updated summary that can replace them. Keep "
    "names, facts, numbers, decisions, preferences, code identifiers and open questions; drop "
    "pleasantries. Write plain prose in the conversation's language, with no preamble."
)

#: ``summarizer(previous_summary, turns) -> str`` (or an awaitable of str, on the async path).
Summarizer = Callable[[str | None, list[Message]], str | Awaitable[str]]


@dataclass(frozen=True)
class Summary:
    """A summary of the conversation's first ``turns`` turns. Pinned turns among them were not
    folded into it: they are still sent verbatim."""

    text: str
    turns: int

    @functools.cached_property
    def message(self) -> Message:
        """The context message sent in place of the turns it covers."""
        return Message(role="user", content=f"{HEADER}\n{self.text}")


class FoldWriter(Protocol):
    """What writes a :class:`Fold`'s summary: :class:`Summarize`, or a strategy like it."""

    @property
    def max_calls(self) -> int:
        """Summarizing calls allowed per turn (a summary too long is asked for again, shorter)."""
        ...

    def summarize(self, fold: Fold, client: Any, model: str, max_tokens: int | None = None) -> str: ...

    async def asummarize(self, fold: Fold, client: Any, model: str, max_tokens: int | None = None) -> str: ...


@dataclass(frozen=True)
class Fold:
    """One summarizing step: fold the unpinned turns ``start..end-1`` (their ``messages``) into
    the ``previous`` summary; the new summary covers the first ``end`` turns. ``writer`` is the
    strategy that planned it and writes the summary (so a fold planned inside a composite is
    written by the part that planned it)."""

    previous: str | None
    messages: tuple[Message, ...]
    start: int
    end: int
    writer: FoldWriter | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Summarize(Strategy):
    """Past ``trigger`` x budget, fold the turns before the last ``keep_last`` exchanges into a
    rolling summary of at most ``max_summary_tokens``.

    ``summarizer`` is any ``(previous_summary, turns) -> str`` callable (async on the async
    path); by default the conversation's client writes the summary, with ``model`` if given (a
    cheaper model), else the conversation's. A summary replaces turns only when it came back,
    is non-empty and is shorter than what it replaces; one that is too long is asked for again,
    shorter, up to ``max_calls`` summarizing calls per turn. If summarizing fails, the turns are
    kept, the conversation falls back to the sliding window and records why
    (``conv.summary_error``, ``conv.last_selection.note``). ``low_water`` as for
    :class:`SlidingWindow`, for the turns after the summary.
    """

    trigger: float = 0.8
    keep_last: int = 4
    max_summary_tokens: int = 1024
    summarizer: Summarizer | None = field(default=None, repr=False, compare=False)
    model: str | None = None
    low_water: float = 1.0
    max_calls: int = 2
    name: ClassVar[str] = "summarize"

    def __post_init__(self) -> None:
        if isinstance(self.trigger, bool) or not isinstance(self.trigger, (int, float)) or not 0 < self.trigger <= 1:
            raise InvalidConfigError(f"trigger must be a fraction of the budget in (0, 1], got {self.trigger!r}")
        if isinstance(self.keep_last, bool) or not isinstance(self.keep_last, int) or self.keep_last < 0:
            raise InvalidConfigError(f"keep_last must be an int >= 0 (exchanges kept verbatim), got {self.keep_last!r}")
        tokens = self.max_summary_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise InvalidConfigError(f"max_summary_tokens must be a positive int, got {tokens!r}")
        if self.summarizer is not None and not callable(self.summarizer):
            raise InvalidConfigError(
                f"summarizer must be a callable (previous_summary, turns) -> str, got {type(self.summarizer).__name__}"
            )
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise InvalidConfigError(f"model must be a model name such as 'claude-haiku-4-5', got {self.model!r}")
        SlidingWindow(self.low_water)  # checks it
        if isinstance(self.max_calls, bool) or not isinstance(self.max_calls, int) or self.max_calls < 1:
            raise InvalidConfigError(f"max_calls must be an int >= 1 (summarizing calls per turn), got {self.max_calls!r}")

    # -- fitting (pure) ----------------------------------------------------------------------

    def __call__(self, state: TrimState) -> Selection:
        summary = state.summary
        last = state.turns - 1
        if summary is None or summary.turns <= 0:
            return SlidingWindow(self.low_water)(state)
        start = min(summary.turns, last)
        context = (summary.message,)
        extra = state.cost(Selection(last, context)) - state.cost(last)  # the summary's tokens
        if state.cost(start) + extra <= state.budget:
            return Selection(start, context)
        if state.cost(last) + extra <= state.budget:
            if self.low_water < 1:  # cut in blocks after the summary, so the prefix stays cached
                lo = stepped_start(state, self.low_water, floor=start, extra=extra)
            else:  # cost falls as the start moves on: binary-search the first fit
                lo, hi = start, last
                while lo < hi:
                    mid = (lo + hi) // 2
                    if state.cost(mid) + extra <= state.budget:
                        hi = mid
                    else:
                        lo = mid + 1
            note = f"the summary and all turns after it did not fit; dropped {lo - start} more turn(s)"
            return Selection(lo, context, note)
        window = SlidingWindow(self.low_water)(state)
        return Selection(window.start, (), "the summary did not fit in the budget; sent without it (sliding window)")

    def plan(self, state: TrimState, *, force: bool = False) -> Fold | None:
        """The turns to fold now, or None: below the trigger (unless ``force``), or nothing to fold.

        The request is measured as it would be sent with the current summary (input +
        max_tokens). The last ``keep_last`` exchanges — and the newest turn, while it waits for
        its answer — are never folded, nor are pinned turns.
        """
        summary = state.summary
        covered = min(summary.turns, state.turns) if summary is not None else 0
        if state.turns == 0:
            return None
        keep = self.keep_last
        if state.turn(state.turns - 1)[-1].role == "user":
            keep += 1  # the pending turn is not an exchange yet
        end = state.turns - max(1, keep)
        if end <= covered:
            return None
        if not force:
            context = (summary.message,) if summary is not None and summary.turns > 0 else ()
            if state.cost(Selection(covered, context)) <= self.trigger * state.budget:
                return None
        pinned = set(state.pinned)
        messages = tuple(m for t in range(covered, end) if t not in pinned for m in state.turn(t))
        if not messages:
            return None
        return Fold(summary.text if summary is not None else None, messages, covered, end, writer=self)

    # -- summarizing (calls the model) ------------------------------------------------------------

    def summarize(self, fold: Fold, client: Any, model: str, max_tokens: int | None = None) -> str:
        """Write the summary for ``fold`` with the summarizer, or with ``client`` (a Client)."""
        if self.summarizer is not None:
            text = self.summarizer(fold.previous, list(fold.messages))
            if inspect.isawaitable(text):
                getattr(text, "close", lambda: None)()
                raise InvalidConfigError(
                    "the summarizer is async: use the async methods (asend, astream, acompact), "
                    "or give a sync callable"
                )
            return _clean(text)
        reply = _need(client).create(**summary_request(fold, max_tokens or self.max_summary_tokens, self.model or model))
        if inspect.isawaitable(reply):
            getattr(reply, "close", lambda: None)()
            raise ClientMismatchError(
                "the conversation's client is an AsyncClient, so summarizing must be awaited: use "
                "await conv.asend(...), conv.astream(...) or await conv.acompact(), or pass a convo.Client"
            )
        return _clean(_reply_text(reply))

    async def asummarize(self, fold: Fold, client: Any, model: str, max_tokens: int | None = None) -> str:
        """The async twin of :meth:`summarize` (sync summarizers and clients work too)."""
        if self.summarizer is not None:
            text = self.summarizer(fold.previous, list(fold.messages))
        else:
            limit = max_tokens or self.max_summary_tokens
            text = _need(client).create(**summary_request(fold, limit, self.model or model))
        if inspect.isawaitable(text):
            text = await text
        return _clean(text if self.summarizer is not None else _reply_text(text))

    # -- saving ---------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Saved with the conversation. A custom ``summarizer`` (a function) cannot be saved, so a
        Summarize with one is refused here: save with ``strategy=False`` and pass the strategy
        to ``Conversation.load(path, strategy=...)``."""
        if self.summarizer is not None:
            raise unsavable(self, "its summarizer is a function")
        return {
            "type": self._saved_type(),
            "trigger": self.trigger,
            "keep_last": self.keep_last,
            "max_summary_tokens": self.max_summary_tokens,
            "model": self.model,
            "max_calls": self.max_calls,
            **({"low_water": self.low_water} if self.low_water < 1 else {}),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Summarize:
        """Rebuild from :meth:`config` (as saved with a conversation); missing settings take their
        defaults (files written before a setting existed)."""
        keys = ("trigger", "keep_last", "max_summary_tokens", "model", "low_water", "max_calls")
        return cls(**{k: config[k] for k in keys if k in config})


def redact_fold(fold: Fold, redactor: Any, mapping: Mapping[str, str]) -> tuple[Fold, dict[str, str]]:
    """``fold`` as it may leave the process: its turns and the previous summary redacted with the
    conversation's ``redactor`` and stable ``mapping`` (returned, extended). The summarizer —
    a model call or a function — then sees placeholders only, and the summary it writes, which
    the conversation stores, holds placeholders, not the values."""
    request: dict[str, Any] = {"messages": [m.to_api() for m in fold.messages]}
    if fold.previous:
        request["system"] = fold.previous
    redacted, mapping = redactor.redact_request(request, mapping, thinking=True)
    messages = tuple(to_message(m) for m in redacted["messages"])
    previous = redacted["system"] if fold.previous else fold.previous
    return dataclasses.replace(fold, previous=previous, messages=messages), dict(mapping)


def summary_request(fold: Fold, max_tokens: int, model: str) -> dict[str, Any]:
    """The ``client.create`` arguments that ask the model for the updated summary."""
    parts = ["Summarize this conversation so the summary can replace the turns below."]
    if fold.previous:
        parts.append("Summary so far:\n" + fold.previous)
    parts.append("New turns:\n" + transcript(fold.messages))
    return {
        "messages": [{"role": "user", "content": "\n\n".join(parts)}],
        "system": SYSTEM,
        "max_tokens": max_tokens,
        "model": model,
    }


def transcript(messages: Sequence[Message]) -> str:
    """Messages as plain text, one paragraph each; tool calls, results and media as short notes."""
    lines = []
    for m in messages:
        who = "User" if m.role == "user" else "Assistant"
        pieces = []
        for block in m.blocks:
            kind = block.type
            if kind == "text":
                pieces.append(block.text)  # type: ignore[union-attr]
            elif kind == "tool_use":
                args = json.dumps(block.input, ensure_ascii=False)[:2000]  # type: ignore[union-attr]
                pieces.append(f"[called tool {block.name} with {args}]")  # type: ignore[union-attr]
            elif kind == "tool_result":
                content = block.content  # type: ignore[union-attr]
                text = content if isinstance(content, str) else " ".join(getattr(b, "text", "") for b in content or ())
                pieces.append(f"[tool result: {text.strip()[:2000]}]")
            elif kind in ("image", "document"):
                pieces.append(f"[{kind}]")
        if pieces:
            lines.append(f"{who}: " + "\n".join(pieces))
    return "\n\n".join(lines)


def _need(client: Any) -> Any:
    if client is None:
        raise InvalidConfigError(
            "Summarize needs a model to write the summary: pass Conversation(..., client=...) "
            "or Summarize(summarizer=callable)"
        )
    return client


def _reply_text(reply: Any) -> str:
    return "".join(getattr(b, "text", "") for b in getattr(reply, "content", None) or () if b.type == "text")


def _clean(text: Any) -> str:
    if not isinstance(text, str):
        raise InvalidConfigError(f"the summarizer must return a str, got {type(text).__name__}")
    if not text.strip():
        raise SummaryError("the summarizer returned an empty summary; the turns were not folded")
    return text.strip()
