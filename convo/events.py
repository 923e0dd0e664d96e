"""Typed events of a turn, from ``conv.events(...)`` and ``conv.aevents(...)``.

>>> for event in conv.events("use get_weather for Paris", tools=[get_weather]):
...     match event:
...         case convo.TextDelta(text=text):
...             print(text, end="")
...         case convo.ToolResult(call=call):
...             print(f"\\n[{call.name} -> {call.result}]")
...         case convo.ReplyEnd(reply=reply):
...             print(f"\\n{reply.cost}")

A tool loop streams through all of its steps: each step's text and thinking, its tool calls (a
start, then the input once complete), a :class:`StepEnd` with the step's stop reason and usage;
then each tool's :class:`ToolResult`; then the next step. :class:`ReplyEnd` comes last, with the
:class:`~convo.Reply`. ``step`` numbers the model calls of the turn from 0. Each step is a
:meth:`convo.Client.stream`, so a stream that breaks part-way resumes within its step; one that
breaks inside a tool call or thinking starts the step over, and the text it sends again is not
shown twice when it is the same.

The client's stream relays text as it arrives; a step's thinking and its tool calls are
reported when the step's message is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anthropic.types import Usage

    from .receipts import Receipt
    from .reply import Reply, ToolCall

__all__ = [
    "Event", "ReplyEnd", "StepEnd", "TextDelta", "ThinkingDelta", "ToolCallStart", "ToolInputComplete", "ToolResult",
]  # fmt: skip


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply's text."""

    text: str
    step: int = 0


@dataclass(frozen=True)
class ThinkingDelta:
    """A piece of the model's thinking (extended or adaptive thinking on)."""

    thinking: str
    step: int = 0


@dataclass(frozen=True)
class ToolCallStart:
    """The model began a tool call."""

    id: str
    name: str
    step: int = 0


@dataclass(frozen=True)
class ToolInputComplete:
    """A tool call's input is complete (parsed JSON; a string when it was not valid JSON)."""

    id: str
    name: str
    input: Any
    step: int = 0


@dataclass(frozen=True)
class ToolResult:
    """convo ran a tool; ``call`` holds its result, ``is_error`` and duration."""

    call: ToolCall
    step: int = 0


@dataclass(frozen=True)
class StepEnd:
    """A model call of the turn ended."""

    step: int
    stop_reason: str | None
    usage: Usage
    receipt: Receipt | None = None


@dataclass(frozen=True)
class ReplyEnd:
    """The turn is over; ``reply`` is what ``send`` would have returned."""

    reply: Reply


Event = TextDelta | ThinkingDelta | ToolCallStart | ToolInputComplete | ToolResult | StepEnd | ReplyEnd
"""Any event of a turn (the union of the event classes), for annotations and ``match``."""
