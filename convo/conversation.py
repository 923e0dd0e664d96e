"""Conversation: a multi-turn history with a system prompt, fitted into a token budget.

>>> from convo import Conversation
>>> conv = Conversation("You are terse.", model="claude-sonnet-4-6", budget=8000)
>>> conv.add_user("What is the capital of France?")
>>> request = conv.request(max_tokens=256)   # kwargs for anthropic.Anthropic().messages.create
>>> sorted(request)
['max_tokens', 'messages', 'model', 'system']

The history keeps every message; :meth:`Conversation.request` asks the strategy which turns to
send. Token counts are kept per message and as running totals, so appending a message costs
one count of that message, and fitting costs O(log n) plus the size of what is sent.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._exceptions import ConversationFileError, InvalidConfigError, InvalidInputError, InvalidMessageError
from .messages import Message, TextBlock, check_next, is_turn_start, to_message, to_system
from .strategies import OrElse, Selection, SlidingWindow, StrategyLike, TrimState, as_selection, strategy_from_config
from .summarize import Fold, Summarize, Summary
from .tokens import TokenCounter, default_counter, fixed_tokens

__all__ = ["Conversation"]

FILE_FORMAT = "convo.conversation"
FILE_VERSION = 1
_RESERVED = frozenset({"messages", "system", "max_tokens"})


def _positive_int(value: Any, what: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfigError(f"{what} must be an int, got {type(value).__name__} {value!r}; {hint}")
    if value <= 0:
        raise InvalidConfigError(f"{what} must be positive, got {value}; {hint}")
    return value


class Conversation:
    """A chat history with a system prompt that always fits its token ``budget``.

    ``budget`` is the context window to fit in (input + ``max_tokens``), in tokens. ``strategy``
    decides what to drop when the history outgrows it (default :class:`SlidingWindow`);
    ``counter`` estimates tokens (default: the offline, cached counter). ``max_tokens`` is the
    default reply length for :meth:`request` (default 1024, or half the budget if that is less).
    ``client`` (a :class:`convo.Client` or :class:`convo.AsyncClient`) lets :meth:`send`,
    :meth:`stream`, :meth:`asend` and :meth:`astream` talk to the model.
    """

    def __init__(
        self,
        system: str | Sequence[Any] | None = None,
        *,
        model: str,
        budget: int,
        strategy: StrategyLike | None = None,
        counter: TokenCounter | None = None,
        max_tokens: int | None = None,
        client: Any = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidConfigError(f"model must be a model name such as 'claude-sonnet-4-6', got {model!r}")
        _positive_int(budget, "budget", "give the context window to fit in, in tokens, e.g. budget=8000")
        if max_tokens is None:
            max_tokens = min(1024, max(1, budget // 2))
        _positive_int(max_tokens, "max_tokens", "give the default reply length, e.g. max_tokens=1024")
        if strategy is not None and not callable(strategy):
            raise InvalidConfigError(f"strategy must be callable (e.g. SlidingWindow()), got {type(strategy).__name__}")
        self.model = model
        self.budget = budget
        self.max_tokens = max_tokens
        self.strategy: StrategyLike = strategy if strategy is not None else SlidingWindow()
        self.counter: TokenCounter = counter if counter is not None else default_counter()
        self.client = client
        self._system = to_system(system)
        self._fixed = fixed_tokens(self.counter, self._system)
        if self._fixed >= budget:
            raise InvalidConfigError(
                f"the system prompt alone takes {self._fixed} tokens, which does not fit in budget={budget}; "
                "raise the budget or shorten the system prompt"
            )
        self._messages: list[Message] = []
        self._counts: list[int] = []
        self._starts: list[int] = []  # index of the first message of each turn
        self._prefix: list[int] = [0]  # running token totals per turn
        self._pinned: set[int] = set()  # pinned turn indices
        self._pinned_sorted: list[int] = []
        self._pinned_prefix: list[int] = [0]
        self._tool_ids: set[str] = set()
        self._summary: Summary | None = None
        self.last_selection: Selection | None = None
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
    def total_tokens(self) -> int:
        """Estimated input tokens if the whole history were sent."""
        return self._fixed + self._prefix[-1]

    @property
    def tokens(self) -> int:
        """Estimated input tokens of the request that would be sent now (default max_tokens).

        When even the minimal request does not fit, this is the minimal request's size.
        """
        if not self._starts:
            return self._fixed
        state = self._state(self.max_tokens)
        try:
            selection = as_selection(self.strategy(state))
        except Exception:
            return state.minimum() - self.max_tokens
        return state.cost(selection) - self.max_tokens

    # -- writing -------------------------------------------------------------------------

    def add_user(self, content: Any, *, pinned: bool = False) -> None:
        """Append a user turn: a string, a list of blocks, or a message dict."""
        self.add(to_message(content, role="user"), pinned=pinned)

    def add_assistant(self, content: Any) -> None:
        """Append an assistant turn: a string, a list of blocks, or an SDK response message."""
        self.add(to_message(content, role="assistant"))

    def add(self, message: Any, *, pinned: bool = False) -> None:
        """Append any message (dict or Message). Raises before changing anything if it is invalid."""
        msg = to_message(message)
        check_next(self._messages[-1] if self._messages else None, msg, self._tool_ids)
        n = self.counter.count_message(msg)
        index = len(self._messages)
        if is_turn_start(msg):
            self._starts.append(index)
            self._prefix.append(self._prefix[-1] + n)
        else:
            self._prefix[-1] += n
        self._messages.append(msg)
        self._counts.append(n)
        self._tool_ids.update(msg.tool_use_ids())
        last = len(self._starts) - 1
        if pinned:
            self._pinned.add(last)
        if last in self._pinned:
            self._refresh_pins()

    def extend(self, messages: Iterable[Any]) -> None:
        """Append several messages; all are checked first, so a bad one adds none."""
        trial = self.fork()
        for m in messages:
            trial.add(m)
        for m in trial._messages[len(self._messages) :]:
            self.add(m)

    def pin(self, index: int) -> None:
        """Always send the turn holding message ``index`` (negative indices count from the end)."""
        self._pinned.add(self._turn_of(index))
        self._refresh_pins()

    def unpin(self, index: int) -> None:
        self._pinned.discard(self._turn_of(index))
        self._refresh_pins()

    def undo(self) -> list[Message]:
        """Drop the last exchange (the last user turn and its replies) and return it."""
        if not self._starts:
            raise InvalidInputError("nothing to undo: the conversation is empty")
        return self._truncate(self._starts[-1])

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
        del self._counts[length:]
        self._refresh_pins()
        if self._summary is not None and self._summary.turns > len(self._starts):
            self._summary = None  # it tells of removed turns; the history still has the others
        return removed

    def reset(self) -> None:
        """Forget the history; keep the system prompt, model, budget and strategy."""
        for name in ("_messages", "_counts", "_starts", "_pinned_sorted"):
            getattr(self, name).clear()
        self._prefix[:] = [0]
        self._pinned.clear()
        self._pinned_prefix[:] = [0]
        self._tool_ids.clear()
        self._summary = None
        self.summary_error = None

    def fork(self) -> Conversation:
        """An independent copy: changes to either never show in the other."""
        twin = copy.copy(self)
        for name in ("_messages", "_counts", "_starts", "_prefix", "_pinned_sorted", "_pinned_prefix"):
            setattr(twin, name, list(getattr(self, name)))
        twin._pinned = set(self._pinned)
        twin._tool_ids = set(self._tool_ids)
        twin.strategy = copy.copy(self.strategy)
        return twin

    # -- talking to the model -----------------------------------------------------------------

    def send(self, content: Any, *, max_tokens: int | None = None, **params: Any) -> str:
        """Add a user turn, get the reply, add it, return its text.

        If the call fails the user turn is taken back, so the conversation is as before.
        """
        mark = self._add_turn(content)
        try:
            with contextlib.suppress(Exception):  # kept in summary_error; the window takes over
                self.compact(max_tokens, tools=params.get("tools"))
            request = self.request(max_tokens, **params)
            reply = self._need_client().create(**request)
        except BaseException:
            self._rollback(mark)
            raise
        return self._end_turn(reply)

    def stream(self, content: Any, *, max_tokens: int | None = None, **params: Any) -> Iterator[str]:
        """Like :meth:`send`, but yields the reply's text as it arrives; the assistant turn is
        added when the stream ends (or the user turn taken back if it fails)."""
        mark = self._add_turn(content)
        try:
            with contextlib.suppress(Exception):  # kept in summary_error; the window takes over
                self.compact(max_tokens, tools=params.get("tools"))
            request = self.request(max_tokens, **params)
            with self._need_client().stream(**request) as s:
                yield from s.text_stream
                reply = s.get_final_message()
        except BaseException:
            self._rollback(mark)
            raise
        self._end_turn(reply)

    async def asend(self, content: Any, *, max_tokens: int | None = None, **params: Any) -> str:
        """The async twin of :meth:`send` (needs an AsyncClient)."""
        mark = self._add_turn(content)
        try:
            with contextlib.suppress(Exception):
                await self.acompact(max_tokens, tools=params.get("tools"))
            request = self.request(max_tokens, **params)
            reply = await self._need_client().create(**request)
        except BaseException:
            self._rollback(mark)
            raise
        return self._end_turn(reply)

    async def astream(self, content: Any, *, max_tokens: int | None = None, **params: Any) -> AsyncIterator[str]:
        """The async twin of :meth:`stream` (needs an AsyncClient)."""
        mark = self._add_turn(content)
        try:
            with contextlib.suppress(Exception):
                await self.acompact(max_tokens, tools=params.get("tools"))
            request = self.request(max_tokens, **params)
            async with self._need_client().stream(**request) as s:
                async for text in s.text_stream:
                    yield text
                reply = await s.get_final_message()
        except BaseException:
            self._rollback(mark)
            raise
        self._end_turn(reply)

    def _need_client(self) -> Any:
        if self.client is None:
            raise InvalidConfigError("this conversation has no client: pass Conversation(..., client=convo.Client(...))")
        return self.client

    def _add_turn(self, content: Any) -> int:
        self._need_client()
        mark = len(self._messages)
        self.add_user(content)
        return mark

    def _end_turn(self, reply: Any) -> str:
        content = getattr(reply, "content", None) or []
        if not any(b.type != "text" or b.text.strip() for b in content):
            return ""  # an empty reply (e.g. stopped at once): nothing to add
        message = to_message(reply)
        self.add(message)
        return message.text

    def _rollback(self, mark: int) -> None:
        self._truncate(mark)

    # -- summarizing ---------------------------------------------------------------------------

    def compact(self, max_tokens: int | None = None, *, force: bool = False, tools: Any = None) -> bool:
        """Run the summarizing step of a :class:`Summarize` strategy now; True if turns were folded.

        :meth:`send` and :meth:`stream` do this before each request. It folds only past the
        strategy's trigger, unless ``force``; ``tools`` you will send count toward the budget.
        Raises the summarizer's error (also kept in ``summary_error``), changing nothing else.
        """
        strategy, fold = self._plan_fold(max_tokens, tools, force)
        if fold is None:
            return False
        try:
            text = strategy.summarize(fold, self.client, self.model)
        except Exception as exc:
            self.summary_error = f"{type(exc).__name__}: {exc}"
            raise
        self._summary, self.summary_error = Summary(text, fold.end), None
        return True

    async def acompact(self, max_tokens: int | None = None, *, force: bool = False, tools: Any = None) -> bool:
        """The async twin of :meth:`compact`."""
        strategy, fold = self._plan_fold(max_tokens, tools, force)
        if fold is None:
            return False
        try:
            text = await strategy.asummarize(fold, self.client, self.model)
        except Exception as exc:
            self.summary_error = f"{type(exc).__name__}: {exc}"
            raise
        self._summary, self.summary_error = Summary(text, fold.end), None
        return True

    def _plan_fold(self, max_tokens: int | None, tools: Any, force: bool) -> tuple[Any, Fold | None]:
        strategy = self.strategy
        if isinstance(strategy, OrElse):
            strategy = next((s for s in strategy.strategies if isinstance(s, Summarize)), None)
        if not isinstance(strategy, Summarize) or not self._starts:
            return strategy, None
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        fixed = self._fixed if not tools else fixed_tokens(self.counter, self._system, tools)
        return strategy, strategy.plan(self._state(max_tokens, fixed), force=force)

    # -- the request -----------------------------------------------------------------------

    def request(self, max_tokens: int | None = None, **params: Any) -> dict[str, Any]:
        """Keyword arguments for ``client.messages.create(**...)``, fitted into the budget.

        Estimated input tokens + ``max_tokens`` <= ``budget``, by the counter. Extra ``params``
        (temperature, tools, stop_sequences, ...) are passed through; ``tools`` count too.
        Raises :class:`ContextOverflowError` when even the must-keep part does not fit.
        """
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        _positive_int(max_tokens, "max_tokens", "give the longest reply you accept, e.g. max_tokens=1024")
        clash = _RESERVED & params.keys()
        if clash:
            raise InvalidConfigError(
                f"{sorted(clash)} cannot be passed to request(): the conversation supplies them "
                "(add messages with add_user/add_assistant, set the system prompt in the constructor)"
            )
        if not self._starts:
            raise InvalidMessageError("the conversation is empty; add a user message first (add_user)")
        tools = params.get("tools")
        fixed = self._fixed if not tools else fixed_tokens(self.counter, self._system, tools)
        state = self._state(max_tokens, fixed)
        selection = as_selection(self.strategy(state))
        self._check_selection(state, selection)
        if self.summary_error is not None:
            failed = f"summarizing failed ({self.summary_error}); fell back to the sliding window"
            selection = Selection(selection.start, selection.context, "; ".join(filter(None, (selection.note, failed))))
        self.last_selection = selection
        request: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens}
        if self._system:
            request["system"] = (
                self._system if isinstance(self._system, str) else [b.model_dump(mode="json") for b in self._system]
            )
        request["messages"] = [m.to_api() for m in self._selected(selection)]
        request.update(params)
        return request

    def _selected(self, selection: Selection) -> list[Message]:
        out = list(selection.context)
        for t in self._pinned_sorted:
            if t >= selection.start:
                break
            out.extend(self._messages[self._starts[t] : self._turn_end(t)])
        out.extend(self._messages[self._starts[selection.start] :])
        return out

    def _check_selection(self, state: TrimState, selection: Selection) -> None:
        if not 0 <= selection.start < state.turns:
            raise InvalidConfigError(
                f"strategy {self.strategy!r} chose turn {selection.start}, but there are {state.turns} turns; "
                "a strategy must keep at least the last turn"
            )
        if selection.context and selection.context[0].role != "user":
            raise InvalidConfigError("a strategy's context messages must start with a user message")
        cost = state.cost(selection)
        if cost > state.budget:
            if state.minimum() > state.budget:
                raise state.overflow()
            raise InvalidConfigError(
                f"strategy {self.strategy!r} chose a request of {cost} tokens, over the budget of {state.budget}"
            )

    def _state(self, max_tokens: int, fixed: int | None = None) -> TrimState:
        return TrimState(
            messages=self._messages,
            starts=self._starts,
            prefix=self._prefix,
            pinned=self._pinned_sorted,
            pinned_prefix=self._pinned_prefix,
            fixed=self._fixed if fixed is None else fixed,
            max_tokens=max_tokens,
            budget=self.budget,
            counter=self.counter,
            summary=self._summary,
        )

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

    # -- files -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The saved form: versioned, JSON-able, no secrets."""
        system = self._system
        config = self.strategy.config() if hasattr(self.strategy, "config") else {"type": "custom"}
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "model": self.model,
            "budget": self.budget,
            "max_tokens": self.max_tokens,
            "system": system if system is None or isinstance(system, str) else [b.model_dump(mode="json") for b in system],
            "strategy": config,
            "messages": [m.to_api() for m in self._messages],
            "pinned": self.pinned,
            **({"summary": {"text": self._summary.text, "turns": self._summary.turns}} if self._summary else {}),
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the conversation as JSON, atomically: a crash leaves the old file or the new one."""
        path = Path(path)
        data = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        directory = path.parent if str(path.parent) else Path(".")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise ConversationFileError(f"cannot write {path}: {exc.strerror}; check the folder exists") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, strategy: StrategyLike | None = None, counter: TokenCounter | None = None
    ) -> Conversation:
        """Rebuild a conversation from :meth:`to_dict`'s output."""
        if not isinstance(data, Mapping) or data.get("format") != FILE_FORMAT:
            raise ConversationFileError(
                "not a convo conversation (no \"format\": \"convo.conversation\" key); "
                "load files written by Conversation.save"
            )
        version = data.get("version")
        if not isinstance(version, int) or version > FILE_VERSION:
            raise ConversationFileError(
                f"conversation file version {version!r} is not supported (this convo reads up to "
                f"{FILE_VERSION}); upgrade convo"
            )
        try:
            conv = cls(
                data.get("system"),
                model=data["model"],
                budget=data["budget"],
                max_tokens=data.get("max_tokens"),
                strategy=strategy if strategy is not None else strategy_from_config(data.get("strategy")),
                counter=counter,
            )
            messages = data["messages"]
            if not isinstance(messages, list):
                raise InvalidMessageError("'messages' must be a list")
            pinned = set(data.get("pinned", []))
            for i, m in enumerate(messages):
                try:
                    conv.add(m)
                except InvalidMessageError as exc:
                    raise InvalidMessageError(f"message {i}: {exc}") from None
            for i in pinned:
                conv.pin(i)
            conv._summary = _load_summary(data.get("summary"), len(conv._starts))
        except KeyError as exc:
            raise ConversationFileError(f"conversation file is missing the {exc.args[0]!r} field") from None
        except (InvalidConfigError, InvalidMessageError, InvalidInputError, TypeError) as exc:
            raise ConversationFileError(f"conversation file is invalid: {exc}") from None
        return conv

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, strategy: StrategyLike | None = None, counter: TokenCounter | None = None
    ) -> Conversation:
        """Read a conversation written by :meth:`save`. Raises ConversationFileError if it cannot."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConversationFileError(f"{path} does not exist") from None
        except UnicodeDecodeError:
            raise ConversationFileError(f"{path} is not UTF-8 text; is it a conversation saved by convo?") from None
        except OSError as exc:
            raise ConversationFileError(f"cannot read {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConversationFileError(
                f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); the file may be truncated"
            ) from None
        try:
            return cls.from_dict(data, strategy=strategy, counter=counter)
        except ConversationFileError as exc:
            raise ConversationFileError(f"{path}: {exc}") from None


def _load_summary(data: Any, turns: int) -> Summary | None:
    """The saved summary (a field added in version 1 files; older files have none)."""
    if data is None:
        return None
    if not isinstance(data, Mapping) or not isinstance(data.get("text"), str) or not data["text"].strip():
        raise InvalidMessageError("'summary' must be an object with a non-empty 'text'")
    covered = data.get("turns")
    if isinstance(covered, bool) or not isinstance(covered, int) or not 0 <= covered <= turns:
        raise InvalidMessageError(f"'summary.turns' must be an int from 0 to {turns}, got {covered!r}")
    return Summary(data["text"], covered)
