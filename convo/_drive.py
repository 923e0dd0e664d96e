"""The drivers of a turn's flow (:mod:`convo._tool_loop`): one with the sync client, one with the
async client. Each performs the flow's operations (summarize, call the model, run the tools),
passes its events on, and hands any failure back to the flow, which takes the turn back.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from ._flow import Do
from ._resume import BlockEvent
from ._telemetry import traced_turn
from ._tool_loop import Call, Compact, RunTools
from .events import Event, ReplyEnd, TextDelta, ThinkingDelta, ToolCallStart, ToolInputComplete
from .reply import Reply

__all__ = ["adrive", "afinish", "atexts", "drive", "finish", "texts"]


@traced_turn  # the turn, every step of it, in one OpenTelemetry span (convo.telemetry)
def drive(conv: Any, flow: Generator[Any, Any, Reply]) -> Iterator[Event]:
    """Run the flow with the sync client; yields its events, then ReplyEnd."""
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                reply: Reply = stop.value
                break
            value = error = None
            try:
                if isinstance(op, Compact):
                    value = conv._compact(op.max_tokens, op.tools, False, quiet=True)
                elif isinstance(op, Call) and op.stream:
                    value = yield from _stream_step(conv, op)
                elif isinstance(op, Call):
                    value = conv._need_client().create(**op.request)
                elif isinstance(op, RunTools):
                    value = op.tools.run(op.calls)
                elif isinstance(op, Do):  # the store's write of a completed turn
                    value = op.fn(*op.args)
                else:
                    yield op
            except Exception as exc:  # noqa: BLE001 - handed to the flow, which takes the turn back
                error = exc
    finally:
        flow.close()
    yield ReplyEnd(reply)


def _stream_step(conv: Any, op: Call) -> Generator[Event, None, Any]:
    shown = _Shown(conv._restorer())
    with conv._need_client().stream(**op.request, on_restart=shown.restart) as s:
        for item in s.event_stream:
            if type(item) is str:
                fresh = shown.take(item)
                if fresh:
                    yield TextDelta(fresh, op.step)
            elif (block := shown.block(item)) is not None:
                yield _event(block, op.step)
        rest = shown.flush()
        if rest:
            yield TextDelta(rest, op.step)
        return s.get_final_message()


def _event(block: BlockEvent, step: int) -> Event:
    """A stream's block event as the turn's typed event."""
    if block.kind == "thinking":
        return ThinkingDelta(block.text, step)
    if block.kind == "tool_start":
        return ToolCallStart(block.id or "", block.name or "", step)
    return ToolInputComplete(block.id or "", block.name or "", block.input, step)


class _Shown:
    """The text a step has shown. A stream that breaks inside a tool call or thinking starts
    over (the client's ``on_restart``); the start it sends again, when it is what was already
    shown, is not shown twice."""

    def __init__(self, restorer: Any) -> None:
        self.restorer = restorer
        self.text = ""  # raw text of the current attempt
        self.replayed = ""  # what the new attempt has yet to repeat
        self.blocks: set[tuple[str, int, str | None]] = set()  # tool calls started / completed
        self.thinking: dict[int, _Shown] = {}  # by block index

    def restart(self, _notice: object) -> None:
        self.replayed, self.text = self.text, ""
        for shown in self.thinking.values():
            shown.restart(None)

    def block(self, event: BlockEvent) -> BlockEvent | None:
        """``event`` if the caller has not seen it yet (after a restart the stream sends the
        same start again)."""
        if event.kind == "thinking":
            fresh = self.thinking.setdefault(event.index, _Shown(None)).take(event.text)
            return dataclasses.replace(event, text=fresh) if fresh else None
        key = (event.kind, event.index, event.name)
        if key in self.blocks:
            return None
        self.blocks.add(key)
        return event

    def take(self, raw: str) -> str:
        self.text += raw
        if self.replayed:
            if self.replayed.startswith(raw):
                self.replayed = self.replayed[len(raw) :]
                return ""
            if raw.startswith(self.replayed):
                raw, self.replayed = raw[len(self.replayed) :], ""
            else:  # it says something else this time: show it as it comes
                self.replayed = ""
        return self.restorer.feed(raw) if self.restorer is not None and raw else raw

    def flush(self) -> str:
        return str(self.restorer.flush()) if self.restorer is not None else ""


@traced_turn
async def adrive(conv: Any, flow: Generator[Any, Any, Reply]) -> AsyncIterator[Event]:
    """The async twin of :func:`drive`."""
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                op = flow.throw(error) if error is not None else flow.send(value)
            except StopIteration as stop:
                reply: Reply = stop.value
                break
            value = error = None
            try:
                if isinstance(op, Compact):
                    value = await conv._acompact(op.max_tokens, op.tools, False, quiet=True)
                elif isinstance(op, Call) and op.stream:
                    shown = _Shown(conv._restorer())
                    async with conv._need_client().stream(**op.request, on_restart=shown.restart) as s:
                        async for item in s.event_stream:
                            if type(item) is str:
                                fresh = shown.take(item)
                                if fresh:
                                    yield TextDelta(fresh, op.step)
                            elif (block := shown.block(item)) is not None:
                                yield _event(block, op.step)
                        rest = shown.flush()
                        if rest:
                            yield TextDelta(rest, op.step)
                        value = await s.get_final_message()
                elif isinstance(op, Call):
                    value = await conv._need_client().create(**op.request)
                elif isinstance(op, RunTools):
                    value = await op.tools.arun(op.calls)
                elif isinstance(op, Do):  # off the event loop when it may block (a store's write)
                    value = await asyncio.to_thread(op.fn, *op.args) if op.io else op.fn(*op.args)
                else:
                    yield op
            except Exception as exc:  # noqa: BLE001 - as in _drive
                error = exc
    finally:
        flow.close()
    yield ReplyEnd(reply)


def finish(events: Iterator[Event]) -> Reply:
    """The turn's Reply, read to the end of its events (so what wraps the driver, a turn's
    span, closes normally)."""
    reply: Reply | None = None
    for event in events:
        if isinstance(event, ReplyEnd):
            reply = event.reply
    assert reply is not None, "a turn ends with ReplyEnd"
    return reply


async def afinish(events: AsyncIterator[Event]) -> Reply:
    """The async twin of :func:`finish`."""
    reply: Reply | None = None
    async for event in events:
        if isinstance(event, ReplyEnd):
            reply = event.reply
    assert reply is not None, "a turn ends with ReplyEnd"
    return reply


def texts(events: Iterator[Event]) -> Iterator[str]:
    for event in events:
        if isinstance(event, TextDelta) and event.text:
            yield event.text


async def atexts(events: AsyncIterator[Event]) -> AsyncIterator[str]:
    async for event in events:
        if isinstance(event, TextDelta) and event.text:
            yield event.text
