"""Streams that survive failures: the resumable stream flow.

Before any text reached the caller a failure is retried transparently; after, the stream
*continues*, as the API docs advise for errors mid-stream: where the model accepts an assistant
prefill (``convo.models.lookup(model).prefill``; Claude 4.5 and earlier) the next attempt ends
with the text so far as the assistant's turn; elsewhere (Claude 4.6 and later, an unknown model,
or thinking on) it adds that text as an assistant turn and then a user turn asking the model to
continue. The continuation is stitched on so the caller sees each character once: whitespace the
caller saw but the API would refuse at the end of a turn, and any text the continuation repeats
from the end of the partial one, are dropped. A partial tool call or thinking block cannot be
continued; then the stream starts over and says so (``StreamRestartedError``, or the caller's
``on_restart`` callback with a :class:`Restart`). Written once as a flow, run by the sync and the
async driver; the handles the caller holds are in :mod:`convo.streams`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
from anthropic.types import TextBlock as SDKTextBlock
from anthropic.types.parsed_message import ParsedMessage, ParsedTextBlock

from ._context import CallContext
from ._exceptions import StreamError, StreamRestartedError
from ._flow import Close, Emit, Final, Flow, Open, Relay
from ._guards import ALL, CallState, Ticket
from ._pipeline import Attempted, Attempts, Operation, run
from .models import lookup
from .retry import RetryPolicy, StreamInterrupted

__all__ = ["CONTINUE_PROMPT", "BlockEvent", "Restart", "accepts_prefill", "overlap", "stream_flow"]

#: The user turn that asks a model which refuses a prefill to go on after its partial reply.
CONTINUE_PROMPT = (
    "Your previous reply was cut off mid-stream. Please continue it exactly where it stopped, "
    "starting with the next character, without repeating any of the text so far."
)
#: A continuation's start that repeats the end of the partial text is dropped only if it is at
#: least this long (shorter matches are as likely to be new text) or is whitespace.
MIN_OVERLAP = 8
#: How much of a continuation's start is held back while it could still be a repeat.
MAX_OVERLAP = 400


@dataclass(frozen=True, slots=True)
class BlockEvent:
    """A stream event that is not text (see ``Stream.event_stream``): ``kind`` is
    ``"thinking"`` (``text`` is a piece of the thinking), ``"tool_start"`` (a tool call began:
    ``id``, ``name``) or ``"tool_input"`` (its ``input`` is complete); ``index`` is the block's."""

    kind: str
    index: int
    text: str = ""
    id: str | None = None
    name: str | None = None
    input: Any = None


@dataclass(frozen=True)
class Restart:
    """Emitted by a stream that starts over; ``partial`` is the text the caller had seen."""

    reason: str
    partial: str


def accepts_prefill(model: str, request: dict[str, Any]) -> bool:
    """Whether a continuation for ``model`` may end with the partial text as a prefill.

    Only a model the catalogue knows to accept one, and only with thinking off (the API wants a
    final assistant turn to start with a thinking block then). An unknown model is assumed to
    refuse: a continuation request works on every model, a prefill does not.
    """
    info = lookup(model)
    if info is None or not info.prefill or info.thinking.always_on:
        return False
    thinking = request.get("thinking")
    return not (isinstance(thinking, dict) and thinking.get("type", "disabled") != "disabled")


def overlap(seen: str, continuation: str) -> int:
    """How many leading characters of ``continuation`` repeat the end of ``seen``.

    Whitespace-only repeats always count (the caller saw whitespace the API refused as the end
    of the assistant turn); other repeats count from ``MIN_OVERLAP`` characters and when they
    start at a word boundary of ``seen``.
    """
    for k in range(min(len(seen), len(continuation)), 0, -1):
        piece = continuation[:k]
        if not seen.endswith(piece):
            continue
        if not piece.strip():
            return k
        at_word = k == len(seen) or seen[-k - 1].isspace() or piece[0].isspace()
        if k >= MIN_OVERLAP and at_word:
            return k
    return 0


@dataclass
class _Progress:
    """What one stream has handed to the caller so far, across attempts."""

    request: dict[str, Any]
    chunks: list[str] = field(default_factory=list)
    anchor: str = ""  # the text the caller had seen when the current continuation began
    pending: str = ""  # a continuation's start, held while it may still repeat ``anchor``
    matching: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    resumed: int = 0

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def take(self, text: str) -> str:
        """The part of ``text`` the caller has not seen yet (held back while it may be a repeat)."""
        if self.matching:
            self.pending += text
            if len(self.pending) < MAX_OVERLAP and self.pending in self.anchor:
                return ""
            return self.drain()
        if text:
            self.chunks.append(text)
        return text

    def drain(self) -> str:
        """End the overlap check: the held-back text without what repeats the partial text."""
        if not self.matching:
            return ""
        held, self.pending, self.matching = self.pending, "", False
        fresh = held[overlap(self.anchor, held) :]
        if fresh:
            self.chunks.append(fresh)
        return fresh

    def kwargs(self, model: str) -> dict[str, Any]:
        """The next attempt's request: the original, or a continuation after the text so far."""
        request = {**self.request, "model": model}
        seen = self.text
        self.anchor, self.pending, self.matching = seen, "", bool(seen)
        partial = seen.rstrip()  # the API rejects a final assistant turn that ends in whitespace
        if not partial:
            return request
        messages = list(request["messages"])
        last = messages[-1] if messages else None
        if isinstance(last, dict) and last.get("role") == "assistant" and isinstance(last.get("content"), str):
            messages[-1] = {"role": "assistant", "content": last["content"] + partial}
        else:
            messages.append({"role": "assistant", "content": partial})
        if not accepts_prefill(model, request):
            messages.append({"role": "user", "content": CONTINUE_PROMPT})
        remaining = request["max_tokens"] - self.output_tokens
        return {**request, "messages": messages, "max_tokens": max(1, remaining)}

    def stitch(self, final: Any) -> Any:
        """The final message with the whole text and the usage of every attempt."""
        if not self.resumed and not self.input_tokens and not self.output_tokens:
            return final  # the first attempt went through: nothing to add
        usage = final.usage.model_copy(
            update={
                "input_tokens": final.usage.input_tokens + self.input_tokens,
                "output_tokens": final.usage.output_tokens + self.output_tokens,
            }
        )
        if not self.resumed:
            return final.model_copy(update={"usage": usage})
        content = list(final.content)
        index = next((i for i, b in enumerate(content) if b.type == "text"), None)
        if index is None:
            content.insert(0, _text_block(final, self.text))
        else:  # a copy of the block keeps its class (ParsedTextBlock in a stream's ParsedMessage)
            tail = "".join(b.text for b in content[index + 1 :] if b.type == "text")
            content[index] = content[index].model_copy(update={"text": self.text[: len(self.text) - len(tail)]})
        return final.model_copy(update={"content": content, "usage": usage})


def _text_block(final: Any, text: str) -> Any:
    """A text block of the class ``final``'s content expects, so serializing it does not warn."""
    if isinstance(final, ParsedMessage):
        return ParsedTextBlock(type="text", text=text, citations=None, parsed_output=None)
    return SDKTextBlock(type="text", text=text, citations=None)


def _snapshot(handle: Any) -> Any:
    try:
        return handle.stream.current_message_snapshot
    except (AssertionError, AttributeError):
        return None


def stream_flow(request: dict[str, Any], ctx: CallContext, *, can_restart: bool) -> Flow:
    """A resumable stream: emits text chunks (and Restart notices); returns the final Message.

    ``can_restart``: the caller accepts a restart (it passed ``on_restart``); otherwise a
    stream that cannot be continued raises StreamRestartedError.
    """
    return run(ctx, StreamCall(request, ctx, can_restart))


class StreamCall(Operation):
    """A stream through every guard: each attempt opens a stream and relays its text; after a
    failure the next attempt continues from the text the caller has seen (see the module doc)."""

    guards = ALL
    streaming = True

    def __init__(self, request: dict[str, Any], ctx: CallContext, can_restart: bool) -> None:
        super().__init__(request)
        self.ctx = ctx
        self.can_restart = can_restart
        self.progress = _Progress(request)
        self.relay: _Relay | None = None
        self.handle: Any = None
        self.partial: Any = None  # the failed attempt's snapshot
        self.headers: Any = None

    def begin(self, call: CallState) -> None:
        super().begin(call)
        self.progress = _Progress(call.request)
        self.relay = _Relay(self.progress, call.restorer, self.ctx.stats.clock, call.start)

    def kwargs(self, model: str) -> dict[str, Any]:
        if self.progress.chunks:
            self.progress.resumed += 1
            self.ctx.stats.count("stream_resumes")
        return self.progress.kwargs(model)

    def attempt(self, call: CallState, kwargs: dict[str, Any], ticket: Ticket) -> Flow:
        relay = self.relay
        assert relay is not None  # made in begin
        self.handle = self.partial = self.headers = None
        try:
            handle = self.handle = yield Open(kwargs)
            try:
                stopped = yield Relay(handle, relay, self._block)
            except ValueError as exc:  # json.JSONDecodeError from a malformed data: line
                raise StreamInterrupted(f"the stream sent a malformed event ({exc})") from exc
            if not stopped:
                raise StreamInterrupted("the stream ended without message_stop")
            rest = relay.drain()
            if rest:
                yield Emit(rest)
            final = yield Final(handle)
        except Exception:
            handle, self.handle = self.handle, None
            self.partial = _snapshot(handle) if handle is not None else None
            self.headers = handle.stream.response.headers if handle is not None else None
            if handle is not None:
                yield Close(handle)
            _count_partial(self.progress, self.partial, self.ctx)
            raise
        headers = handle.stream.response.headers
        self.handle = None
        yield Close(handle)
        call.ttft = relay.ttft
        return Attempted(self.progress.stitch(final), final.usage, headers)

    def _block(self, event: Any) -> BlockEvent | None:
        """A stream's other events, for the caller as they arrive: thinking text, a tool call
        starting, its input complete (read from the stream's snapshot)."""
        kind, index = event.type, getattr(event, "index", 0)
        if kind == "content_block_delta":
            delta = event.delta
            if delta.type == "thinking_delta" and delta.thinking:
                return BlockEvent("thinking", index, text=delta.thinking)
            return None
        if kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                return BlockEvent("tool_start", index, id=block.id, name=block.name)
            return None
        if kind == "content_block_stop" and self.handle is not None:
            snapshot = _snapshot(self.handle)
            content = getattr(snapshot, "content", None) or []
            done: Any = content[index] if index < len(content) else None
            if done is not None and getattr(done, "type", None) == "tool_use":
                return BlockEvent("tool_input", index, id=done.id, name=done.name, input=done.input)
        return None

    def failure(self, error: BaseException | None) -> tuple[Any, Any]:
        if error is None:  # cancelled mid-stream: what the open stream has used so far
            partial = _snapshot(self.handle) if self.handle is not None else None
            return _partial_usage(partial, self.ctx), None
        return getattr(self.partial, "usage", None), self.headers if self.headers is not None else super().failure(error)[1]

    def failed(self, call: CallState, error: Exception, attempts: Attempts) -> Flow:
        progress = self.progress
        if not progress.chunks or _continuable(self.partial, self.ctx.policy):
            return None
        if not self.can_restart:
            return StreamRestartedError(
                f"the stream failed after text reached you and holds a tool call or thinking, so it "
                f"cannot be continued ({type(error).__name__}: {error}); send the request again, or pass "
                "on_restart= to let convo start over",
                partial=progress.text,
                attempts=attempts.count,
            )
        yield Emit(Restart(reason=f"{type(error).__name__}: {error}", partial=progress.text))
        progress.chunks.clear()
        return None

    def replay(self, call: CallState, hit: Any) -> Flow:
        """Replay the stored answer as a stream."""
        restorer = call.restorer
        for piece in _replay(hit):
            yield Emit(restorer.feed(piece) if restorer is not None else piece)
        return hit

    def give_up(self, attempts: Attempts, error: BaseException) -> BaseException:
        return _stream_error(attempts, error, self.progress)


class _Relay:
    """What the driver does with each text delta of a stream: drop what the caller has already
    seen (after a resume), restore redacted placeholders, note the time to first token."""

    __slots__ = ("clock", "progress", "restorer", "start", "ttft")

    def __init__(self, progress: _Progress, restorer: Any, clock: Callable[[], float], start: float) -> None:
        self.progress = progress
        self.restorer = restorer
        self.clock = clock
        self.start = start
        self.ttft: float | None = None

    def __call__(self, text: str) -> str:
        return self._out(self.progress.take(text))

    def drain(self) -> str:
        """What the overlap check still held back at the end of an attempt."""
        return self._out(self.progress.drain())

    def _out(self, fresh: str) -> str:
        if not fresh:
            return ""
        if self.ttft is None:
            self.ttft = self.clock() - self.start
        return self.restorer.feed(fresh) if self.restorer is not None else fresh


def _replay(message: Any) -> list[str]:
    """A cached reply's text in word-sized pieces, as a stream would have delivered it."""
    text = "".join(b.text for b in message.content if b.type == "text")
    return [piece for piece in re.split(r"(?<=\s)", text) if piece]


def _continuable(partial: Any, policy: RetryPolicy) -> bool:
    if policy.stream_resume == "restart":
        return False
    blocks = getattr(partial, "content", None) or []
    return all(getattr(b, "type", None) == "text" for b in blocks)


def _partial_usage(partial: Any, ctx: CallContext) -> Any:
    """A cancelled attempt's usage: the snapshot's, its output at least what the text sent."""
    usage = getattr(partial, "usage", None)
    if usage is None:
        return None
    text = "".join(getattr(b, "text", "") for b in partial.content if getattr(b, "type", None) == "text")
    return usage.model_copy(update={"output_tokens": max(usage.output_tokens or 0, ctx.counter.count_text(text))})


def _count_partial(progress: _Progress, partial: Any, ctx: CallContext) -> None:
    """Add a failed attempt's usage: its reported output, or our estimate of the text it sent."""
    usage = getattr(partial, "usage", None)
    if usage is None:
        return
    progress.input_tokens += usage.input_tokens or 0
    text = "".join(getattr(b, "text", "") for b in partial.content if getattr(b, "type", None) == "text")
    progress.output_tokens += max(usage.output_tokens or 0, ctx.counter.count_text(text))


def _stream_error(attempts: Attempts, exc: BaseException, progress: _Progress) -> BaseException:
    if not progress.chunks and not isinstance(exc, (StreamInterrupted, anthropic.APIStatusError)):
        return attempts.error(exc)
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code != 200:
        return attempts.error(exc)
    if isinstance(exc, anthropic.APIStatusError):  # an ``error`` event mid-stream, on a 200 response
        why = f"the API sent an error event: {exc.type or 'error'}: {exc.api_message or exc.message}"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return StreamError(
        f"the stream failed after {attempts.count} attempt(s): {why}",
        partial=progress.text,
        attempts=attempts.count,
    )
