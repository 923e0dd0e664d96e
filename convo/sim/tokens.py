"""The simulator's tokenizer: a deterministic stand-in for Claude's, written to differ from
convo's estimate the way a real tokenizer differs from an estimate.

Text is first cut into pre-tokens, as byte-pair tokenizers do: runs of letters (with the
space before them), digit runs, punctuation runs, whitespace runs, and single CJK characters.
Each pre-token then costs what a vocabulary of common pieces would give it:

* a lower-case word of up to 7 letters is one token; longer words split into pieces of ~5
  letters; capitalised words cost a little more, all-caps ones a piece per 3 letters;
* digits go in groups of three (``2026`` is two tokens);
* punctuation is a token per mark, repeated marks (``----``) a token per four (also inside a
  mixed run such as ``----:``); CJK punctuation (``、``) a token;
* whitespace rides on the next word; other runs cost a token per four spaces or per newline;
* a Han character costs 1 or 2 tokens (about 1.3 on average, fixed per character), kana and
  hangul 1; other scripts (accented, Cyrillic, Greek ...) a token per ~3 letters; emoji 2.

The catalogue's ``tokenizer`` label picks a factor: ``claude-5`` (the newer models' tokenizer)
spends more tokens on alphabetic text and code but about the same on CJK, which is what
comparisons of the two tokenizers report (English ~1.42x, Spanish ~1.33x, Python ~1.27x,
Mandarin ~1.0x: simonwillison.net/2026/Jun/30/claude-sonnet-5/, as quoted in public notes).
Images cost width * height / 750 tokens after downscaling (the vision page).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from .errors import SimConfigError

__all__ = ["TextTokenizer", "Tokenizer", "as_tokenizer", "image_size", "image_tokens"]

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA_HANGUL = "\u3040-\u30ff\uac00-\ud7af\u3000-\u303f\uff00-\uffef"
_PRE = re.compile(
    rf"[{_HAN}]|[{_KANA_HANGUL}]"
    r"| ?[A-Za-z]+(?:'[a-z]+)?"
    r"| ?[^\W\d_A-Za-z]+"
    r"|\d+"
    r"|\n+|[ \t]+"
    rf"|[^\w\s{_HAN}{_KANA_HANGUL}]+"  # CJK punctuation is a piece of its own, as above
    r"|_+"
)
_SAME_MARKS = re.compile(r"(.)\1*", re.DOTALL)
_HAN_RE = re.compile(f"[{_HAN}]")
_KANA_RE = re.compile(f"[{_KANA_HANGUL}]")
#: Factors per tokenizer label: (alphabetic text and code, CJK).
FACTORS: dict[str, tuple[float, float]] = {"claude-5": (1.4, 1.0)}
#: Per message, per request and per tool definition framing (role markers, the tool prompt).
MESSAGE_OVERHEAD = 4
REQUEST_OVERHEAD = 3
TOOLS_OVERHEAD = 280
IMAGE_MAX_EDGE = 1568
IMAGE_MAX_TOKENS = 1600
PDF_PAGE_TOKENS = 1800


def _word(piece: str) -> int:
    w = piece.lstrip(" ")
    if "'" in w:  # a contraction: the word, then its suffix ('s, 're, 'll) as one more token
        return _word(w[: w.index("'")]) + 1
    n = len(w)
    if not w.isascii():
        return max(1, math.ceil(n / 3))
    if n > 1 and w.isupper():
        return max(1, math.ceil(n / 3))
    if w[0].isupper():
        n += 1  # a capital costs about a letter more; kept inside the length so joining stays additive
    return 1 if n <= 7 else 1 + math.ceil((n - 7) / 5)


@lru_cache(maxsize=65536)
def _piece(piece: str) -> tuple[int, int]:
    """(alphabetic tokens, CJK tokens) for one pre-token."""
    ch = piece[0]
    if _HAN_RE.match(ch):
        return 0, 1 + (zlib.crc32(ch.encode()) % 10 < 3)
    if _KANA_RE.match(ch):
        return 0, 1
    if ch.isdigit():
        return math.ceil(len(piece) / 3), 0
    if ch == "\n":
        return len(piece), 0
    if ch in " \t" and piece.strip(" \t") == "":
        return math.ceil(len(piece) / 4), 0
    if ch == "_":
        return math.ceil(len(piece) / 4), 0
    if piece.lstrip(" ")[:1].isalnum():  # letters, and numerals that are not digits (¼, ²)
        return _word(piece), 0
    # punctuation and symbols: a repeated mark a token per four, a lone one a token (2 past U+2000)
    return sum(_marks(m.group()) for m in _SAME_MARKS.finditer(piece)), 0


def _marks(run: str) -> int:
    """One mark, or the same mark repeated (so joining two runs never costs more than both)."""
    if len(run) > 1:
        return math.ceil(len(run) / 4)
    return 2 if ord(run) > 0x2000 else 1


def _scaled(n: int, factor: float) -> int:
    """``n`` tokens under a tokenizer ``factor`` times as fine (rounded; never 0 for some text)."""
    return max(1 if n else 0, math.floor(n * factor + 0.5))


class Tokenizer:
    """Counts tokens the way the simulated API does, per catalogue ``tokenizer`` label."""

    def count_text(self, text: str, label: str = "") -> int:
        if not text:
            return 0
        alpha = cjk = 0
        for piece in _PRE.findall(text):
            a, c = _piece(piece)
            alpha += a
            cjk += c
        fa, fc = FACTORS.get(label, (1.0, 1.0))
        return _scaled(alpha, fa) + _scaled(cjk, fc)

    # -- blocks -----------------------------------------------------------------------

    def count_block(self, block: Mapping[str, Any], label: str = "") -> int:
        kind = block.get("type")
        if kind == "text":
            return self.count_text(block.get("text") or "", label)
        if kind == "image":
            return image_tokens(block.get("source") or {})
        if kind == "document":
            return self._document(block, label)
        if kind == "tool_use" or kind == "server_tool_use":
            payload = json.dumps(block.get("input") or {}, ensure_ascii=False, sort_keys=True)
            return 3 + self.count_text(str(block.get("name") or ""), label) + self.count_text(payload, label)
        if kind == "tool_result":
            content = block.get("content")
            if isinstance(content, str):
                return 3 + self.count_text(content, label)
            return 3 + sum(self.count_block(b, label) for b in content or () if isinstance(b, Mapping))
        if kind == "thinking":
            return self.count_text(block.get("thinking") or "", label)
        if kind == "redacted_thinking":
            return math.ceil(len(block.get("data") or "") / 8)
        if kind == "compaction":
            return self.count_text(block.get("content") or "", label)
        if kind == "search_result":
            inner = sum(self.count_block(b, label) for b in block.get("content") or () if isinstance(b, Mapping))
            return inner + self.count_text(f"{block.get('title', '')} {block.get('source', '')}", label)
        # Anything else (server tool results, mcp blocks, new types): its JSON, as text.
        rest = {k: v for k, v in block.items() if k != "cache_control"}
        return self.count_text(json.dumps(rest, ensure_ascii=False, sort_keys=True), label)

    def _document(self, block: Mapping[str, Any], label: str) -> int:
        src = block.get("source") or {}
        extra = self.count_text(str(block.get("title") or "") + str(block.get("context") or ""), label)
        kind = src.get("type")
        if kind == "text":
            return extra + self.count_text(src.get("data") or "", label)
        if kind == "content":
            inner = src.get("content")
            if isinstance(inner, str):
                return extra + self.count_text(inner, label)
            return extra + sum(self.count_block(b, label) for b in inner or () if isinstance(b, Mapping))
        if kind == "base64":
            try:
                raw = base64.b64decode(src.get("data") or "", validate=False)
            except (binascii.Error, ValueError):
                raw = b""
            pages = max(1, len(re.findall(rb"/Type\s*/Page(?!s)", raw)))
            return extra + pages * PDF_PAGE_TOKENS
        return extra + PDF_PAGE_TOKENS

    def count_content(self, content: str | Iterable[Mapping[str, Any]], label: str = "") -> int:
        if isinstance(content, str):
            return self.count_text(content, label)
        return sum(self.count_block(b, label) for b in content)

    def count_tool(self, tool: Mapping[str, Any], label: str = "") -> int:
        rest = {k: v for k, v in tool.items() if k != "cache_control"}
        return 2 + self.count_text(json.dumps(rest, ensure_ascii=False, sort_keys=True), label)

    def count_request(
        self,
        messages: Sequence[Any],
        *,
        system: Sequence[Mapping[str, Any]] = (),
        tools: Sequence[Mapping[str, Any]] | None = None,
        label: str = "",
    ) -> int:
        """Input tokens of a request: framing, tools, system blocks and every message's blocks.

        ``messages`` are the simulator's turns (``role`` and ``blocks``)."""
        n = REQUEST_OVERHEAD + sum(self.count_block(b, label) for b in system)
        if tools:
            n += TOOLS_OVERHEAD + sum(self.count_tool(t, label) for t in tools)
        for m in messages:
            n += MESSAGE_OVERHEAD + sum(self.count_block(b, label) for b in m.blocks)
        return n


class TextTokenizer(Tokenizer):
    """The simulator's tokenizer with bare text counted by another counter's ``count_text``
    (a convo counter, say, to make the server count unlike the client). Framing, blocks,
    tools and images stay the simulator's; only text runs through the given counter."""

    def __init__(self, count_text: Callable[[str], int]) -> None:
        self._count = count_text

    def __repr__(self) -> str:
        return f"TextTokenizer({self._count!r})"

    def count_text(self, text: str, label: str = "") -> int:
        return int(self._count(text)) if text else 0


def as_tokenizer(counter: object) -> Tokenizer:
    """``counter`` as the simulator's tokenizer: a :class:`Tokenizer` as it is, an object with
    ``count_text(text) -> int`` (such as a convo token counter) wrapped in a
    :class:`TextTokenizer`, None for the default."""
    if counter is None:
        return Tokenizer()
    if isinstance(counter, Tokenizer):
        return counter
    count = getattr(counter, "count_text", None)
    if callable(count):
        return TextTokenizer(count)
    raise SimConfigError(
        f"counter: {counter!r} is not a convo.sim.Tokenizer and has no count_text(text) method; pass a "
        "Tokenizer, or an object whose count_text(text) returns an int"
    )


# -- images ------------------------------------------------------------------------------


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF, JPEG or WebP from its header bytes; None if unreadable."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return int(w) & 0x3FFF, int(h) & 0x3FFF
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            i += 2 + max(2, length)
    return None


def image_tokens(source: Mapping[str, Any]) -> int:
    """The vision page's estimate, tokens = width * height / 750, after the API's downscaling
    (long edge at most 1568 px, at most ~1600 tokens). Unknown sizes cost the maximum."""
    if source.get("type") != "base64":
        return IMAGE_MAX_TOKENS
    try:
        text = source.get("data") or ""
        if len(text) > 65536:
            text = text[:65536]
        head = base64.b64decode(text[: len(text) // 4 * 4], validate=False)
    except (binascii.Error, ValueError):
        return IMAGE_MAX_TOKENS
    size = image_size(head)
    if size is None:
        return IMAGE_MAX_TOKENS
    scale = min(1.0, IMAGE_MAX_EDGE / max(*size, 1))
    tokens = size[0] * scale * size[1] * scale / 750
    return max(1, min(IMAGE_MAX_TOKENS, math.ceil(tokens)))
