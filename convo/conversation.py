"""Conversation: a multi-turn history with a system prompt, fitted into a token budget.

>>> from convo import Conversation
>>> conv = Conversation("You are terse.", model="claude-sonnet-5-5", budget=8000)
>>> conv.add_user("What is the capital of France?")
>>> request = conv.request(max_tokens=256)   # kwargs for anthropic.Anthropic().messages.create
>>> sorted(request)
['max_tokens', 'messages', 'model', 'system']
>>> Conversation(model="claude-haiku-4-5").budget   # no budget: the model's context window
200000

The history keeps every message; :meth:`Conversation.request` asks the strategy which turns to
send. Token counts are kept per message and as running totals, so appending a message costs
one count of that message, and fitting costs O(log n) plus the size of what is sent.
"""

from __future__ import annotations

import bisect
import copy
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import _breakpoints, _persist
from ._exceptions import ConvoError, InvalidConfigError, InvalidInputError, InvalidMessageError
from ._fitting import Fitting
from ._limits import resolve_limits
from ._store_hook import Journaled
from .messages import (
    Message,
    TextBlock,
    check_next,
    is_turn_start,
    to_message,
    to_system,
)
from .models import DEFAULT_MODEL
from .receipts import Receipt
from .redact import RedactingCounter
from .strategies import Selection, SlidingWindow, StrategyLike, as_selection
from .summarize import Summary, redact_fold
from .tokens import TokenCounter, default_counter, fixed_tokens
from .tools import ToolSet

log = logging.getLogger("convo.conversation")

__all__ = ["Conversation"]

#: Where the default window cuts to when prompt caching is on. Each cut rewrites the cache from
#: the cut on, so cutting deeper and less often reads more from the cache: over the 200-turn
#: chat of bench/cache_aware.py, 0.6 reads ~93% of input from the cache and 0.65 ~89%.
CACHE_LOW_WATER = 0.6


class Conversation(Fitting, Journaled):
    """A chat history with a system prompt that always fits its token ``budget``.

    ``model`` defaults to the client's model (``client.model``), else
    :data:`convo.models.DEFAULT_MODEL`. ``budget`` is the context window to fit in (input +
    ``max_tokens``), in tokens; by default the model's whole context window, from the catalogue
    (the client's, when it was refreshed with ``client.models()``). ``strategy``
    decides what to drop when the history outgrows it (default :class:`SlidingWindow`);
    ``counter`` estimates tokens (default: the offline, cached counter). ``max_tokens`` is the
    default reply length for :meth:`request` (default 1024, or half the budget if that is less,
    and never above the model's maximum output).
    ``client`` (a :class:`convo.Client` or :class:`convo.AsyncClient`, kept as ``conv.client``
    and replaceable) lets :meth:`send`, :meth:`stream`, :meth:`asend` and :meth:`astream` talk
    to the model. ``tools`` are offered on every :meth:`send` (and run: the tool loop, see
    :mod:`convo.tools`), at most ``max_steps`` model calls per turn; ``keep_refusals=True`` keeps
    a refused exchange in the history (by default it is taken out; ``reply.refused`` says so).

    Prompt caching is on by default for a conversation with a client (``prompt_cache=None``):
    each request places prompt-cache breakpoints on the system prompt, the summary and the
    newest turns when the model supports caching and the request reaches the model's minimum
    cacheable length (``min_cache_tokens`` in the catalogue), and the default window cuts in
    steps (``SlidingWindow(low_water=0.6)``: down to 60% of the budget when it is reached) so a
    long chat keeps reading its prefix from the cache; see :mod:`convo.receipts`.
    ``prompt_cache=True`` (or ``"5m"`` / ``"1h"``, the cache TTL) always places them, with or
    without a client; ``prompt_cache=False`` never does.
    """

    def __init__(
        self,
        system: str | Sequence[Any] | None = None,
        *,
        model: str | None = None,
        budget: int | None = None,
        strategy: StrategyLike | None = None,
        counter: TokenCounter | None = None,
        max_tokens: int | None = None,
        client: Any = None,
        redactor: Any = None,
        prompt_cache: bool | str | None = None,
        tools: Sequence[Any] | None = None,
        max_steps: int = 10,
        keep_refusals: bool = False,
    ) -> None:
        if model is None:
            own = getattr(client, "model", None)
            model = own if isinstance(own, str) and own.strip() else DEFAULT_MODEL
        budget, max_tokens = resolve_limits(model, budget, max_tokens, client)
        if strategy is not None and not callable(strategy):
            raise InvalidConfigError(f"strategy must be callable (e.g. SlidingWindow()), got {type(strategy).__name__}")
        if prompt_cache is not None and prompt_cache not in (False, True, "5m", "1h"):
            raise InvalidConfigError(
                f"prompt_cache must be None (on with a client), True, False, '5m' or '1h' (the cache TTL), "
                f"got {prompt_cache!r}"
            )
        self.model = model
        self.budget = budget
        self.max_tokens = max_tokens
        #: Prompt-cache breakpoints: None (on when the conversation has a client and the request
        #: is long enough to cache), False (never), "5m" or "1h" (always, with that TTL).
        self.prompt_cache: str | bool | None = "5m" if prompt_cache is True else prompt_cache
        stepped = self.prompt_cache or (self.prompt_cache is None and client is not None)
        default = SlidingWindow(low_water=CACHE_LOW_WATER) if stepped else SlidingWindow()
        self.strategy: StrategyLike = strategy if strategy is not None else default
        self.counter: TokenCounter = counter if counter is not None else default_counter()
        if redactor is not None and counter is not None:  # a counter may call the API: it counts redacted text
            self.counter = RedactingCounter(counter, redactor)
        self.client = client
        self.redactor = redactor
        #: Tools every :meth:`send` offers and runs (functions, pydantic models, tool dicts; see :mod:`convo.tools`).
        self.tools: list[Any] = list(tools or ())
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise InvalidConfigError(f"max_steps must be a positive int (model calls per turn), got {max_steps!r}")
        if not isinstance(keep_refusals, bool):
            raise InvalidConfigError(f"keep_refusals must be True or False, got {keep_refusals!r}")
        self.max_steps = max_steps  # model calls per turn (tool loop steps); see send
        self.keep_refusals = keep_refusals  # keep a refused exchange in the history
        #: placeholder -> value, one numbering for the whole conversation (saved with it)
        self._mapping: dict[str, str] = {}
        self._system = to_system(system)
        self._fixed = fixed_tokens(self.counter, self._system)
        if self._fixed >= budget:
            raise InvalidConfigError(
                f"the system prompt alone takes {self._fixed} tokens, which does not fit in budget={budget}; "
                "raise the budget or shorten the system prompt"
            )
        self._messages: list[Message] = []
        # Each message's API dict, made once when it is added and shared by every request
        # (never changed in place: breakpoints and redaction work on copies).
        self._api: list[dict[str, Any]] = []
        self._marks: dict[int, int] = {}  # message index -> cache_control markers the caller put in it
        self._counts: list[int] = []
        self._starts: list[int] = []  # index of the first message of each turn
        self._prefix: list[int] = [0]  # running token totals per turn
        self._pinned: set[int] = set()  # pinned turn indices
        self._pinned_sorted: list[int] = []
        self._pinned_prefix: list[int] = [0]
        self._tool_ids: set[str] = set()
        self._summary: Summary | None = None
        self.last_selection: Selection | None = None
        #: One :class:`~convo.receipts.Receipt` per request sent (see ``last_receipt``).
        self.receipts: list[Receipt] = []
        self._draft: Receipt | None = None
        #: Why the last summarizing step failed (None once one succeeds); see :class:`Summarize`.
        self.summary_error: str | None = None

    def __repr__(self) -> str:
        return (
            f"Conversation(model={self.model!r}, budget={self.budget}, messages={len(self._messages)}, "
            f"turns={len(self._starts)}, strategy={self.strategy!r})"
        )

    # -- reading -------------------------------------------------------------------------

    @property
    def system(self) -> str | tuple[TextBlock, ...] | None:
        """The system prompt, as normalized at construction: a str, a tuple of text blocks, or None."""
        return self._system

    @property
    def messages(self) -> list[Message]:
        """The full history (a copy of the list; messages themselves are immutable)."""
        return list(self._messages)

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def pinned(self) -> list[int]:
        """Indices of the messages in pinned turns."""
        return [i for t in self._pinned_sorted for i in range(self._starts[t], self._turn_end(t))]

    @property
    def summary(self) -> Summary | None:
        """The rolling summary of the first turns kept by :class:`Summarize`, if any."""
        return self._summary

    @property
    def last_receipt(self) -> Receipt | None:
        """What the last request sent kept, dropped, summarized, cached and cost."""
        return self.receipts[-1] if self.receipts else None

    @property
    def total_tokens(self) -> int:
        """Estimated input tokens if the whole history were sent."""
        return self._fixed + self._prefix[-1]

    @property
    def tokens(self) -> int:
        """Estimated input tokens of the request that would be sent now (default max_tokens),
        the conversation's tools included.

        When even the minimal request does not fit, this is the minimal request's size.
        """
        fixed = self._fixed
        toolset = ToolSet.joined(self.tools, ()) if self.tools else None
        if toolset is not None:  # the conversation's own tools go with every request
            fixed = fixed_tokens(self.counter, self._system, self._sent_tools(toolset.to_api()))
        if not self._starts:
            return fixed
        state = self._state(self.max_tokens, fixed)
        try:
            selection = as_selection(self.strategy(state))
        except ConvoError:  # overflow, or no strategy fits: what must be sent
            return state.minimum() - self.max_tokens
        return state.cost(selection) - self.max_tokens

    # -- writing -------------------------------------------------------------------------

    def add_user(self, content: Any, *, pinned: bool = False) -> None:
        """Append a user turn: a string, a list of blocks, or a message dict."""
        self._idle("add_user")
        self._append(to_message(content, role="user"), pinned=pinned)

    def add_assistant(self, content: Any) -> None:
        """Append an assistant turn: a string, a list of blocks, or an SDK response message."""
        self._idle("add_assistant")
        self._append(to_message(content, role="assistant"))

    def add(self, message: Any, *, pinned: bool = False) -> None:
        """Append any message (dict or Message). Raises before changing anything if it is invalid
        (or, :class:`~convo.ConversationBusyError`, while a turn is in progress)."""
        self._idle("add")
        self._append(message, pinned=pinned)

    def _append(self, message: Any, *, pinned: bool = False) -> None:
        """:meth:`add`, for the turn in progress too (its own messages)."""
        msg = to_message(message)
        check_next(self._messages[-1] if self._messages else None, msg, self._tool_ids)
        self._push(msg, self.counter.count_message(msg))
        last = len(self._starts) - 1
        if pinned:
            self._pinned.add(last)
        if last in self._pinned:
            self._refresh_pins()
        self._changed()

    def extend(self, messages: Iterable[Any]) -> None:
        """Append several messages; all are checked (and counted) first, so a bad one adds none."""
        self._idle("extend")
        new = [to_message(m) for m in messages]
        previous = self._messages[-1] if self._messages else None
        seen = set(self._tool_ids)
        for msg in new:
            check_next(previous, msg, seen)
            seen.update(msg.tool_use_ids())
            previous = msg
        counts = [self.counter.count_message(m) for m in new]
        touched = len(self._starts) - 1  # the turn the first new message may join
        for msg, n in zip(new, counts, strict=True):
            self._push(msg, n)
        if touched in self._pinned:
            self._refresh_pins()
        self._changed()  # one change: a store writes them at once

    def _restore(self, messages: Sequence[Message], counts: Sequence[int] | None = None) -> None:
        """Append messages already normalized (read back from a store), with their token counts
        when they are this counter's (-1: count it); checked like :meth:`add`, in one pass."""
        plain = bool(self._messages) and isinstance(self._messages[-1].content, str)
        history, api, tokens, starts, prefix = self._messages, self._api, self._counts, self._starts, self._prefix
        count = self.counter.count_message
        for i, msg in enumerate(messages):
            n = counts[i] if counts is not None else -1
            if n < 0:
                n = count(msg)
            content = msg.content
            if plain and type(content) is str:  # text after text: nothing to check; _push, inlined
                if msg.role == "user":  # a turn start
                    starts.append(len(history))
                    prefix.append(prefix[-1] + n)
                else:
                    prefix[-1] += n
                history.append(msg)
                api.append({"role": msg.role, "content": content})
                tokens.append(n)
                continue
            try:
                check_next(history[-1] if history else None, msg, self._tool_ids)
            except InvalidMessageError as exc:
                raise InvalidMessageError(f"message {i}: {exc}") from None
            self._push(msg, n)
            plain = isinstance(content, str)
        if self._pinned:
            self._refresh_pins()

    def _push(self, msg: Message, n: int) -> None:
        """The bookkeeping of one checked, counted message at the end of the history."""
        index = len(self._messages)
        if is_turn_start(msg):
            self._starts.append(index)
            self._prefix.append(self._prefix[-1] + n)
        else:
            self._prefix[-1] += n
        self._messages.append(msg)
        content = msg.content
        if isinstance(content, str):
            self._api.append({"role": msg.role, "content": content})
            self._counts.append(n)
            return
        api = msg.to_api()
        self._api.append(api)
        if "cache_control" in str(api["content"]):
            self._marks[index] = _breakpoints.marks_in(api)
        self._counts.append(n)
        self._tool_ids.update(msg.tool_use_ids())

    def pin(self, index: int) -> None:
        """Always send the turn holding message ``index`` (negative indices count from the end)."""
        self._idle("pin")
        self._pinned.add(self._turn_of(index))
        self._refresh_pins()
        self._changed()

    def unpin(self, index: int) -> None:
        """Let the turn holding message ``index`` be dropped again (negative indices count from the
        end); unpinning a turn that is not pinned does nothing.
        """
        self._idle("unpin")
        self._pinned.discard(self._turn_of(index))
        self._refresh_pins()
        self._changed()

    def undo(self) -> list[Message]:
        """Drop the last exchange (the last user turn and its replies) and return it."""
        self._idle("undo")
        if not self._starts:
            raise InvalidInputError("nothing to undo: the conversation is empty")
        removed = self._truncate(self._starts[-1])
        self._changed()
        return removed

    def _truncate(self, length: int) -> list[Message]:
        """Drop the messages from index ``length`` on, keeping every running total right."""
        removed = self._messages[length:]
        for i in range(len(self._messages) - 1, length - 1, -1):
            if self._starts and self._starts[-1] == i:
                self._starts.pop()
                self._prefix.pop()
                self._pinned.discard(len(self._starts))
            else:
                self._prefix[-1] -= self._counts[i]
            self._tool_ids.difference_update(self._messages[i].tool_use_ids())
        del self._messages[length:]
        del self._api[length:]
        for i in [i for i in self._marks if i >= length]:
            del self._marks[i]
        del self._counts[length:]
        self._refresh_pins()
        if self._summary is not None and self._summary.turns > len(self._starts):
            self._summary = None  # it tells of removed turns; the history still has the others
        return removed

    def reset(self) -> None:
        """Forget the history; keep the system prompt, model, budget and strategy."""
        self._idle("reset")
        for name in ("_messages", "_api", "_marks", "_counts", "_starts", "_pinned_sorted"):
            getattr(self, name).clear()
        self._prefix[:] = [0]
        self._pinned.clear()
        self._pinned_prefix[:] = [0]
        self._tool_ids.clear()
        self._summary = None
        self.summary_error = None
        self._changed()

    def fork(self) -> Conversation:
        """An independent copy: changes to either never show in the other."""
        twin = copy.copy(self)
        for name in ("_messages", "_api", "_counts", "_starts", "_prefix", "_pinned_sorted", "_pinned_prefix"):
            setattr(twin, name, list(getattr(self, name)))
        twin._marks = dict(self._marks)
        twin._pinned = set(self._pinned)
        twin._tool_ids = set(self._tool_ids)
        twin.receipts = list(self.receipts)
        twin.tools = list(self.tools)
        twin.strategy = copy.copy(self.strategy)
        twin._journal = None  # a fork is not in the store
        twin.__dict__.pop("_telemetry_id", None)  # nor the same conversation in traces
        twin.__dict__.pop("_turning", None)  # nor in the middle of the original's turn
        return twin

    # -- the summarizing step (the rest of the request is convo._fitting's) ---------------------

    def _plan_fold(self, max_tokens: int | None, tools: Any, force: bool) -> Any:
        fold = super()._plan_fold(max_tokens, tools, force)
        if fold is None or self.redactor is None:
            return fold
        fold, self._mapping = redact_fold(fold, self.redactor, self._mapping)  # the summarizer sees placeholders
        return fold

    # -- turns and pins --------------------------------------------------------------------

    def _turn_end(self, t: int) -> int:
        return self._starts[t + 1] if t + 1 < len(self._starts) else len(self._messages)

    def _turn_of(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int):
            raise InvalidInputError(f"a message index must be an int, got {type(index).__name__}")
        n = len(self._messages)
        if not -n <= index < n:
            raise InvalidInputError(f"message index {index} is out of range: the conversation has {n} messages")
        return bisect.bisect_right(self._starts, index % n) - 1

    def _refresh_pins(self) -> None:
        self._pinned_sorted[:] = sorted(self._pinned)
        running = [0]
        for t in self._pinned_sorted:
            running.append(running[-1] + self._prefix[t + 1] - self._prefix[t])
        self._pinned_prefix[:] = running

    # -- files (see convo._persist) ------------------------------------------------------------

    def to_dict(self, *, strategy: bool = True) -> dict[str, Any]:
        """The saved form: versioned, JSON-able, no secrets; with a redactor (the conversation's or
        its client's) the text as the API saw it, never the values. See :meth:`save` for ``strategy``."""
        return _persist.to_dict(self, strategy=strategy)

    def save(self, path: str | os.PathLike[str], *, strategy: bool = True) -> None:
        """Write the conversation as JSON, atomically: a crash leaves the old file or the new one.

        The strategy is saved with its settings and rebuilt exactly by :meth:`load`. One that
        cannot be (a plain function, a ``Summarize`` with a custom ``summarizer``) raises
        :class:`~convo.ConversationFileError` here, writing nothing; ``strategy=False`` saves
        without it, and ``load`` then needs ``strategy=...``.
        """
        _persist.save(self, path, strategy=strategy)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, strategy: StrategyLike | None = None, counter: TokenCounter | None = None,
        client: Any = None, tools: Sequence[Any] | None = None,
    ) -> Conversation:
        """Rebuild a conversation from :meth:`to_dict`'s output (``client``, ``tools``: as in :meth:`load`)."""
        return _persist.from_dict(cls, data, strategy=strategy, counter=counter, client=client, tools=tools)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, strategy: StrategyLike | None = None, counter: TokenCounter | None = None,
        client: Any = None, tools: Sequence[Any] | None = None,
    ) -> Conversation:
        """Read a conversation written by :meth:`save`. Raises ConversationFileError if it cannot.

        ``strategy`` replaces the saved one; it is required for a file saved without its
        strategy (``save(path, strategy=False)``). ``client`` is the client to talk through (a
        file holds no client): ``Conversation.load(path, client=client).send("Where were we?")``.
        The model, budget, prompt-cache setting, ``max_steps`` and ``keep_refusals`` are the saved
        ones; ``tools`` are code, so a file holds none: pass them again here.
        """
        return _persist.load(cls, path, strategy=strategy, counter=counter, client=client, tools=tools)
