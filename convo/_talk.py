"""Talking to the model: the send/stream turn cycle and the summarizing step, sync and async.

A mixin of :class:`convo.Conversation`, kept apart so the conversation module holds the
history and the fitting, and this one the calls that go through a client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._exceptions import ConvoError, InvalidConfigError
from .messages import to_message
from .redact import restore_message
from .strategies import OrElse
from .summarize import Fold, Summarize, Summary
from .tokens import fixed_tokens

__all__ = ["Talking"]


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
    counter: Any

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
            reply = self._unredact(self._record(self._need_client().create(**request)))
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

    async def asend(self, content: Any, *, max_tokens: int | None = None, **params: Any) -> str:
        """The async twin of :meth:`send` (needs an AsyncClient)."""
        mark = self._add_turn(content)
        try:
            with contextlib.suppress(Exception):
                await self.acompact(max_tokens, tools=params.get("tools"))
            request = self.request(max_tokens, **params)
            reply = self._unredact(self._record(await self._need_client().create(**request)))
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
        observe = getattr(self.strategy, "observe", None)  # what server-side edits cleared
        if observe is not None:
            observe(reply)
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
        limit = None
        for _ in range(strategy.max_calls):
            try:
                text = strategy.summarize(fold, self.client, self.model, limit)
            except Exception as exc:
                self.summary_error = f"{type(exc).__name__}: {exc}"
                raise
            limit = self._commit_summary(fold, text)
            if limit is None:
                return True
        raise ConvoError(self.summary_error)

    async def acompact(self, max_tokens: int | None = None, *, force: bool = False, tools: Any = None) -> bool:
        """The async twin of :meth:`compact`."""
        strategy, fold = self._plan_fold(max_tokens, tools, force)
        if fold is None:
            return False
        limit = None
        for _ in range(strategy.max_calls):
            try:
                text = await strategy.asummarize(fold, self.client, self.model, limit)
            except Exception as exc:
                self.summary_error = f"{type(exc).__name__}: {exc}"
                raise
            limit = self._commit_summary(fold, text)
            if limit is None:
                return True
        raise ConvoError(self.summary_error)

    def _commit_summary(self, fold: Fold, text: str) -> int | None:
        """Store the summary if it is shorter than what it replaces (None); else record why and
        return a tighter reply limit for the next try."""
        summary = Summary(text, fold.end)
        previous = Summary(fold.previous, 0).message if fold.previous else None
        replaced = sum(self.counter.count_message(m) for m in (*fold.messages, *filter(None, [previous])))
        size = self.counter.count_message(summary.message)
        if size < replaced:
            self._summary, self.summary_error = summary, None
            return None
        self.summary_error = (
            f"the summary ({size} tokens) is not shorter than the {replaced} tokens it would replace; "
            "the turns were kept"
        )
        return max(16, replaced // 2)

    def _plan_fold(self, max_tokens: int | None, tools: Any, force: bool) -> tuple[Any, Fold | None]:
        strategy = self.strategy
        if isinstance(strategy, OrElse):
            strategy = next((s for s in strategy.strategies if isinstance(s, Summarize)), None)
        if not isinstance(strategy, Summarize) or not self._starts:
            return strategy, None
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        fixed = self._fixed if not tools else fixed_tokens(self.counter, self._system, tools)
        return strategy, strategy.plan(self._state(max_tokens, fixed), force=force)

