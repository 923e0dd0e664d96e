"""The hook a conversation store uses to write each change of a :class:`convo.Conversation`.

A conversation opened from a store (:mod:`convo.stores`) has a journal: after each completed
turn, and after ``add``, ``pin``, ``unpin``, ``undo``, ``reset`` and ``extend``, the
conversation calls ``journal.write(conv)``, which appends what changed since the last write. A
turn in flight (``send``/``stream`` and their async twins) is held back until its reply is in,
so a failed call writes nothing and a completed turn is one write. A plain conversation has no
journal and pays one attribute check per change.
"""

from __future__ import annotations

from typing import Any, Protocol

from ._exceptions import InvalidConfigError
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
    _held = 0  # > 0 while a turn is in flight or extend() runs: written when it ends

    @property
    def id(self) -> str | None:
        """The conversation's id in its store (see :mod:`convo.stores`); None when it is in none."""
        return None if self._journal is None else self._journal.id

    def reload(self) -> None:
        """Replace this handle's state with the stored one, dropping changes not yet written.

        After a :class:`~convo.ConflictError`: ``conv.reload()``, then send again.
        """
        if self._journal is None:
            raise InvalidConfigError("this conversation is not in a store; open it with store.open(id)")
        self._journal.reload(self)

    def _changed(self) -> None:
        if self._journal is not None and not self._held:
            self._journal.write(self)

    def _add_turn(self, content: Any, method: str) -> int:
        self._held += 1
        try:
            return super()._add_turn(content, method)
        except BaseException:
            self._held -= 1
            raise

    def _end_turn(self, reply: Any) -> str:
        try:
            return super()._end_turn(reply)
        finally:
            self._held -= 1
            self._changed()  # the user turn, the reply and its receipt: one write

    def _rollback(self, mark: int) -> None:
        try:
            super()._rollback(mark)
        finally:
            self._held -= 1  # nothing of the failed turn was written; no write here either
