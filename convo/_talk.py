"""Talking to the model: the send/stream turn cycle and the summarizing step, sync and async.

A mixin of :class:`convo.Conversation`, kept apart so the conversation module holds the
history, ``_fitting`` what one request sends of it, and this one the calls that go through a client.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any

from ._drive import adrive, afinish, atexts, drive, finish, texts
from ._exceptions import ClientMismatchError, ConversationBusyError, InvalidConfigError, InvalidInputError, SummaryError
from ._tool_loop import DEFAULT_MAX_STEPS, Output, TurnOptions, turn_flow
from .events import Event
from .messages import Message, TextBlock
from .reply import Reply
from .strategies import TrimState, as_strategy
from .summarize import Fold, FoldWriter, Summary
from .tokens import TokenCounter, fixed_tokens
from .tools import ToolSet

__all__ = ["Talking", "is_async_client"]

log = logging.getLogger("convo.conversation")

_CLAIM = threading.Lock()  # a turn's check-and-set of ``_turning``, one step across threads


class Talking:
    """send / stream / asend / astream and compact / acompact for Conversation."""

    # Provided by Conversation.
    client: Any
    model: str
    max_tokens: int
    strategy: Any
    summary_error: str | None
    redactor: Any
    _summary: Summary | None
    _mapping: dict[str, str]
    _draft: Any
    receipts: list[Any]
    counter: TokenCounter
    tools: list[Any]
    if TYPE_CHECKING:
        _messages: list[Message]
        _starts: list[int]
        _fixed: int
        _system: str | tuple[TextBlock, ...] | None

        def request(self, max_tokens: int | None = None, **params: Any) -> dict[str, Any]: ...
        def add_user(self, content: Any, *, pinned: bool = False) -> None: ...
        def add(self, message: Any, *, pinned: bool = False) -> None: ...
        def _truncate(self, length: int) -> list[Message]: ...
        def _state(self, max_tokens: int, fixed: int | None = None) -> TrimState: ...
        def _unredact(self, reply: Any) -> Any: ...

    # -- talking to the model -----------------------------------------------------------------

    #: Keep a refused exchange (``stop_reason: "refusal"``) in the history; by default it is taken
    #: out, as the docs advise, and only the reply says it happened (``reply.refused``).
    keep_refusals: bool = False
    #: Model calls one turn may make (tool loop steps, paused turns continued) before MaxStepsError.
    max_steps: int = DEFAULT_MAX_STEPS
    #: The name of the method whose turn is in progress (from its first step to its end), or None.
    _turning: str | None = None

    def send(
        self, content: Any, *, max_tokens: int | None = None, tools: Any = None, output: Any = None,
        max_steps: int | None = None, **params: Any,
    ) -> Reply:  # fmt: skip
        """Add a user turn, get the reply, add it, and return it: a :class:`~convo.Reply` (a ``str``)
        that also tells what the turn did (needs a :class:`~convo.Client`).

        With ``tools`` (added to the conversation's) it runs the tool loop: every ``tool_use`` the
        model makes is run (parallel calls at once, in threads) and answered, until the model
        stops asking or ``max_steps`` calls were made (:class:`~convo.MaxStepsError`).
        ``output`` (a pydantic model class or a JSON schema) makes the reply structured:
        ``reply.parsed`` is the validated object, or :class:`~convo.OutputValidationError`. It is
        sent as ``output_config.format`` where the catalogue says the model has structured
        outputs, else as a forced tool call (which then is the turn's only tool call).
        Other ``params`` (``tool_choice``, ``temperature``, ...) go to the API. If a call fails the
        turn is taken back, so the conversation is as before.
        """
        self._check_turn("send")
        return finish(drive(self, self._flow(content, max_tokens, tools, output, max_steps, params, False, "send")))

    async def asend(
        self, content: Any, *, max_tokens: int | None = None, tools: Any = None, output: Any = None,
        max_steps: int | None = None, **params: Any,
    ) -> Reply:  # fmt: skip
        """The async twin of :meth:`send` (needs an :class:`~convo.AsyncClient`; tools run with
        ``asyncio.gather``, sync ones in threads)."""
        self._check_turn("asend")
        flow = self._flow(content, max_tokens, tools, output, max_steps, params, False, "asend")
        return await afinish(adrive(self, flow))

    def stream(
        self, content: Any, *, max_tokens: int | None = None, tools: Any = None, max_steps: int | None = None,
        **params: Any,
    ) -> Iterator[str]:  # fmt: skip
        """Like :meth:`send`, but yields the reply's text as it arrives (every step's, in a tool
        loop); the assistant turn is added when the stream ends (or the turn taken back if it
        fails). The client is checked here, at the call; the user turn is added when iteration
        starts. :meth:`events` gives everything else too."""
        self._check_turn("stream")
        return texts(drive(self, self._flow(content, max_tokens, tools, None, max_steps, params, True, "stream")))

    def astream(
        self, content: Any, *, max_tokens: int | None = None, tools: Any = None, max_steps: int | None = None,
        **params: Any,
    ) -> AsyncIterator[str]:  # fmt: skip
        """The async twin of :meth:`stream` (needs an :class:`~convo.AsyncClient`):
        ``async for text in conv.astream(...)``. The client is checked at the call."""
        self._check_turn("astream")
        return atexts(adrive(self, self._flow(content, max_tokens, tools, None, max_steps, params, True, "astream")))

    def events(
        self, content: Any, *, max_tokens: int | None = None, tools: Any = None, output: Any = None,
        max_steps: int | None = None, **params: Any,
    ) -> Iterator[Event]:  # fmt: skip
        """Like :meth:`send`, streaming, as typed events (:mod:`convo.events`): text and thinking,
        tool calls and their results, each step's end, then :class:`~convo.ReplyEnd` with the Reply.
        Each step is a :meth:`convo.Client.stream`, which resumes a broken stream."""
        self._check_turn("events")
        return drive(self, self._flow(content, max_tokens, tools, output, max_steps, params, True, "events"))

    def aevents(
        self, content: Any, *, max_tokens: int | None = None, tools: Any = None, output: Any = None,
        max_steps: int | None = None, **params: Any,
    ) -> AsyncIterator[Event]:  # fmt: skip
        """The async twin of :meth:`events`: ``async for event in conv.aevents(...)``."""
        self._check_turn("aevents")
        return adrive(self, self._flow(content, max_tokens, tools, output, max_steps, params, True, "aevents"))

    def continue_(self, *, max_tokens: int | None = None, tools: Any = None, **params: Any) -> Reply:
        """Ask for the rest of a truncated last reply (``reply.truncated``); it is joined onto that
        reply in the history, and the returned Reply holds the new text."""
        self._check_turn("continue_")
        return finish(drive(self, self._continuation(max_tokens, tools, params, "continue_")))

    async def acontinue_(self, *, max_tokens: int | None = None, tools: Any = None, **params: Any) -> Reply:
        """The async twin of :meth:`continue_`."""
        self._check_turn("acontinue_")
        return await afinish(adrive(self, self._continuation(max_tokens, tools, params, "acontinue_")))

    # -- the turn: one flow (convo._tool_loop), a sync and an async driver ------------------------

    def _options(
        self, max_tokens: int | None, tools: Any, output: Any, max_steps: int | None, params: dict[str, Any],
        stream: bool,
    ) -> TurnOptions:  # fmt: skip
        steps = self.max_steps if max_steps is None else max_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InvalidConfigError(f"max_steps must be a positive int, got {steps!r}")
        toolset = ToolSet.joined(self.tools or (), tools or ())
        spec = Output.of(output, self.model, self.client) if output is not None else None
        return TurnOptions(
            max_tokens, dict(params), toolset, steps, spec, stream, self.keep_refusals,
            toolset.to_api() if toolset else [],
        )  # fmt: skip

    def _flow(
        self, content: Any, max_tokens: int | None, tools: Any, output: Any, max_steps: int | None,
        params: dict[str, Any], stream: bool, method: str,
    ) -> Generator[Any, Any, Reply]:  # fmt: skip
        o = self._options(max_tokens, tools, output, max_steps, params, stream)
        return self._one_turn(turn_flow(self, content, o), method)

    def _continuation(
        self, max_tokens: int | None, tools: Any, params: dict[str, Any], method: str,
    ) -> Generator[Any, Any, Reply]:  # fmt: skip
        last = self._messages[-1] if self._messages else None
        if last is None or last.role != "assistant" or not last.text.strip():
            raise InvalidInputError(
                "there is no reply to continue: the last message is not an assistant reply with text"
            )
        o = self._options(max_tokens, tools, None, None, params, False)
        return self._one_turn(turn_flow(self, None, o, resume=len(self._messages) - 1), method)

    def _with_effects(self, flow: Generator[Any, Any, Reply]) -> Generator[Any, Any, Reply]:
        """``flow`` with what must happen when a turn ends (a store's write: Journaled); as is here."""
        return flow

    def _one_turn(self, flow: Generator[Any, Any, Reply], method: str) -> Generator[Any, Any, Reply]:
        """``flow`` and its effects, as the conversation's only turn: from its first step (a
        stream's first read) to its end, another turn or edit is refused (:meth:`_idle`) instead
        of interleaving."""
        with _CLAIM:
            self._idle(method)
            self._turning = method
        try:
            return (yield from self._with_effects(flow))
        finally:
            self._turning = None

    def _idle(self, method: str) -> None:
        """ConversationBusyError, before anything changes, while a turn of this object is in progress."""
        if self._turning is not None:
            raise ConversationBusyError(
                f"conv.{method}() was called while a {self._turning}() turn is in progress on this conversation; "
                "one conversation object runs one turn at a time: wait for it to end (await it, read its "
                "stream to the end or close it), or use conv.fork() for a turn of its own"
            )

    def _record(self, reply: Any) -> Any:
        """Complete the drafted receipt of the request just answered."""
        as_strategy(self.strategy).observe(reply)  # e.g. what server-side edits cleared
        if self._draft is not None:
            prices = getattr(self.client, "prices", None)
            self.receipts.append(self._draft.completed(getattr(reply, "usage", None), prices))
            self._draft = None
        return reply

    def _restorer(self) -> Any:
        return self.redactor.restorer(self._mapping) if self._mapping and self.redactor is not None else None

    def _need_client(self) -> Any:
        if self.client is None:
            raise InvalidConfigError(
                "this conversation has no client: pass client=convo.Client(...) to Conversation(...), "
                "Conversation.load(...) or store.open(...)/store.create(...), or set conv.client"
            )
        return self.client

    def _check_turn(self, method: str) -> None:
        """Before a turn changes anything: ConversationBusyError while another is in progress,
        ClientMismatchError when ``method`` (sync or async) does not match the client."""
        self._idle(method)
        client = self._need_client()
        wants_async = method.startswith("a")
        if is_async_client(client) == wants_async:
            return
        if wants_async:
            raise ClientMismatchError(
                f"conv.{method}() needs an AsyncClient, but this conversation's client is a "
                f"{type(client).__name__}: call conv.{method[1:]}(...) instead, or pass "
                "Conversation(..., client=convo.AsyncClient(...))"
            )
        how = (
            f"await conv.{'a' + method}(...)"
            if method in ("send", "continue_")
            else f"async for x in conv.a{method}(...)"
        )
        raise ClientMismatchError(
            f"conv.{method}() is synchronous, but this conversation's client is an "
            f"{type(client).__name__}: use {how} instead, or pass Conversation(..., client=convo.Client(...))"
        )

    # -- summarizing ---------------------------------------------------------------------------

    def compact(self, max_tokens: int | None = None, *, force: bool = False, tools: Any = None) -> bool:
        """Run the strategy's summarizing step now (a :class:`Summarize`, also inside a composite);
        True if turns were folded.

        :meth:`send` and :meth:`stream` do this before each request: there a failed summary is
        kept in ``summary_error`` and the window takes over. It folds only past the strategy's
        trigger, unless ``force``; ``tools`` you will send count toward the budget.
        Raises the summarizer's error (also kept in ``summary_error``), changing nothing else.
        """
        self._idle("compact")
        return self._compact(max_tokens, tools, force, quiet=False)

    async def acompact(self, max_tokens: int | None = None, *, force: bool = False, tools: Any = None) -> bool:
        """The async twin of :meth:`compact`."""
        self._idle("acompact")
        return await self._acompact(max_tokens, tools, force, quiet=False)

    def _compact(self, max_tokens: int | None, tools: Any, force: bool, *, quiet: bool) -> bool:
        """Fold as planned; ``quiet``: a failed summary is only recorded (the turn goes on)."""
        fold = self._plan_fold(max_tokens, tools, force)
        if fold is None:
            return False
        writer = _writer(fold)
        limit = None
        for _ in range(writer.max_calls):
            try:
                text = writer.summarize(fold, self.client, self.model, limit)
            except ClientMismatchError:
                raise  # a wrong call, not a failed summary: nothing is recorded
            except Exception as exc:  # the summarizer is user code or a model call: any failure
                if not self._failed(exc, quiet):
                    return False
                raise
            limit = self._commit_summary(fold, text)
            if limit is None:
                return True
        if quiet:
            return False
        raise SummaryError(self.summary_error)

    async def _acompact(self, max_tokens: int | None, tools: Any, force: bool, *, quiet: bool) -> bool:
        fold = self._plan_fold(max_tokens, tools, force)
        if fold is None:
            return False
        writer = _writer(fold)
        limit = None
        for _ in range(writer.max_calls):
            try:
                text = await writer.asummarize(fold, self.client, self.model, limit)
            except Exception as exc:  # as in _compact: user code or a model call, any failure
                if not self._failed(exc, quiet):
                    return False
                raise
            limit = self._commit_summary(fold, text)
            if limit is None:
                return True
        if quiet:
            return False
        raise SummaryError(self.summary_error)

    def _failed(self, exc: Exception, quiet: bool) -> bool:
        """Record a failed summary; True when it should be raised."""
        self.summary_error = f"{type(exc).__name__}: {exc}"
        log.debug("summarizing failed (%s)", self.summary_error)
        return not quiet

    def _commit_summary(self, fold: Fold, text: str) -> int | None:
        """Store the summary if it is shorter than what it replaces (None); else record why and
        return a tighter reply limit for the next try."""
        summary = Summary(text, fold.end)
        previous = Summary(fold.previous, 0).message if fold.previous else None
        replaced = sum(self.counter.count_message(m) for m in (*fold.messages, *filter(None, [previous])))
        size = self.counter.count_message(summary.message)
        if size < replaced:
            self._summary, self.summary_error = summary, None
            log.debug("summarized %d messages (%d tokens) into %d tokens", len(fold.messages), replaced, size)
            return None
        log.debug("a summary of %d tokens is not shorter than the %d tokens it replaces; kept the turns", size, replaced)
        self.summary_error = (
            f"the summary ({size} tokens) is not shorter than the {replaced} tokens it would replace; "
            "the turns were kept"
        )
        return max(16, replaced // 2)

    def _plan_fold(self, max_tokens: int | None, tools: Any, force: bool) -> Fold | None:
        if not self._starts:
            return None
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        fixed = self._fixed if not tools else fixed_tokens(self.counter, self._system, tools)
        return as_strategy(self.strategy).plan(self._state(max_tokens, fixed), force=force)


def _writer(fold: Fold) -> FoldWriter:
    if fold.writer is None:
        raise InvalidConfigError(
            "the strategy planned a Fold without a writer; return Fold(..., writer=self) from plan(), "
            "where self has summarize, asummarize and max_calls (as Summarize does)"
        )
    return fold.writer


def is_async_client(client: object) -> bool:
    """Whether ``client`` is async: an AsyncClient, or a client whose ``create`` is a coroutine.

    ``convo.client`` is looked up, not imported: if it is not loaded, no convo client exists
    (and importing it would load the SDK).
    """
    module = sys.modules.get("convo.client")
    if module is not None:
        if isinstance(client, module.AsyncClient):
            return True
        if isinstance(client, module.Client):
            return False
    return inspect.iscoroutinefunction(getattr(client, "create", None))
