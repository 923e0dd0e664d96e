"""Fitting a conversation into one request: the strategy's selection of turns within the token
budget, prompt-cache breakpoints, the receipt's draft, redaction. A mixin of
:class:`convo.Conversation` (like ``_talk.Talking``), kept apart so ``conversation`` holds the
history and its running totals, and this module what one request sends of it.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from . import _breakpoints, receipts
from ._exceptions import InvalidConfigError, InvalidMessageError
from ._limits import check_max_tokens, check_selection, model_info
from ._preflight import check_request, fit_final_turn
from .messages import Message, TextBlock
from .redact import restore_message
from .strategies import Selection, TrimState, as_selection, as_strategy, merge_params
from .summarize import Summary
from .tokens import TokenCounter, calibrated_budget, calibration_of, fixed_tokens

__all__ = ["Fitting"]

log = logging.getLogger("convo.conversation")

_RESERVED = frozenset({"messages", "system", "max_tokens"})


class Fitting:
    """request() and what it reads of the history, for Conversation."""

    # Provided by Conversation.
    model: str
    budget: int
    max_tokens: int
    strategy: Any
    counter: TokenCounter
    client: Any
    redactor: Any
    prompt_cache: str | bool | None
    summary_error: str | None
    last_selection: Selection | None
    _system: str | tuple[TextBlock, ...] | None
    _fixed: int
    _messages: list[Message]
    _api: list[dict[str, Any]]
    _marks: dict[int, int]
    _starts: list[int]
    _prefix: list[int]
    _pinned: set[int]
    _pinned_sorted: list[int]
    _pinned_prefix: list[int]
    _summary: Summary | None
    _mapping: dict[str, str]
    _draft: Any

    if TYPE_CHECKING:

        def _turn_end(self, t: int) -> int: ...

    def request(self, max_tokens: int | None = None, **params: Any) -> dict[str, Any]:
        """Keyword arguments for ``client.messages.create(**...)``, fitted into the budget.

        Estimated input tokens + ``max_tokens`` <= ``budget``, by the counter. Extra ``params``
        (temperature, tools, stop_sequences, ...) are passed through; ``tools`` count too.
        Raises :class:`ContextOverflowError` when even the must-keep part does not fit.

        The message dicts are made once per message and shared by every request (so a turn
        costs the same at 10 or 10,000 messages): copy one before changing it in place.
        """
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        check_max_tokens(max_tokens, self.model, self.client)
        clash = _RESERVED & params.keys()
        if clash:
            raise InvalidConfigError(
                f"{sorted(clash)} cannot be passed to request(): the conversation supplies them "
                "(add messages with add_user/add_assistant, set the system prompt in the constructor)"
            )
        if not self._starts:
            raise InvalidMessageError("the conversation is empty; add a user message first (add_user)")
        check_request({"model": self.model, **params}, None, method="params")  # JSON-able, tools a list: before counting
        tools = params.get("tools")
        fixed = self._fixed if not tools else fixed_tokens(self.counter, self._system, self._sent_tools(tools))
        state = self._state(max_tokens, fixed)
        selection = as_selection(self.strategy(state))
        check_selection(self.strategy, state, selection)
        if self.summary_error is not None:
            failed = f"summarizing failed ({self.summary_error}); fell back to the sliding window"
            selection = dataclasses.replace(selection, note="; ".join(filter(None, (selection.note, failed))))
        self.last_selection = selection
        request: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens}
        if self._system:
            request["system"] = (
                self._system if isinstance(self._system, str) else [b.model_dump(mode="json") for b in self._system]
            )
        request["messages"] = self._selected_api(selection)
        request.update(params)
        # A strategy may add fields (server-side edits and their beta header); the caller's win a clash.
        request = merge_params(request, as_strategy(self.strategy).params(self.model))
        marks = []
        estimate = (state.cost(selection) - max_tokens) * state.factor  # in the server's tokens
        ttl = _breakpoints.ttl(self.prompt_cache, self.client, model_info(self.model, self.client), estimate)
        if ttl:
            existing = sum(n for i, n in self._marks.items() if self._sent(i, selection))
            marks = _breakpoints.place(request, summary=bool(selection.context), ttl=ttl, existing=existing)
        fit_final_turn(request, model_info(self.model, self.client))  # a prefill the API would refuse
        summary_tokens = sum(self.counter.count_message(m) for m in selection.context)
        self._draft = receipts.draft(self.model, state, selection, marks, summary_tokens)
        if self._draft.dropped_messages and log.isEnabledFor(logging.DEBUG):
            log.debug("trimmed %d messages (%d tokens) to fit the budget of %d tokens",
                      self._draft.dropped_messages, self._draft.dropped_tokens, state.budget)
        if self.redactor is not None:  # before it is sent, cached or logged; one numbering for the conversation
            request, self._mapping = self.redactor.redact_request(request, self._mapping, thinking=True)
        return request

    def _unredact(self, reply: Any) -> Any:
        """The reply with the conversation's placeholders restored, in thinking too (its
        requests put them back, so the signed text is sent as it came)."""
        if not self._mapping or self.redactor is None:  # a client's redactor restores its own
            return reply
        return restore_message(reply, self._mapping, thinking=True)

    def _sent_tools(self, tools: Any) -> Any:
        """``tools`` as they will be sent: with prompt caching and no system prompt, the last tool
        carries the breakpoint (see ``_breakpoints``), and its ``cache_control`` counts too."""
        # With prompt_cache=None marking is decided later, by size: counted as if it happens.
        may_mark = self.prompt_cache or (self.prompt_cache is None and self.client is not None)
        if not may_mark or self._system or not isinstance(tools, list) or not tools:
            return tools
        last = tools[-1]
        if not isinstance(last, dict) or "cache_control" in last:
            return tools
        cc = {"type": "ephemeral", "ttl": "1h"} if self.prompt_cache == "1h" else {"type": "ephemeral"}
        return [*tools[:-1], {**last, "cache_control": cc}]

    def _sent(self, index: int, selection: Selection) -> bool:
        """Whether message ``index`` of the history is in the request ``selection`` makes."""
        turn = bisect.bisect_right(self._starts, index) - 1
        return turn >= selection.start or turn in self._pinned

    def _kept(self, selection: Selection) -> list[tuple[int, int]]:
        """The history's slices ``selection`` sends, in order: each pinned turn before the window,
        then the window to the end."""
        spans = []
        for t in self._pinned_sorted:
            if t >= selection.start:
                break
            spans.append((self._starts[t], self._turn_end(t)))
        spans.append((self._starts[selection.start], len(self._messages)))
        return spans

    def _selected_api(self, selection: Selection) -> list[dict[str, Any]]:
        """:meth:`_selected` as API dicts, from the per-message cache."""
        out = [m.to_api() for m in selection.context]
        for start, end in self._kept(selection):
            out.extend(self._api[start:end])
        return out

    def _selected(self, selection: Selection) -> list[Message]:
        out = list(selection.context)
        for start, end in self._kept(selection):
            out.extend(self._messages[start:end])
        return out

    def _state(self, max_tokens: int, fixed: int | None = None) -> TrimState:
        cal = calibration_of(self.counter)
        return TrimState(
            messages=self._messages,
            starts=self._starts,
            prefix=self._prefix,
            pinned=self._pinned_sorted,
            pinned_prefix=self._pinned_prefix,
            fixed=self._fixed if fixed is None else fixed,
            max_tokens=max_tokens,
            budget=calibrated_budget(self.counter, self.model, self.budget, max_tokens),
            counter=self.counter,
            summary=self._summary,
            model=self.model,
            factor=cal.factor(self.model) if cal is not None else 1.0,
            limit=self.budget,
        )
