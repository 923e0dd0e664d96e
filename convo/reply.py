"""What a turn did: :class:`Reply`, the string ``conv.send()`` returns, with its steps.

>>> reply = conv.send("What is the weather in Paris?", tools=[get_weather])
>>> print(reply)                     # a str: the final text
The result is: sunny, 21 C.
>>> reply.stop_reason, reply.truncated, len(reply.steps), reply.tool_calls[0].name
('end_turn', False, 2, 'get_weather')
>>> reply.cost                       # USD over every model call of the turn

A turn is one or more *steps* (model calls): a tool loop calls the model again after running
the tools, a paused server-tool turn is continued. ``usage`` and ``cost`` add up all of them;
``message`` is the last step's ``anthropic.types.Message``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from ._exceptions import ConvoError

if TYPE_CHECKING:
    from anthropic.types import Message as SDKMessage
    from anthropic.types import Usage

    from .receipts import Receipt

__all__ = ["MaxStepsError", "OutputValidationError", "Reply", "Step", "ToolCall"]

#: The stop reasons that mean the reply was cut off (``conv.continue_()`` extends it).
TRUNCATING = frozenset({"max_tokens", "model_context_window_exceeded"})
_USAGE = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass(frozen=True)
class ToolCall:
    """One ``tool_use`` of a turn: what the model asked for and, when convo ran it, the result.

    ``result`` is what the tool returned (the exception's message when it raised) and ``content``
    what was sent back in the ``tool_result``; both are None, and ``duration`` too, for a call
    convo did not run (no Python function for it): answer it yourself with a ``tool_result``.
    """

    id: str
    name: str
    input: Any
    result: Any = None
    content: Any = None
    is_error: bool = False
    duration: float | None = None  # seconds the tool ran

    @property
    def ran(self) -> bool:
        """Whether convo ran the tool (and sent its result back)."""
        return self.duration is not None


@dataclass(frozen=True)
class Step:
    """One model call of a turn: its message, its receipt, and the tool calls it made."""

    message: SDKMessage
    receipt: Receipt | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def stop_reason(self) -> str | None:
        """Why this call stopped (``end_turn``, ``tool_use``, ``pause_turn``, ...)."""
        return self.message.stop_reason

    @property
    def usage(self) -> Usage:
        """The call's token usage, as the API reported it."""
        return self.message.usage

    @property
    def cost(self) -> float | None:
        """USD for this call (None when the model has no known price)."""
        return self.receipt.cost if self.receipt is not None else None


def sum_usage(steps: Sequence[Step]) -> Usage:
    """The token counts of several calls added up, as one ``anthropic.types.Usage``."""
    from anthropic.types import Usage

    totals: dict[str, Any] = {name: 0 for name in _USAGE}
    servers: dict[str, int] = {}
    for step in steps:
        for name in _USAGE:
            totals[name] += int(getattr(step.usage, name, 0) or 0)
        server = getattr(step.usage, "server_tool_use", None)
        for name, value in (server.model_dump() if server is not None else {}).items():
            if isinstance(value, int):
                servers[name] = servers.get(name, 0) + value
    if servers:
        totals["server_tool_use"] = servers
    return Usage.model_validate(totals)


class Reply(str):
    """The text of a turn's final reply (a ``str``: existing code keeps working), and what the turn did.

    ``stop_reason`` is the last call's; ``truncated`` is true when it was cut off (``max_tokens``
    or ``model_context_window_exceeded``), ``refused`` when the model declined (``refusal``: the
    exchange is not kept in the history unless ``conv.keep_refusals``). ``steps`` are the model
    calls, ``tool_calls`` every tool call of the turn in order, ``parsed`` the validated object
    of ``send(..., output=...)``.
    """

    message: SDKMessage
    steps: tuple[Step, ...]
    tool_calls: tuple[ToolCall, ...]
    parsed: Any

    def __new__(cls, text: str, *, steps: Sequence[Step], parsed: Any = None) -> Self:
        if not steps:
            raise ValueError("a Reply needs at least one step (model call)")
        self = super().__new__(cls, text)
        self.steps = tuple(steps)
        self.message = self.steps[-1].message
        self.tool_calls = tuple(c for s in self.steps for c in s.tool_calls)
        self.parsed = parsed
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (and copies) as the plain text
        return (str, (str(self),))

    @property
    def text(self) -> str:
        """The reply's text as a plain ``str``."""
        return str(self)

    @property
    def stop_reason(self) -> str | None:
        """Why the last model call stopped."""
        return self.message.stop_reason

    @property
    def refused(self) -> bool:
        """True when the model declined (``refusal``); see ``conv.keep_refusals``."""
        return self.stop_reason == "refusal"

    @property
    def truncated(self) -> bool:
        """True when the reply was cut off; ``conv.continue_()`` asks for the rest."""
        return self.stop_reason in TRUNCATING

    @property
    def usage(self) -> Usage:
        """Tokens of every model call of the turn, added up."""
        return sum_usage(self.steps)

    @property
    def cost(self) -> float | None:
        """USD over every model call of the turn; None when a call's price is unknown."""
        costs = [s.cost for s in self.steps]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    @property
    def receipt(self) -> Receipt | None:
        """The last call's receipt (each step has its own: ``reply.steps[i].receipt``)."""
        return self.steps[-1].receipt

    @property
    def receipts(self) -> tuple[Receipt, ...]:
        """One receipt per model call of the turn."""
        return tuple(s.receipt for s in self.steps if s.receipt is not None)

    @property
    def pending(self) -> tuple[ToolCall, ...]:
        """Tool calls the model made that convo did not run: answer them with ``tool_result``s."""
        return tuple(c for c in self.steps[-1].tool_calls if not c.ran)


class MaxStepsError(ConvoError):
    """A tool loop reached ``max_steps`` model calls and the model still asked for tools.

    The turn was taken back, as after any failure; ``reply`` is what it did (its steps, tool calls,
    receipts and cost). Raise ``max_steps`` (per call or ``conv.max_steps``) to allow more.
    """

    def __init__(self, message: str, *, reply: Reply) -> None:
        super().__init__(message)
        self.reply = reply


class OutputValidationError(ConvoError):
    """The reply to ``send(..., output=...)`` is not valid for the schema; ``raw`` is its text.

    The turn was taken back, as after any failure; ``reply`` is what it did.
    """

    def __init__(self, message: str, *, raw: str, reply: Reply) -> None:
        super().__init__(message)
        self.raw = raw
        self.reply = reply
