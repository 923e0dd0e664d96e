"""The stream handles a caller holds: :class:`Stream` and its async twin :class:`AsyncStream`.

Each wraps the run of the resumable stream flow (:mod:`convo._resume`): it hands the caller the
text, keeps the final message, and passes each :class:`~convo._resume.Restart` to the caller's
``on_restart`` callback.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any, Self, cast

from anthropic.types import Message as SDKMessage

from ._exceptions import StreamError
from ._flow import Done
from ._resume import BlockEvent, Restart

__all__ = ["AsyncStream", "Stream"]


class Stream:
    """A running stream (sync). Iterate ``text_stream`` (or the stream itself) for text; every
    character arrives once, even across retries. ``get_final_message()`` waits for the end.

    ``restarts`` counts restarts the caller accepted through ``on_restart``.
    """

    def __init__(self, run: Iterator[Any], on_restart: Callable[[Restart], Any] | None) -> None:
        self._run = run
        self._on_restart = on_restart
        self._final: SDKMessage | None = None
        self.restarts = 0
        self.text_stream = cast("Generator[str, None, None]", self._read(False))  # only str when blocks=False
        #: The text and the other events as they arrive: ``str`` pieces and
        #: :class:`~convo._resume.BlockEvent` (thinking, a tool call starting, its input
        #: complete). It reads the same stream as ``text_stream``: iterate one of them (the final
        #: message is then ready either way).
        self.event_stream: Generator[str | BlockEvent, None, None] = self._read(True)

    def _read(self, blocks: bool) -> Generator[str | BlockEvent, None, None]:
        for item in self._run:
            if type(item) is str:
                yield item
            elif type(item) is BlockEvent:
                if blocks:
                    yield item
            elif isinstance(item, Done):
                self._final = item.value
                return
            elif isinstance(item, Restart):
                self.restarts += 1
                if self._on_restart is not None:
                    self._on_restart(item)

    def __iter__(self) -> Iterator[str]:
        return self.text_stream

    def until_done(self) -> None:
        """Read the stream to its end, discarding the text (the final message is then ready)."""
        for _ in self.text_stream:
            pass

    def get_final_message(self) -> SDKMessage:
        """The whole message (an ``anthropic.types.Message``), stitched across any resumes."""
        self.until_done()
        if self._final is None:
            raise StreamError("the stream was closed before its end: there is no final message", partial="", attempts=0)
        return self._final

    def get_final_text(self) -> str:
        """The final message's text blocks joined: all the text, stitched across any resumes
        (waits for the end).
        """
        return "".join(b.text for b in self.get_final_message().content if b.type == "text")

    def close(self) -> None:
        """Stop the stream early and free its connection and concurrency slot; leaving the
        ``with`` block does this.
        """
        self.text_stream.close()
        self.event_stream.close()
        close = getattr(self._run, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream:
    """The async twin of :class:`Stream`: ``async with client.stream(...) as s``."""

    def __init__(self, run: AsyncIterator[Any], on_restart: Callable[[Restart], Any] | None) -> None:
        self._run = run
        self._on_restart = on_restart
        self._final: SDKMessage | None = None
        self.restarts = 0
        self.text_stream = cast("AsyncGenerator[str, None]", self._read(False))  # only str when blocks=False
        #: The async twin of :attr:`Stream.event_stream`.
        self.event_stream: AsyncGenerator[str | BlockEvent, None] = self._read(True)

    async def _read(self, blocks: bool) -> AsyncGenerator[str | BlockEvent, None]:
        async for item in self._run:
            if type(item) is str:
                yield item
            elif type(item) is BlockEvent:
                if blocks:
                    yield item
            elif isinstance(item, Done):
                self._final = item.value
                return
            elif isinstance(item, Restart):
                self.restarts += 1
                if self._on_restart is not None:
                    result = self._on_restart(item)
                    if hasattr(result, "__await__"):
                        await result

    def __aiter__(self) -> AsyncIterator[str]:
        return self.text_stream

    async def until_done(self) -> None:
        """Read the stream to its end, discarding the text (the final message is then ready)."""
        async for _ in self.text_stream:
            pass

    async def get_final_message(self) -> SDKMessage:
        """The whole message (an ``anthropic.types.Message``), stitched across any
        resumes; awaits the end.
        """
        await self.until_done()
        if self._final is None:
            raise StreamError("the stream was closed before its end: there is no final message", partial="", attempts=0)
        return self._final

    async def get_final_text(self) -> str:
        """The final message's text blocks joined: all the text, stitched across any
        resumes (awaits the end).
        """
        message = await self.get_final_message()
        return "".join(b.text for b in message.content if b.type == "text")

    async def close(self) -> None:
        """Stop the stream early and free its connection and concurrency slot; leaving the
        ``async with`` block does this.
        """
        await self.text_stream.aclose()
        await self.event_stream.aclose()
        aclose = getattr(self._run, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
