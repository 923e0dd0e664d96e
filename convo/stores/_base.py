"""What every conversation store shares: the protocol, and create/open/list/delete written once
over six primitives that each backend provides.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, Self, runtime_checkable

from pydantic import TypeAdapter

from .. import _persist
from .._exceptions import ConversationFileError, InvalidConfigError, InvalidInputError
from .._numbers import number
from ..conversation import Conversation
from ..messages import Message
from ..models import DEFAULT_MODEL
from ..receipts import Receipt
from ..strategies import StrategyLike
from ..tokens import TokenCounter, default_counter
from ._journal import Journal
from ._records import (
    ConversationInfo,
    Stored,
    Write,
    check_id,
    check_limit,
    check_user,
    chunk_sizes,
    chunk_starts,
    counter_key,
    dumps,
    head_of,
    new_id,
    when,
)

__all__ = ["ConversationStore", "StoreBase"]

_MESSAGES = TypeAdapter(list[Message])
_RECEIPTS = TypeAdapter(list[Receipt])
_COUNTS = TypeAdapter(list[int])


def _metadata_json(metadata: Any) -> str:
    """``metadata`` as stored: a JSON object, else InvalidInputError (nothing is written)."""
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a JSON object (a dict), got {type(metadata).__name__}")
    try:
        text = json.dumps(dict(metadata), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode("utf-8")  # a lone surrogate: no store can hold it
        return text
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata must be a JSON object ({exc})") from None


def _array(records: Sequence[str]) -> str:
    """Stored JSON records as one JSON array, for one validating parse of them all."""
    return "[" + ",".join(records) + "]"


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
        tools: Sequence[Any] | None = None,
        max_steps: int = 10,
        keep_refusals: bool = False,
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
        tools: Sequence[Any] | None = None,
    ) -> Conversation:
        """The stored conversation ``id`` with its summary, pins and receipts, in one read."""
        ...

    def info(self, id: str) -> ConversationInfo:
        """Owner, metadata, times, size and version of ``id``, without its messages."""
        ...

    def list(self, *, user: str | None = None, limit: int = 100, after: str | None = None) -> list[ConversationInfo]:
        """Conversations newest first (all, or ``user``'s); ``after``: the last id of the previous page."""
        ...

    def set_metadata(self, id: str, metadata: Mapping[str, Any]) -> ConversationInfo:
        """Replace the metadata of ``id`` (not a change of the conversation: no version bump)."""
        ...

    def delete(self, id: str) -> bool:
        """Delete ``id`` with its messages and receipts; False if it was not there."""
        ...

    def delete_user(self, user: str) -> int:
        """Delete every conversation (and so every receipt) of ``user``; how many went."""
        ...

    def delete_idle(self, seconds: float) -> int:
        """Delete every conversation not written for ``seconds``; how many went."""
        ...

    def close(self) -> None:
        """Close the store's connections."""
        ...


class StoreBase:
    """create/open/list/delete over a backend's primitives (``_insert``, ``_append``, ``_read``,
    ``_set_metadata``, ``_list``, ``_delete``, ``_delete_user``, ``_delete_idle``)."""

    kind = "conversation store"

    # -- what each backend provides --------------------------------------------------------------

    def _insert(self, info: ConversationInfo, head: str, pins: str) -> None:
        raise NotImplementedError

    def _append(self, id: str, write: Write) -> int:
        """Apply ``write`` atomically if the version matches; the new version, else ConflictError."""
        raise NotImplementedError

    def _read(self, id: str, messages: bool = True) -> Stored | None:
        raise NotImplementedError

    def _set_metadata(self, id: str, metadata: str, updated: float) -> bool:
        """Replace the metadata (JSON) of ``id``; False if it is not there."""
        raise NotImplementedError

    def _last_write(self, id: str) -> tuple[int, str] | None:
        """The stored version and the tokens of the last writes (newest first, comma-joined; see
        :data:`RECENT_CHARS`), for a backend where a write can fail after the server applied it (a
        timeout); None where it cannot."""
        return None

    def _list(self, user: str | None, limit: int, after: str | None) -> list[ConversationInfo]:
        raise NotImplementedError

    def _delete(self, id: str) -> bool:
        raise NotImplementedError

    def _delete_user(self, user: str) -> int:
        raise NotImplementedError

    def _delete_idle(self, before: float) -> int:
        """Delete the conversations last written before ``before`` (a Unix time); how many went."""
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
        tools: Sequence[Any] | None = None,
        max_steps: int = 10,
        keep_refusals: bool = False,
    ) -> Conversation:
        """A new, empty conversation in the store (``conv.id`` is its id), owned by ``user``.

        The other arguments are :class:`~convo.Conversation`'s. ``metadata`` is any JSON object,
        returned by :meth:`info` and :meth:`list`.
        """
        user = check_user(user)
        meta_json = _metadata_json({} if metadata is None else metadata)
        conv = Conversation(
            system, model=model, budget=budget, strategy=strategy, max_tokens=max_tokens, counter=counter,
            client=client, redactor=redactor, prompt_cache=prompt_cache, tools=tools, max_steps=max_steps,
            keep_refusals=keep_refusals,
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
        tools: Sequence[Any] | None = None,
    ) -> Conversation:
        """The stored conversation ``id``, with its summary, pins and receipts, in one read.

        ``strategy`` replaces the stored one (needed when it could not be stored, e.g. a plain
        function); ``tools`` are the conversation's tools (code is not stored: pass them again).
        ConversationFileError if there is no such conversation.
        """
        stored = self._read(check_id(id))
        if stored is None:
            raise ConversationFileError(f"{self.kind} has no conversation {id!r}; was it deleted? (store.list() shows what is there)")
        try:
            data = json.loads(stored.head)
            messages = _MESSAGES.validate_json(_array(stored.chunks))  # the to_api() JSON, one parse
            counts = _COUNTS.validate_json(_array(stored.counts))
            sizes = chunk_sizes(stored.counts)
            if len(sizes) != len(stored.chunks) or not sum(sizes) == len(messages) == stored.info.messages:
                raise ValueError(f"{len(messages)} messages read back, {stored.info.messages} written")
            data["messages"] = messages
            data["pinned"] = json.loads(stored.pins)
            if stored.summary is not None:
                data["summary"] = json.loads(stored.summary)
            receipts = _RECEIPTS.validate_json(_array(stored.receipts)) if stored.receipts else []
        except ValueError as exc:
            raise ConversationFileError(f"conversation {id!r} in the {self.kind} is corrupt: {exc}") from None
        real = counter if counter is not None else default_counter()
        stored_key = data.pop("counter", None)
        same = stored_key is not None and stored_key == counter_key(real)
        try:
            conv = _persist.from_dict(
                Conversation, data, strategy=strategy, counter=real, tools=tools, counts=counts if same else None
            )
        except ConversationFileError as exc:
            raise ConversationFileError(f"conversation {id!r} in the {self.kind}: {exc}") from None
        starts = chunk_starts(sizes)
        conv.client, conv.redactor = client, redactor
        conv.receipts = receipts
        conv._journal = Journal(self, id, stored.info.version, conv, stored_key, starts)
        return conv

    def info(self, id: str) -> ConversationInfo:
        """Owner, metadata, times, size and version of ``id``; ConversationFileError if absent."""
        stored = self._read(check_id(id), messages=False)
        if stored is None:
            raise ConversationFileError(f"{self.kind} has no conversation {id!r}")
        return stored.info

    def list(self, *, user: str | None = None, limit: int = 100, after: str | None = None) -> list[ConversationInfo]:
        """Conversations newest first (all, or ``user``'s), at most ``limit`` (1 to 10,000); for
        the next page pass the last one's id as ``after``."""
        return self._list(check_user(user), check_limit(limit), None if after is None else check_id(after))

    def set_metadata(self, id: str, metadata: Mapping[str, Any]) -> ConversationInfo:
        """Replace the metadata of ``id`` (a title, tags: any JSON object) and return its info.

        Not a change of the conversation: open handles keep their version and write on.
        ConversationFileError if there is no such conversation.
        """
        meta_json = _metadata_json(metadata)
        if not self._set_metadata(check_id(id), meta_json, time.time()):
            raise ConversationFileError(f"{self.kind} has no conversation {id!r}; was it deleted?")
        return self.info(id)

    def delete(self, id: str) -> bool:
        """Delete ``id`` with its messages and receipts; False if it was not there."""
        return self._delete(check_id(id))

    def delete_user(self, user: str) -> int:
        """Delete every conversation of ``user``, with their messages and receipts; how many went."""
        return self._delete_user(check_user(user, required=True) or "")

    def delete_idle(self, seconds: float) -> int:
        """Delete every conversation not written for ``seconds`` (a retention period: a turn, an
        edit or new metadata is a write), with its messages and receipts; how many went. Open
        handles on them get :class:`~convo.ConflictError` at their next write."""
        try:
            number("seconds", seconds, minimum=0, hint=" (how long unwritten)")
        except InvalidConfigError as exc:  # a call's argument: the input's error type
            raise InvalidInputError(str(exc)) from None
        return self._delete_idle(time.time() - float(seconds))

    # -- async twins: the same calls in a worker thread (every store here is thread-safe), so an
    # -- async server does not wait on the store's I/O inside its event loop

    async def acreate(self, system: str | Sequence[Any] | None = None, **kwargs: Any) -> Conversation:
        """:meth:`create`, off the event loop."""
        return await asyncio.to_thread(functools.partial(self.create, system, **kwargs))

    async def aopen(self, id: str, **kwargs: Any) -> Conversation:
        """:meth:`open`, off the event loop."""
        return await asyncio.to_thread(functools.partial(self.open, id, **kwargs))

    async def ainfo(self, id: str) -> ConversationInfo:
        """:meth:`info`, off the event loop."""
        return await asyncio.to_thread(self.info, id)

    async def alist(
        self, *, user: str | None = None, limit: int = 100, after: str | None = None
    ) -> builtins.list[ConversationInfo]:
        """:meth:`list`, off the event loop."""
        return await asyncio.to_thread(functools.partial(self.list, user=user, limit=limit, after=after))

    async def aset_metadata(self, id: str, metadata: Mapping[str, Any]) -> ConversationInfo:
        """:meth:`set_metadata`, off the event loop."""
        return await asyncio.to_thread(self.set_metadata, id, metadata)

    async def adelete(self, id: str) -> bool:
        """:meth:`delete`, off the event loop."""
        return await asyncio.to_thread(self.delete, id)

    async def adelete_user(self, user: str) -> int:
        """:meth:`delete_user`, off the event loop."""
        return await asyncio.to_thread(self.delete_user, user)

    async def adelete_idle(self, seconds: float) -> int:
        """:meth:`delete_idle`, off the event loop."""
        return await asyncio.to_thread(self.delete_idle, seconds)

