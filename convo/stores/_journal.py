"""The journal: bound to one conversation handle, it turns each change into one :class:`Write`.

It remembers what the store holds (the message objects written, where each stored chunk starts,
pins, summary, receipt count, version), so a write carries only the difference: the messages
after the common prefix, from the start of the chunk it falls in. Opening
rebuilds the conversation with the stored token counts when they are the opening counter's.
"""

from __future__ import annotations

import bisect
import threading
from typing import TYPE_CHECKING, Any

from .._exceptions import ConflictError, StoreError
from .._written import written_messages, written_text
from ..conversation import Conversation
from ..messages import Message
from ._records import Write, chunked, counter_key, dumps, head_of

if TYPE_CHECKING:
    from ._base import StoreBase

__all__ = ["Journal"]


def _head_key(conv: Conversation) -> tuple[Any, ...]:
    return (conv.model, conv.budget, conv.max_tokens, conv.prompt_cache, id(conv.strategy))


class Journal:
    """Bound to one conversation handle: writes what changed since the last write."""

    __slots__ = ("_counted_by", "_doubt", "_head", "_lock", "_pins", "_receipts", "_same", "_saved", "_starts", "_summary", "counter",
                 "id", "store", "version")

    def __init__(
        self, store: StoreBase, id: str, version: int, conv: Conversation, counter: str | None,
        starts: list[int] | None = None,
    ) -> None:
        self.store, self.id, self.version = store, id, version
        self.counter = counter  # whose token counts the store keeps (see counter_key)
        self._saved: list[Message] = list(conv._messages)
        self._starts: list[int] = starts or []  # the first message of each stored chunk
        self._pins: list[int] = conv.pinned
        self._summary = conv.summary
        self._receipts = len(conv.receipts)
        self._head = _head_key(conv)
        self._lock = threading.Lock()  # an async turn writes from a worker thread
        self._counted_by: Any = None  # the counter object _same was worked out for
        self._same = False
        # A write that failed without an answer (a timeout) may still have been applied: its
        # token, the version it started from and the state it wrote, until the store tells.
        self._doubt: tuple[str, int, tuple[Any, ...]] | None = None

    def write(self, conv: Conversation) -> None:
        """Append the changes (nothing if there are none); ConflictError if the store moved on."""
        with self._lock:
            self._write(conv)

    def _write(self, conv: Conversation) -> None:
        if self._doubt is not None:
            self._settle_doubt()
        messages, saved = conv._messages, self._saved
        n = len(saved)
        if len(messages) >= n and (n == 0 or messages[n - 1] is saved[n - 1]):
            keep = n
        else:  # an undo or reset since the last write: keep the common prefix
            keep = 0
            while keep < min(n, len(messages)) and messages[keep] is saved[keep]:
                keep += 1
        pins, summary, receipts = conv.pinned, conv.summary, conv.receipts
        head_key = _head_key(conv)
        if (
            keep == n == len(messages)
            and pins == self._pins
            and summary == self._summary
            and len(receipts) == self._receipts
            and head_key == self._head
        ):
            return
        new = messages[keep:]
        if keep < n:  # a cut: rewrite from the start of the chunk it falls in
            kept_chunks = bisect.bisect_right(self._starts, keep) - 1
            start = self._starts[kept_chunks]
        else:
            kept_chunks, start = len(self._starts), n
        if conv.counter is not self._counted_by:  # counter_key costs a repr: once per counter
            self._counted_by = conv.counter
            self._same = self.counter is not None and counter_key(conv.counter) == self.counter
        counts = conv._counts[start:] if self._same else [-1] * (len(messages) - start)
        api = conv._api[start:]
        written = written_messages(conv, api)
        if written is not api:  # redacted: a message written other than it is counted on opening
            counts = [n if w == a else -1 for n, w, a in zip(counts, written, api, strict=True)]
        chunks, chunk_counts = chunked([dumps(m) for m in written], counts)
        write = Write(
            version=self.version,
            keep=start,
            kept_chunks=kept_chunks,
            stored_chunks=len(self._starts),
            chunks=chunks,
            counts=chunk_counts,
            length=len(messages),
            pins=dumps(pins),
            summary=None if summary is None else dumps({"text": written_text(conv, summary.text), "turns": summary.turns}),
            receipt_start=self._receipts,
            receipts=[r.model_dump_json() for r in receipts[self._receipts :]],
            head=head_of(conv) if head_key != self._head else None,
        )
        # What the store holds once this is written, as changes (O(new), whatever the history).
        state = (start, list(messages[start:]), kept_chunks, write.starts(), pins, summary, len(receipts), head_key)
        try:
            version = self.store._append(self.id, write)
        except ConflictError as exc:
            exc.unsaved = list(new)
            raise
        except StoreError as exc:  # the handle keeps the change; the next write (or flush) carries it
            self._doubt = (write.token, write.version, state)
            raise StoreError(
                f"{exc}; this handle keeps the change and writes it with its next one, or call conv.flush() "
                "once the store is back", store=exc.store, unsaved=new,
            ) from None
        self._wrote(version, state)

    def _wrote(self, version: int, state: tuple[Any, ...]) -> None:
        keep, new, kept_chunks, new_starts, pins, summary, receipts, head_key = state
        self.version = version
        del self._saved[keep:]
        self._saved.extend(new)
        del self._starts[kept_chunks:]
        self._starts.extend(new_starts)
        self._pins, self._summary, self._receipts, self._head = pins, summary, receipts, head_key

    def _settle_doubt(self) -> None:
        """Find out whether the write that failed without an answer was applied (then it is not
        sent again) or not (then what it carried goes with the next write)."""
        assert self._doubt is not None
        token, version, state = self._doubt
        last = self.store._last_write(self.id)  # a StoreError here leaves the doubt for next time
        self._doubt = None
        # Applied, even if other handles have written since: then the next write is a conflict
        # (whose unsaved part is only what came after this one), never this write twice.
        if last is not None and last[0] > version and token in last[1].split(","):
            self._wrote(version + 1, state)

    def reload(self, conv: Conversation) -> None:
        fresh = self.store.open(
            self.id, client=conv.client, strategy=conv.strategy, counter=conv.counter, redactor=conv.redactor,
            tools=conv.tools,
        )
        conv.__dict__.update(fresh.__dict__)
