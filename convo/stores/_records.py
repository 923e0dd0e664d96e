"""The records every conversation store reads and writes, and the checks of what callers pass.

A stored conversation is a header (the saved form of :meth:`convo.Conversation.to_dict` without
its messages: model, budget, system prompt, strategy...), its messages in chunks (one chunk per
write, at most :data:`CHUNK` messages: the same JSON as in a saved file joined by commas, with
their token counts), its pins, its summary and its receipts, plus an owner, metadata,
created/updated times and a version. A :class:`Write` says "from version v, keep the first k
chunks, append these, set pins and summary, append these receipts"; a store applies it only if
the version is still v (else :class:`~convo.ConflictError`). Chunks make an open read a row per
turn rather than per message; a cut (undo, reset) rewrites at most the one chunk it splits.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import _persist
from .._exceptions import ConflictError, ConversationFileError, InvalidConfigError, InvalidInputError
from .._preflight import check_json
from ..conversation import Conversation
from ..tokens import CachedCounter, OfflineCounter

__all__ = ["CHUNK", "RECENT_CHARS", "ConversationInfo", "Stored", "Write", "chunk_sizes", "chunk_starts", "chunked", "conflict", "counter_key", "head_of", "new_id"]

#: A conversation keeps the tokens of its last 32 writes, newest first, joined by commas (this
#: many characters: each token is 16 hex digits), so a handle whose write timed out can tell
#: whether the store applied it even after other handles have written since.
RECENT_CHARS = 32 * 17 - 1


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """One stored conversation, without its messages (what :meth:`ConversationStore.list` returns)."""

    id: str
    user: str | None
    metadata: dict[str, Any]
    created: datetime
    updated: datetime
    messages: int  # how many messages it holds
    version: int  # bumped by every write


CHUNK = 64  # messages at most in one stored chunk: what a cut inside it rewrites


@dataclass(slots=True)
class Write:
    """One append: applied only if the stored version is still ``version``."""

    version: int
    keep: int  # messages kept: the start of the first chunk not kept (a cut rewrites from there)
    kept_chunks: int  # stored chunks kept (fewer than stored: an undo or reset happened)
    stored_chunks: int  # how many chunks the store held at ``version``
    chunks: list[str]  # the messages after ``keep``, in chunks: their JSON joined by commas
    counts: list[str]  # per chunk, its messages' token counts joined by commas (-1: not this counter's)
    length: int  # messages after the write
    pins: str
    summary: str | None
    receipt_start: int
    receipts: list[str]
    head: str | None  # a new header, when model/budget/strategy changed; else None
    updated: float = field(default_factory=time.time)
    token: str = field(default_factory=lambda: secrets.token_hex(8))  # 16 hex digits: names this write (see Journal)

    @property
    def cut(self) -> bool:
        """Whether stored chunks are dropped (an undo or reset since the last write)."""
        return self.kept_chunks < self.stored_chunks

    def starts(self) -> list[int]:
        """The first message index of each new chunk (its key in the SQL stores)."""
        return chunk_starts(chunk_sizes(self.counts), self.keep)


@dataclass(slots=True)
class Stored:
    """Everything a store reads to open a conversation (one indexed read)."""

    info: ConversationInfo
    head: str
    pins: str
    summary: str | None
    chunks: list[str]  # as in Write.chunks, in order
    receipts: list[str]
    counts: list[str] = field(default_factory=list)  # as in Write.counts, one per chunk


def chunk_sizes(counts: list[str]) -> list[int]:
    """How many messages each chunk holds (one token count each, joined by commas)."""
    return [c.count(",") + 1 for c in counts]


def chunk_starts(sizes: list[int], first: int = 0) -> list[int]:
    """The first message index of each chunk of these sizes, the first one at ``first``."""
    return list(itertools.accumulate(sizes[:-1], initial=first)) if sizes else []


def chunked(bodies: list[str], counts: list[int]) -> tuple[list[str], list[str]]:
    """Messages' JSON and token counts as chunks of at most :data:`CHUNK`."""
    return (
        [",".join(bodies[i : i + CHUNK]) for i in range(0, len(bodies), CHUNK)],
        [",".join(map(str, counts[i : i + CHUNK])) for i in range(0, len(counts), CHUNK)],
    )


_last = [0, 0]  # the last id's millisecond and its sequence number in this process
_id_lock = threading.Lock()


def new_id() -> str:
    """28 hex digits: milliseconds since the epoch, a sequence number within the millisecond, then
    48 random bits, so ids sort by creation (strictly, within one process)."""
    with _id_lock:
        ms = max(time.time_ns() // 1_000_000, _last[0])
        seq = _last[1] + 1 if ms == _last[0] else 0
        if seq > 0xFFFF:
            ms, seq = ms + 1, 0
        _last[:] = [ms, seq]
    return f"{ms:012x}{seq:04x}{secrets.token_hex(6)}"


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def check_id(id: Any) -> str:
    if not isinstance(id, str) or not id or len(id) > 200:
        raise InvalidInputError(f"a conversation id is a non-empty str (from store.create), got {id!r}")
    return id


def check_user(user: Any, *, required: bool = False) -> str | None:
    if user is None and not required:
        return None
    if not isinstance(user, str) or not user:
        raise InvalidInputError(f"user must be a non-empty str (the conversation's owner), got {user!r}")
    if "\x00" in user:  # PostgreSQL text cannot hold it: refused alike by every backend
        raise InvalidInputError(f"user must not contain a NUL character ('\\x00' at {user.index(chr(0))}), got {user!r}")
    check_json(user, "user")  # a lone surrogate: no store can hold it
    return user


#: The most conversations one page of ``store.list`` returns; page on with ``after=``.
MAX_PAGE = 10_000


def check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(
            f"limit must be an int from 1 to {MAX_PAGE:,}, got {limit!r}; for more, page on with after=<the last id>"
        )
    return limit


def counter_key(counter: Any) -> str | None:
    """What identifies a counter's counts, when they can be stored and reused: an offline
    counter's are a pure function of the message and its settings (its repr). Others: None."""
    inner = counter.inner if isinstance(counter, CachedCounter) else counter
    return repr(inner) if type(inner) is OfflineCounter else None


def head_of(conv: Conversation) -> str:
    """The saved form without messages, pins and summary, plus whose token counts are stored; a
    strategy that cannot be saved is stored as custom (``open`` then needs ``strategy=``)."""
    try:
        head = _persist.head(conv)
    except ConversationFileError:
        head = _persist.head(conv, strategy=False)
    head["counter"] = counter_key(conv.counter)
    return dumps(head)


def conflict(kind: str, id: str, expected: int, actual: int | None) -> ConflictError:
    """The error for a write that found the stored version moved (or the conversation gone)."""
    if actual is None:
        why = "it was deleted from the store"
        what = "nothing was written; create a new conversation"
    else:
        why = f"another handle wrote it (this one read version {expected}, the {kind} has {actual})"
        what = "nothing was written; call conv.reload() and send again, or conv.extend(exc.unsaved) after reloading"
    return ConflictError(f"conversation {id!r}: {why}; {what}", conversation_id=id, expected=expected, actual=actual)


def check_path_config(path: Any) -> None:
    if not isinstance(path, (str, bytes)) and not hasattr(path, "__fspath__"):
        raise InvalidConfigError(f"path must be a file path, got {type(path).__name__}")
