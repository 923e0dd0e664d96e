"""What every conversation store shares: the protocol, the records, and the journal that turns
each change of a conversation into one append.

A stored conversation is a header (the saved form of :meth:`convo.Conversation.to_dict` without
its messages: model, budget, system prompt, strategy...), its messages one record each (the same
JSON as in a saved file), its pins, its summary and its receipts, plus an owner, metadata,
created/updated times and a version. A write says "from version v, keep the first k messages,
append these, set pins and summary, append these receipts"; the store applies it only if the
version is still v (else :class:`~convo.ConflictError`), so a turn costs the size of what it adds.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, Self, runtime_checkable

from .. import _persist
from .._exceptions import ConflictError, ConversationFileError, InvalidConfigError, InvalidInputError
from ..conversation import Conversation
from ..messages import Message
from ..models import DEFAULT_MODEL
from ..receipts import Receipt
from ..strategies import StrategyLike
from ..tokens import CachedCounter, OfflineCounter, TokenCounter, default_counter

__all__ = ["ConversationInfo", "ConversationStore", "Journal", "StoreBase", "Stored", "Write", "new_id"]

_HEAD_OMITS = ("messages", "pinned", "summary")


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


@dataclass(slots=True)
class Write:
    """One append: applied only if the stored version is still ``version``."""

    version: int
    keep: int  # stored messages kept (fewer than stored: an undo or reset happened)
    stored: int  # how many messages the store held at ``version``
    messages: list[str]  # JSON of the messages after ``keep``
    tokens: list[int]  # their token counts (-1: counted by another counter than the stored one's)
    pins: str
    summary: str | None
    receipt_start: int
    receipts: list[str]
    head: str | None  # a new header, when model/budget/strategy changed; else None
    updated: float = field(default_factory=time.time)

    @property
    def length(self) -> int:
        return self.keep + len(self.messages)


@dataclass(slots=True)
class Stored:
    """Everything a store reads to open a conversation (one indexed read)."""

    info: ConversationInfo
    head: str
    pins: str
    summary: str | None
    messages: list[str]
    receipts: list[str]
    tokens: list[int] = field(default_factory=list)


@runtime_checkable
class ConversationStore(Protocol):
    """Where conversations live between requests, shared by every process that opens it.

    ``create`` and ``open`` return a :class:`~convo.Conversation` that writes each completed turn
    (and each add, pin, undo, reset) by itself, as one append. Two handles on one conversation:
    the one that writes second gets :class:`~convo.ConflictError` and writes nothing.
    """

    def create(
        self,
        system: str | Sequence[Any] | None = None,
        *,
        model: str = DEFAULT_MODEL,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        client: Any = None,
        budget: int | None = None,
        strategy: StrategyLike | None = None,
        max_tokens: int | None = None,
        counter: TokenCounter | None = None,
        redactor: Any = None,
        prompt_cache: bool | str = False,
    ) -> Conversation:
        """A new, empty conversation in the store, owned by ``user``; ``conv.id`` is its id."""
        ...

    def open(
        self,
        id: str,
        *,
        client: Any = None,
        strategy: StrategyLike | None = None,
        counter: TokenCounter | None = None,
        redactor: Any = None,
    ) -> Conversation:
        """The stored conversation ``id`` with its summary, pins and receipts, in one read."""
        ...

    def info(self, id: str) -> ConversationInfo:
        """Owner, metadata, times, size and version of ``id``, without its messages."""
        ...

    def list(self, *, user: str | None = None, limit: int = 100, after: str | None = None) -> list[ConversationInfo]:
        """Conversations newest first (all, or ``user``'s); ``after``: the last id of the previous page."""
        ...

    def delete(self, id: str) -> bool:
        """Delete ``id`` with its messages and receipts; False if it was not there."""
        ...

    def delete_user(self, user: str) -> int:
        """Delete every conversation (and so every receipt) of ``user``; how many went."""
        ...

    def close(self) -> None:
        """Close the store's connections."""
        ...


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
    return user


def check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInputError(f"limit must be a positive int, got {limit!r}")
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
        data = _persist.to_dict(conv)
    except ConversationFileError:
        data = _persist.to_dict(conv, strategy=False)
    head = {k: v for k, v in data.items() if k not in _HEAD_OMITS}
    head["counter"] = counter_key(conv.counter)
    return dumps(head)


def _by_identity(messages: list[Message], tokens: list[int]) -> dict[int, int]:
    return {id(m): n for m, n in zip(messages, tokens, strict=True)}


class _Replay:
    """The counter a conversation is rebuilt with: the stored count of each message when the stored
    counts are the opening counter's, else the counter itself. Swapped out once loaded."""

    def __init__(self, real: TokenCounter, counts: dict[int, int]) -> None:
        self.real, self.counts = real, counts

    def count_message(self, message: Message) -> int:
        n = self.counts.get(id(message), -1)
        return n if n >= 0 else self.real.count_message(message)

    def __getattr__(self, name: str) -> Any:  # count_text, fixed_tokens, calibration...
        return getattr(self.real, name)


def _head_key(conv: Conversation) -> tuple[Any, ...]:
    return (conv.model, conv.budget, conv.max_tokens, conv.prompt_cache, id(conv.strategy))


class Journal:
    """Bound to one conversation handle: writes what changed since the last write."""

    __slots__ = ("_head", "_pins", "_receipts", "_saved", "_summary", "counter", "id", "store", "version")

    def __init__(self, store: StoreBase, id: str, version: int, conv: Conversation, counter: str | None) -> None:
        self.store, self.id, self.version = store, id, version
        self.counter = counter  # whose token counts the store keeps (see counter_key)
        self._saved: list[Message] = list(conv._messages)
        self._pins: list[int] = conv.pinned
        self._summary = conv.summary
        self._receipts = len(conv.receipts)
        self._head = _head_key(conv)

    def write(self, conv: Conversation) -> None:
        """Append the changes (nothing if there are none); ConflictError if the store moved on."""
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
        same = self.counter is not None and counter_key(conv.counter) == self.counter
        write = Write(
            version=self.version,
            keep=keep,
            stored=n,
            messages=[dumps(m.to_api()) for m in new],
            tokens=conv._counts[keep:] if same else [-1] * len(new),
            pins=dumps(pins),
            summary=None if summary is None else dumps({"text": summary.text, "turns": summary.turns}),
            receipt_start=self._receipts,
            receipts=[r.model_dump_json() for r in receipts[self._receipts :]],
            head=head_of(conv) if head_key != self._head else None,
        )
        try:
            self.version = self.store._append(self.id, write)
        except ConflictError as exc:
            exc.unsaved = list(new)
            raise
        del saved[keep:]
        saved.extend(new)
        self._pins, self._summary, self._receipts, self._head = pins, summary, len(receipts), head_key

    def reload(self, conv: Conversation) -> None:
        fresh = self.store.open(
            self.id, client=conv.client, strategy=conv.strategy, counter=conv.counter, redactor=conv.redactor
        )
        conv.__dict__.update(fresh.__dict__)
        conv._held = 0


class StoreBase:
    """create/open/list/delete over a backend's six primitives (``_insert``, ``_append``,
    ``_read``, ``_list``, ``_delete``, ``_delete_user``)."""

    kind = "conversation store"

    # -- what each backend provides --------------------------------------------------------------

    def _insert(self, info: ConversationInfo, head: str, pins: str) -> None:
        raise NotImplementedError

    def _append(self, id: str, write: Write) -> int:
        """Apply ``write`` atomically if the version matches; the new version, else ConflictError."""
        raise NotImplementedError

    def _read(self, id: str, messages: bool = True) -> Stored | None:
        raise NotImplementedError

    def _list(self, user: str | None, limit: int, after: str | None) -> list[ConversationInfo]:
        raise NotImplementedError

    def _delete(self, id: str) -> bool:
        raise NotImplementedError

    def _delete_user(self, user: str) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Close this store's connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the public API ----------------------------------------------------------------------------

    def create(
        self,
        system: str | Sequence[Any] | None = None,
        *,
        model: str = DEFAULT_MODEL,
        user: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        client: Any = None,
        budget: int | None = None,
        strategy: StrategyLike | None = None,
        max_tokens: int | None = None,
        counter: TokenCounter | None = None,
        redactor: Any = None,
        prompt_cache: bool | str = False,
    ) -> Conversation:
        """A new, empty conversation in the store (``conv.id`` is its id), owned by ``user``.

        The other arguments are :class:`~convo.Conversation`'s. ``metadata`` is any JSON object,
        returned by :meth:`info` and :meth:`list`.
        """
        user = check_user(user)
        meta = dict(metadata or {})
        try:
            meta_json = dumps(meta)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata must be a JSON object ({exc})") from None
        conv = Conversation(
            system, model=model, budget=budget, strategy=strategy, max_tokens=max_tokens, counter=counter,
            client=client, redactor=redactor, prompt_cache=prompt_cache,
        )
        now = time.time()
        info = ConversationInfo(new_id(), user, json.loads(meta_json), when(now), when(now), 0, 1)
        self._insert(info, head_of(conv), dumps([]))
        conv._journal = Journal(self, info.id, 1, conv, counter_key(conv.counter))
        return conv

    def open(
        self,
        id: str,
        *,
        client: Any = None,
        strategy: StrategyLike | None = None,
        counter: TokenCounter | None = None,
        redactor: Any = None,
    ) -> Conversation:
        """The stored conversation ``id``, with its summary, pins and receipts, in one read.

        ``strategy`` replaces the stored one (needed when it could not be stored, e.g. a plain
        function). ConversationFileError if there is no such conversation.
        """
        stored = self._read(check_id(id))
        if stored is None:
            raise ConversationFileError(f"{self.kind} has no conversation {id!r}; was it deleted? (store.list() shows what is there)")
        try:
            data = json.loads(stored.head)
            messages = [Message.model_validate_json(m) for m in stored.messages]  # the to_api() JSON
            data["messages"] = messages
            data["pinned"] = json.loads(stored.pins)
            if stored.summary is not None:
                data["summary"] = json.loads(stored.summary)
            receipts = [Receipt.model_validate_json(r) for r in stored.receipts]
        except ValueError as exc:
            raise ConversationFileError(f"conversation {id!r} in the {self.kind} is corrupt: {exc}") from None
        real = counter if counter is not None else default_counter()
        stored_key = data.pop("counter", None)
        counts: dict[int, int] = {}
        if stored_key is not None and stored_key == counter_key(real) and len(stored.tokens) == len(messages):
            counts = _by_identity(messages, stored.tokens)
        replay: Any = _Replay(real, counts) if counts else real
        try:
            conv = _persist.from_dict(Conversation, data, strategy=strategy, counter=replay)
        except ConversationFileError as exc:
            raise ConversationFileError(f"conversation {id!r} in the {self.kind}: {exc}") from None
        conv.counter = real
        conv.client, conv.redactor = client, redactor
        conv.receipts = receipts
        conv._journal = Journal(self, id, stored.info.version, conv, stored_key)
        return conv

    def info(self, id: str) -> ConversationInfo:
        """Owner, metadata, times, size and version of ``id``; ConversationFileError if absent."""
        stored = self._read(check_id(id), messages=False)
        if stored is None:
            raise ConversationFileError(f"{self.kind} has no conversation {id!r}")
        return stored.info

    def list(self, *, user: str | None = None, limit: int = 100, after: str | None = None) -> list[ConversationInfo]:
        """Conversations newest first (all, or ``user``'s), at most ``limit``; for the next page
        pass the last one's id as ``after``."""
        return self._list(check_user(user), check_limit(limit), None if after is None else check_id(after))

    def delete(self, id: str) -> bool:
        """Delete ``id`` with its messages and receipts; False if it was not there."""
        return self._delete(check_id(id))

    def delete_user(self, user: str) -> int:
        """Delete every conversation of ``user``, with their messages and receipts; how many went."""
        return self._delete_user(check_user(user, required=True) or "")


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
