"""Split long text into chunks that fit a token limit, cut where a reader would pause.

>>> chunks = convo.chunk_text(document, max_tokens=1000, overlap=100)
>>> chunks[0].text == document[chunks[0].start:chunks[0].end]
True

Where a chunk ends: at the most natural boundary in the second half of the longest stretch that
fits — a blank line or a Markdown heading, else the end of a sentence (``. ! ?`` followed by
a space, or ``。！？``), else a line break, else a space or a CJK comma, and only as a last
resort between two tokens (never inside a character). A boundary in the first half is used
before cutting a word. Spaces stay with the word that follows them (as in the tokenizer);
line breaks stay with the chunk they end.

Why it is fast: the text is tokenized once. With the default counter (tiktoken cl100k_base,
calibrated), a chunk's count comes from that one pass: tiktoken splits text into pieces with a
regular expression before merging bytes, and at some places (after a letter or digit followed
by a non-letter, after punctuation followed by a space, after a line break followed by text)
a piece always ends whatever comes before or after. Between two such places the whole-text
tokens are exactly the tokens of the chunk alone; only the few characters between a chunk's
ends and the nearest such places are tokenized again. The count is then the counter's own
formula, so it equals ``counter.count_text(chunk.text)``. Any other counter is asked directly.
"""

from __future__ import annotations

import codecs
import functools
import math
import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from os import PathLike
from pathlib import Path
from typing import Protocol

from ._exceptions import InvalidConfigError, InvalidInputError
from .tokens import (
    CachedCounter,
    OfflineCounter,
    TokenCounter,
    _encoding,
    default_counter,
)

__all__ = ["Chunk", "TextFileError", "chunk_file", "chunk_text"]

#: A chunk ends at a boundary of the best kind found in the last (1 - MIN_FILL) of the text
#: that fits, so paragraph-aligned chunks are never less than half full.
MIN_FILL = 0.5
#: How far (characters) to look for a place where tiktoken's pieces always split.
_SCAN = 256
_ENDS_ASCII = ".!?"
_ENDS_CJK = "。！？"
_CLOSERS = "\"')]’”」』）》"
_CLAUSE = "，、；："
_HEADING = re.compile(r"#{1,6}[ \t]")
_SENTENCE = re.compile(r"[.!?][\"')\]’”]*(?=\s)|[。！？][”’」』）)》]*")
_WORD = re.compile(r"(?<=\S)[ \t]|(?<=[，、；：])")
# _CJK split in two so the BMP part compiles to a bitmap (twice as fast to scan).
_HIGH = re.compile("[\u2e80-\U0010ffff]")
_CJK_RUN = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]+|[\U00020000-\U0002fa1f]+"
)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a chunked text: ``source[start:end] == text``, ``tokens`` by the counter."""

    text: str
    start: int
    end: int
    tokens: int
    index: int

    def __repr__(self) -> str:
        head = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"Chunk(index={self.index}, start={self.start}, end={self.end}, tokens={self.tokens}, text={head!r})"


class TextFileError(InvalidInputError):
    """A file given to :func:`chunk_file` is missing, unreadable, binary or not UTF-8.

    ``path`` is the file; ``offset`` the byte offset of the first bad byte, when there is one.
    """

    def __init__(self, message: str, *, path: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


def chunk_text(
    text: str, max_tokens: int = 1000, overlap: int = 0, counter: TokenCounter | None = None
) -> list[Chunk]:
    """Split ``text`` into chunks of at most ``max_tokens`` tokens (by ``counter``).

    Chunks cover the whole text in order; with ``overlap`` > 0 each chunk starts up to
    ``overlap`` tokens before the previous one ended (at a sentence or word start when there is
    one), so neighbours share context. ``counter`` is any object with ``count_text``; the
    default is convo's offline estimate of Claude's tokens.
    """
    if not isinstance(text, str):
        hint = " — decode it first (data.decode('utf-8')) or use chunk_file" if isinstance(text, bytes | bytearray) else ""
        raise InvalidInputError(f"chunk_text needs a str, got {type(text).__name__}{hint}")
    for name, value in (("max_tokens", max_tokens), ("overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidConfigError(f"{name} must be an int, got {value!r}")
    if max_tokens <= 0:
        raise InvalidConfigError(f"max_tokens must be positive, got {max_tokens}")
    if overlap < 0:
        raise InvalidConfigError(f"overlap must be 0 or more tokens, got {overlap}")
    if overlap >= max_tokens:
        raise InvalidConfigError(
            f"overlap ({overlap}) must be smaller than max_tokens ({max_tokens}), or no chunk could add new "
            "text; a tenth to a fifth of max_tokens is usual"
        )
    counter = counter if counter is not None else default_counter()
    if not callable(getattr(counter, "count_text", None)):
        raise InvalidConfigError(f"counter must have a count_text(text) method, got {type(counter).__name__}")
    if not text:
        return []
    _check_encodable(text)
    inner = counter.inner if isinstance(counter, CachedCounter) else counter
    measure: _Measure
    if type(inner) is OfflineCounter:
        measure = _OfflineMeasure(text, inner, max_tokens)
    else:
        measure = _CounterMeasure(text, counter, max_tokens)
    spans = _spans(text, measure, max_tokens, overlap)
    return [Chunk(text[a:c], a, c, n, i) for i, (a, c, n) in enumerate(spans)]


def chunk_file(
    path: str | PathLike[str], max_tokens: int = 1000, overlap: int = 0, counter: TokenCounter | None = None
) -> list[Chunk]:
    """Read a UTF-8 text or Markdown file and :func:`chunk_text` it.

    Offsets refer to the decoded text (a UTF-8 byte-order mark is dropped). Raises
    :class:`TextFileError` for a missing, binary (NUL bytes) or non-UTF-8 file.
    """
    return chunk_text(read_text_file(path), max_tokens, overlap, counter)


def read_text_file(path: str | PathLike[str]) -> str:
    """The text of a UTF-8 file, or a :class:`TextFileError` that says what is wrong with it."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise TextFileError(f"{name}: no such file; check the path", path=name) from exc
    except IsADirectoryError as exc:
        raise TextFileError(f"{name} is a directory; pass the path of a text file", path=name) from exc
    except OSError as exc:
        raise TextFileError(f"{name} cannot be read ({exc.strerror or exc}); check permissions", path=name) from exc
    nul = data.find(b"\0")
    if nul >= 0:
        raise TextFileError(
            f"{name} looks binary (a NUL byte at byte offset {nul}); chunk_file reads UTF-8 text and Markdown — "
            "extract the text first (e.g. from a PDF or Word file)",
            path=name,
            offset=nul,
        )
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = skip + exc.start
        raise TextFileError(
            f"{name} is not UTF-8: byte 0x{data[at]:02x} at byte offset {at} ({exc.reason}); convert the file "
            "to UTF-8, or decode it yourself and call chunk_text",
            path=name,
            offset=at,
        ) from exc


def _check_encodable(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"text has a lone surrogate at offset {exc.start} ({text[exc.start]!r}), which is not valid Unicode; "
            "clean it first, e.g. text.encode('utf-8', 'replace').decode()"
        ) from None


# -- the cutting loop, shared by both ways of counting -------------------------------------------


class _Measure(Protocol):
    def window(self, a: int) -> int: ...  # a likely end of the longest text from a that fits
    def count(self, a: int, c: int) -> int: ...  # the counter's count of text[a:c], exactly
    def back(self, c: int, tokens: int) -> int: ...  # a likely start p of text[p:c] with ~tokens


def _spans(text: str, measure: _Measure, limit: int, overlap: int) -> list[tuple[int, int, int]]:
    spans: list[tuple[int, int, int]] = []
    a = prev = 0
    while prev < len(text):
        fit = _fit(text, measure, a, prev, limit)
        if fit is None and a < prev:  # the overlap left no room for new text: drop it here
            a = prev
            fit = _fit(text, measure, a, prev, limit)
        if fit is None:
            n = measure.count(a, a + 1)
            raise InvalidConfigError(
                f"max_tokens={limit} is too small: the character {text[a]!r} at offset {a} alone counts {n} "
                f"tokens; use max_tokens >= {max(n, 8)}"
            )
        c, n = fit
        spans.append((a, c, n))
        a = prev = c
        if overlap and c < len(text):
            a = _overlap_start(text, measure, spans[-1][0], c, overlap)
    return spans


def _fit(text: str, measure: _Measure, a: int, prev: int, limit: int) -> tuple[int, int] | None:
    """The best cut c > prev such that text[a:c] fits, with its count; None if none fits."""
    w = min(len(text), max(measure.window(a), prev + 1))
    while True:
        c = _best_cut(text, a, w, prev)
        n = measure.count(a, c)
        if n <= limit:
            return c, n
        w = min(c - 1, a + (c - a) * limit // n)
        if w <= prev:
            return None


def _best_cut(text: str, a: int, w: int, prev: int) -> int:
    if w >= len(text):
        return len(text)
    mid = max(a + int((w - a) * MIN_FILL), prev + 1)
    for lo, hi in ((mid, w), (prev + 1, mid - 1)):
        if lo > hi:
            continue
        for find in (_last_paragraph, _last_sentence, _last_line, _last_word):
            c = find(text, lo, hi)
            if c is not None:
                return c
    return w


def _overlap_start(text: str, measure: _Measure, a: int, c: int, overlap: int) -> int:
    """Where the next chunk starts: about ``overlap`` tokens before ``c``, at a sentence or word."""
    p = max(measure.back(c, overlap), a + 1)
    if p >= c:
        return c
    s = _first(_SENTENCE, text, p, p + (c - p) // 2) or _first(_WORD, text, p, c - 1) or p
    while (n := measure.count(s, c)) > overlap:
        s = max(s + 1, c - (c - s) * overlap // (n + 1))
        if s >= c:
            return c
        s = _first(_WORD, text, s, c - 1) or s
    return s


# -- boundary finders: the last cut of a kind in [lo, hi] -----------------------------------------


def _last_paragraph(text: str, lo: int, hi: int) -> int | None:
    i = text.rfind("\n\n", max(0, lo - 2), hi)
    best = i + 2 if i >= 0 else None
    j = text.rfind("\n\r\n", max(0, lo - 3), hi)
    if j >= 0 and (best is None or j + 3 > best):
        best = j + 3
    if best is not None:  # a blank line right after a heading: cut before the heading instead
        end = best
        while end > 0 and text[end - 1] in "\r\n":
            end -= 1
        start = text.rfind("\n", 0, end) + 1
        if start >= lo and _HEADING.match(text, start):
            return start
    k = text.rfind("\n#", max(0, lo - 1), hi)
    while k >= 0 and (best is None or k + 1 > best):
        if _HEADING.match(text, k + 1):
            return k + 1
        k = text.rfind("\n#", max(0, lo - 1), k)
    return best


def _last_sentence(text: str, lo: int, hi: int) -> int | None:
    best = None
    for ch in _ENDS_ASCII + _ENDS_CJK:
        i = text.rfind(ch, max(0, lo - 1), hi)
        while i >= 0 and (best is None or i >= best):
            c = i + 1
            while c < hi and text[c] in _CLOSERS:
                c += 1
            if ch in _ENDS_CJK or (c < len(text) and text[c].isspace()):
                c = _newlines(text, c, hi)
                if c >= lo and (best is None or c > best):
                    best = c
                break
            i = text.rfind(ch, max(0, lo - 1), i)
    return best


def _last_line(text: str, lo: int, hi: int) -> int | None:
    i = text.rfind("\n", max(0, lo - 1), hi)
    return i + 1 if i >= 0 else None


def _last_word(text: str, lo: int, hi: int) -> int | None:
    best = None
    i = max(text.rfind(" ", lo, hi), text.rfind("\t", lo, hi))
    if i >= 0:
        while i > lo and text[i - 1] in " \t":
            i -= 1
        if i >= lo and i > 0 and not text[i - 1].isspace():
            best = i
    for ch in _CLAUSE:
        j = text.rfind(ch, max(0, lo - 1), hi)
        if j >= 0 and (best is None or j + 1 > best):
            best = j + 1
    return best


def _newlines(text: str, c: int, hi: int) -> int:
    """Extend a cut over the line breaks right after it, so they stay with the chunk they end."""
    while True:
        k = c
        while k < hi and text[k] in " \t\r":
            k += 1
        if k < hi and text[k] == "\n":
            c = k + 1
        else:
            return c


def _first(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> int | None:
    """The first cut of a kind (a sentence end or a word start) in [lo, hi]."""
    m = pattern.search(text, max(0, lo - 1), hi + 1)
    while m is not None:
        c = m.end() if pattern is _SENTENCE else m.start()
        if c > hi:
            return None
        if c >= lo:
            return _newlines(text, c, hi) if pattern is _SENTENCE else c
        m = pattern.search(text, m.end() if m.end() > m.start() else m.end() + 1, hi + 1)
    return None


# -- counting -------------------------------------------------------------------------------------


class _CounterMeasure:
    """Any counter: ask it, guessing windows from its characters per token so far."""

    def __init__(self, text: str, counter: TokenCounter, limit: int) -> None:
        self.text, self.limit, self._count = text, limit, counter.count_text
        sample = text[: 4 * limit + 64]
        self.per_token = len(sample) / max(1, int(self._count(sample)))  # characters per token

    def window(self, a: int) -> int:
        return a + max(1, int(self.per_token * self.limit))

    def count(self, a: int, c: int) -> int:
        n = int(self._count(self.text[a:c]))
        if n > 0 and c - a >= 64:
            self.per_token = 0.7 * self.per_token + 0.3 * (c - a) / n
        return n

    def back(self, c: int, tokens: int) -> int:
        return c - int(self.per_token * tokens)


@functools.cache
def _token_bytes() -> list[int]:
    """Length in bytes of every token of the encoding (0 for unused ids)."""
    enc = _encoding()
    lengths = [0] * (enc.max_token_value + 1)
    for i in range(enc.max_token_value + 1):
        try:
            lengths[i] = len(enc.decode_single_token_bytes(i))
        except KeyError:
            pass
    return lengths


class _OfflineMeasure:
    """OfflineCounter's exact counts from one tiktoken pass (see the module docstring)."""

    def __init__(self, text: str, counter: OfflineCounter, limit: int) -> None:
        enc = _encoding()
        self.text, self.limit, self.ascii = text, limit, text.isascii()
        self.factor, self.cjk_factor = counter.text_factor, counter.cjk_factor
        self._encode, self._decode = enc.encode_ordinary, enc.decode_bytes
        self.tokens: list[int] = enc.encode_ordinary(text)
        self.lengths = _token_bytes()
        # Known token boundaries: (character offset, bytes past it, token index).
        self.anchors = [(0, 0, 0), (len(text), 0, len(self.tokens))]
        n = max(1, len(self.tokens))
        self.per_token = len(text) / n  # characters per token
        self.bytes_per_token = (len(text) if self.ascii else len(text.encode())) / n
        sample = text[: int(4 * limit * self.per_token) + 64]
        self.density = 0.0 if self.ascii else _cjk(sample) / max(1.0, len(sample) / self.per_token)
        self._start: tuple[int, int, int, int] | None = None  # a, first split g, its token, tokens in a..g

    def window(self, a: int) -> int:
        start = self._split_after(a)
        if start is None:
            return a + max(1, int(self.per_token * self.limit / self.factor))
        g, t, left = start
        # CJK characters change the count (less, by default): expect as many as lately, minus a margin.
        per = self.factor + self.cjk_factor * self.density * (0.9 if self.cjk_factor < 0 else 1.1)
        end = t + int(self.limit / max(per, 0.05 * self.factor)) - left
        if end <= t:
            return max(g, a + 1)
        if end >= len(self.tokens):
            return len(self.text)
        data = self._decode(self.tokens[t:end])
        extra = _partial_tail(data)
        whole = len(data) - extra
        w = g + (whole if self.ascii else len(data[:whole].decode()))
        self._remember((w, extra, end))
        return w

    def count(self, a: int, c: int) -> int:
        if c <= a:
            return 0
        n = None
        start = self._split_after(a)
        if start is not None and start[0] <= c:
            g1, t1, left = start
            g2 = _last_split(self.text, c, g1)
            t2 = None if g2 is None else self._locate(g2)
            if g2 is not None and t2 is not None:
                n = left + (t2 - t1) + self._n(g2, c)
        if n is None:
            n = self._n(a, c)
        # OfflineCounter.count_text's formula, operation for operation.
        estimate = self.factor * n
        piece = self.text[a:c]
        if not piece.isascii():
            cjk = _cjk(piece)
            estimate += self.cjk_factor * cjk
            if n >= 32:
                self.density = cjk / n
        return max(1, math.ceil(estimate))

    def back(self, c: int, tokens: int) -> int:
        g = _last_split(self.text, c, max(0, c - _SCAN))
        t = None if g is None else self._locate(g)
        if g is None or t is None:
            return c - int(self.per_token * tokens / self.factor)
        raw = int(tokens / self.factor) - self._n(g, c)
        if raw <= 0:
            return c
        data = self._decode(self.tokens[max(0, t - raw) : t])
        lead = _partial_head(data)
        return g - (len(data) - lead if self.ascii else len(data[lead:].decode()))

    # -- token boundaries ------------------------------------------------------------------

    def _split_after(self, a: int) -> tuple[int, int, int] | None:
        """The first split point g >= a, its token index, and the tokens of text[a:g]."""
        cached = self._start
        if cached is not None and cached[0] == a:
            return cached[1:]
        g = _first_split(self.text, a, len(self.text))
        t = None if g is None else self._locate(g)
        if g is None or t is None:
            return None
        self._start = (a, g, t, self._n(a, g))
        return self._start[1:]

    def _n(self, a: int, c: int) -> int:
        return len(self._encode(self.text[a:c])) if c > a else 0

    def _nbytes(self, a: int, c: int) -> int:
        if self.ascii or a == c:
            return c - a
        return len(self.text[a:c].encode()) if c > a else -len(self.text[c:a].encode())

    def _locate(self, g: int) -> int | None:
        """The whole-text token index at split point g, walked to from the nearest anchor."""
        best = None
        for anchor in self.anchors:
            if best is None or abs(anchor[0] - g) < abs(best[0] - g):
                best = anchor
        p, extra, t = best  # type: ignore[misc]
        t = self._walk(t, self._nbytes(p, g) - extra)
        if t is not None:
            self._remember((g, 0, t))
        return t

    def _walk(self, t: int, delta: int) -> int | None:
        """The token boundary ``delta`` bytes from boundary ``t``; None if no boundary is there."""
        tokens, size = self.tokens, self.lengths.__getitem__
        sign = 1 if delta > 0 else -1
        left, step = abs(delta), int(abs(delta) / self.bytes_per_token) + 8
        while left > 0:
            part = tokens[t : t + step] if sign > 0 else tokens[max(0, t - step) : t][::-1]
            if not part:
                return None
            sums = list(accumulate(map(size, part)))
            i = bisect_left(sums, left)
            if i < len(sums):
                return t + sign * (i + 1) if sums[i] == left else None
            left -= sums[-1]
            t += sign * len(sums)
            step *= 2
        return t

    def _remember(self, anchor: tuple[int, int, int]) -> None:
        self.anchors.append(anchor)
        if len(self.anchors) > 6:
            del self.anchors[2]


def _cjk(text: str) -> int:
    """``len(tokens._CJK.findall(text))``, faster (a quick look skips Latin text)."""
    return sum(map(len, _CJK_RUN.findall(text))) if _HIGH.search(text) else 0


def _partial_tail(data: bytes) -> int:
    """How many bytes at the end of ``data`` belong to an incomplete UTF-8 character."""
    i, n = len(data), 0
    while i > 0 and n < 3 and data[i - 1] & 0xC0 == 0x80:
        i -= 1
        n += 1
    if i == 0:
        return n
    lead = data[i - 1]
    need = 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return n + 1 if n + 1 < need else 0


def _partial_head(data: bytes) -> int:
    i = 0
    while i < len(data) and i < 3 and data[i] & 0xC0 == 0x80:
        i += 1
    return i


# -- where tiktoken's pieces always split ----------------------------------------------------------

_ASCII_KIND = "".join("w" if chr(i).isalnum() else "s" if chr(i).isspace() else "p" for i in range(128))


def _kind(ch: str) -> str:
    """'w' letter or digit, 's' whitespace, 'p' anything else, '?' unassigned (kept out)."""
    if ch < "\x80":
        return _ASCII_KIND[ord(ch)]
    if ch.isspace():
        return "s"
    cat = unicodedata.category(ch)
    return "w" if cat[0] in "LN" else "?" if cat == "Cn" else "p"


def _is_split(text: str, m: int) -> bool:
    """True if every tiktoken piece boundary-check agrees a piece starts at ``m``.

    cl100k's pre-tokenizer can never continue a piece from a letter or digit into a non-letter,
    from punctuation into a space, or from the last line break of a run into text.
    """
    if m <= 0 or m >= len(text):
        return True
    p, q = _kind(text[m - 1]), _kind(text[m])
    if p == "w":
        return q in "ps"
    if p == "p":
        return text[m] in " \t"
    if text[m - 1] in "\r\n":
        i = m
        while i < len(text) and text[i] in " \t":
            i += 1
        return i < len(text) and _kind(text[i]) in "wp"
    return False


def _first_split(text: str, a: int, limit: int) -> int | None:
    for m in range(a, min(limit, a + _SCAN, len(text)) + 1):
        if _is_split(text, m):
            return m
    return None


def _last_split(text: str, c: int, floor: int) -> int | None:
    for m in range(c, max(floor, c - _SCAN) - 1, -1):
        if _is_split(text, m):
            return m
    return None
