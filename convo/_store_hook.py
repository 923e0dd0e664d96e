"""The hook a conversation store uses to write each change of a :class:`convo.Conversation`.

A conversation opened from a store (:mod:`convo.stores`) has a journal: after each completed
turn, and after ``add``, ``pin``, ``unpin``, ``undo``, ``reset`` and ``extend``, the
conversation calls ``journal.write(conv)``, which appends what changed since the last write. A
turn in flight (``send``/``stream`` and their async twins) is held back until its reply is in,
so a failed call writes nothing and a completed turn is one write. A plain conversation has no
journal and pays one attribute check per change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, Protocol

from ._exceptions import InvalidConfigError
from ._flow import finishing
from ._talk import Talking

__all__ = ["Journal", "Journaled"]


class Journal(Protocol):
    """What a store attaches to a conversation (see convo.stores)."""

    id: str

    def write(self, conv: Any) -> None: ...

    def reload(self, conv: Any) -> None: ...


class Journaled(Talking):
    """The store hook of Conversation: ``id``, ``reload`` and the write after each change."""

    _journal: Journal | None = None

    @property
    def id(self) -> str | None:
        """The conversation's id in its store (see :mod:`convo.stores`); None when it is in none."""
        return None if self._journal is None else self._journal.id

    def reload(self) -> None:
        """Replace this handle's state with the stored one, dropping changes not yet written.

        After a :class:`~convo.ConflictError`: ``conv.reload()``, then send again.
        """
        self._idle("reload")
        if self._journal is None:
            raise InvalidConfigError("this conversation is not in a store; open it with store.open(id)")
        self._journal.reload(self)

    def flush(self) -> None:
        """Write to the store what this handle has and the store does not (nothing if none).

        Each change is written as it happens; after a :class:`~convo.StoreError` (the store was
        down) the handle keeps its changes, and ``flush()`` writes them once the store is back.
        """
        self._idle("flush")
        if self._journal is None:
            raise InvalidConfigError("this conversation is not in a store; open it with store.open(id)")
        self._journal.write(self)

    async def aflush(self) -> None:
        """:meth:`flush`, off the event loop."""
        self._idle("aflush")
        await asyncio.to_thread(self.flush)

    async def areload(self) -> None:
        """:meth:`reload`, off the event loop."""
        self._idle("areload")
        await asyncio.to_thread(self.reload)

    def _changed(self, turn_end: bool = False) -> None:
        """Write the change; during a turn (``_turning``) only at its end (``turn_end``)."""
        if self._journal is not None and (turn_end or self._turning is None):
            self._journal.write(self)

    def _with_effects(self, flow: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        """A turn in flight is held back: a completed one is one write (the user turn, every
        step, the receipts); a failed or abandoned one, taken back by the turn, writes nothing.
        The write is an effect that may block, so an async turn makes it off the event loop."""
        result = yield from flow
        if self._journal is not None:
            yield from finishing(self._changed, (True,), what="writing the turn to the store")
        return result
