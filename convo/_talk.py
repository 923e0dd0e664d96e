"""Talking to the model: the send/stream turn cycle and the summarizing step, sync and async.

A mixin of :class:`convo.Conversation`, kept apart so the conversation module holds the
history and the fitting, and this one the calls that go through a client.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ._exceptions import ClientMismatchError, InvalidConfigError, SummaryError
from ._telemetry import traced_turn
from .messages import Message, TextBlock, to_message
from .redact import restore_message
from .strategies import TrimState, as_strategy
from .summarize import Fold, FoldWriter, Summary
from .tokens import TokenCounter, fixed_tokens

__all__ = ["Talking", "is_async_client"]

log = logging.getLogger("convo.conversation")


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

    # -- talking to the model -----------------------------------------------------------------

    @traced_turn  # an OpenTelemetry span around the turn (convo.telemetry)
    def send(self, content: Any, *, max_tokens: int | None = None, **params: Any) -> str:
        """Add a user turn, get the reply, add it, return its text (needs a :class:`~convo.Client`).

        If the call fails the user turn is taken back, so the conversation is as before.
        """
        mark = self._add_turn(content, "send")
        try:
            self._compact(max_tokens, params.get("tools"), False, quiet=True)
            request = self.request(max_tokens, **params)
            reply = self._unredact(self._record(self._need_client().create(**request)))
        except BaseException:
            self._rollback(mark)
            raise
        return self._end_turn(reply)

    def stream(self, content: Any, *, max_tokens: int | None = None, **params: Any) -> Iterator[str]:
        """Like :meth:`send`, but yields the reply's text as it arrives; the assistant turn is
        added when the stream ends (or the user turn taken back if it fails). The client is
        checked here, at the call; the user turn is added when iteration starts."""
        self._check_client("stream")
        return self._stream(content, max_tokens, params)

    @traced_turn  # an OpenTelemetry span around the turn (convo.telemetry)
    def _stream(self, content: Any, max_tokens: int | None, params: dict[str, Any]) -> Iterator[str]:
        mark = self._add_turn(content, "stream")
        try:
            self._compact(max_tokens, params.get("tools"), False, quiet=True)
            request = self.request(max_tokens, **params)
            restorer = self._restorer()
            with self._need_client().stream(**request) as s:
                for text in s.text_stream:
                    yield restorer.feed(text) if restorer else text
                if restorer:
                    yield restorer.flush()
                reply = self._unredact(self._record(s.get_final_message()))
        except BaseException:
            self._rollback(mark)
            raise
        self._end_turn(reply)

    @traced_turn  # an OpenTelemetry span around the turn (convo.telemetry)
    async def asend(self, content: Any, *, max_tokens: int | None = None, **params: Any) -> str:
        """The async twin of :meth:`send` (needs an :class:`~convo.AsyncClient`)."""
        mark = self._add_turn(content, "asend")
        try:
            await self._acompact(max_tokens, params.get("tools"), False, quiet=True)
            request = self.request(max_tokens, **params)
            reply = self._unredact(self._record(await self._need_client().create(**request)))
        except BaseException:
            self._rollback(mark)
            raise
        return self._end_turn(reply)

    def astream(self, content: Any, *, max_tokens: int | None = None, **params: Any) -> AsyncIterator[str]:
        """The async twin of :meth:`stream` (needs an :class:`~convo.AsyncClient`):
        ``async for text in conv.astream(...)``. The client is checked at the call."""
        self._check_client("astream")
        return self._astream(content, max_tokens, params)

    @traced_turn  # an OpenTelemetry span around the turn (convo.telemetry)
    async def _astream(self, content: Any, max_tokens: int | None, params: dict[str, Any]) -> AsyncIterator[str]:
        mark = self._add_turn(content, "astream")
        try:
            await self._acompact(max_tokens, params.get("tools"), False, quiet=True)
            request = self.request(max_tokens, **params)
            restorer = self._restorer()
            async with self._need_client().stream(**request) as s:
                async for text in s.text_stream:
                    yield restorer.feed(text) if restorer else text
                if restorer:
                    yield restorer.flush()
                reply = self._unredact(self._record(await s.get_final_message()))
        except BaseException:
            self._rollback(mark)
            raise
        self._end_turn(reply)

    def _record(self, reply: Any) -> Any:
        """Complete the drafted receipt of the request just answered."""
        as_strategy(self.strategy).observe(reply)  # e.g. what server-side edits cleared
        if self._draft is not None:
            prices = getattr(self.client, "prices", None)
            self.receipts.append(self._draft.completed(getattr(reply, "usage", None), prices))
            self._draft = None
        return reply

    def _unredact(self, reply: Any) -> Any:
        """Put back what the conversation's redactor replaced in the request (placeholder mode)."""
        return restore_message(reply, self._mapping) if self._mapping else reply

    def _restorer(self) -> Any:
        return self.redactor.restorer(self._mapping) if self._mapping else None

    def _need_client(self) -> Any:
        if self.client is None:
            raise InvalidConfigError("this conversation has no client: pass Conversation(..., client=convo.Client(...))")
        return self.client

    def _check_client(self, method: str) -> None:
        """Raise ClientMismatchError, before anything changes, when ``method`` (sync or async)
        does not match the client (Client or AsyncClient)."""
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
        how = "await conv.asend(...)" if method == "send" else "async for text in conv.astream(...)"
        raise ClientMismatchError(
            f"conv.{method}() is synchronous, but this conversation's client is an "
            f"{type(client).__name__}: use {how} instead, or pass Conversation(..., client=convo.Client(...))"
        )

    def _add_turn(self, content: Any, method: str) -> int:
        self._check_client(method)
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
        """Run the strategy's summarizing step now (a :class:`Summarize`, also inside a composite);
        True if turns were folded.

        :meth:`send` and :meth:`stream` do this before each request: there a failed summary is
        kept in ``summary_error`` and the window takes over. It folds only past the strategy's
        trigger, unless ``force``; ``tools`` you will send count toward the budget.
        Raises the summarizer's error (also kept in ``summary_error``), changing nothing else.
        """
        return self._compact(max_tokens, tools, force, quiet=False)

    async def acompact(self, max_tokens: int | None = None, *, force: bool = False, tools: Any = None) -> bool:
        """The async twin of :meth:`compact`."""
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
