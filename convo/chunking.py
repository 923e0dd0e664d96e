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
calibrated), every chunk's count comes from that one pass, equal to
``counter.count_text(chunk.text)`` (how: :mod:`convo._measure`); any other counter is asked.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from ._exceptions import InvalidConfigError, InvalidInputError
from .tokens import TokenCounter, default_counter

if TYPE_CHECKING:
    from ._measure import Measure

__all__ = ["Chunk", "TextFileError", "chunk_file", "chunk_text"]

#: A chunk ends at a boundary of the best kind found in the last (1 - MIN_FILL) of the text
#: that fits, so paragraph-aligned chunks are never less than half full.
MIN_FILL = 0.5
_ENDS_ASCII = ".!?"
_ENDS_CJK = "。！？"
_CLOSERS = "\"')]’”」』）》"
_CLAUSE = "，、；："
_HEADING = re.compile(r"#{1,6}[ \t]")
_SENTENCE = re.compile(r"[.!?][\"')\]’”]*(?=\s)|[。！？][”’」』）)》]*")
_WORD = re.compile(r"(?<=\S)[ \t]|(?<=[，、；：])")


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
    # Imported here so that numpy loads on first use rather than with convo.
    from ._measure import measure_for

    spans = _spans(text, measure_for(text, counter, max_tokens), max_tokens, overlap)
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


def _spans(text: str, measure: Measure, limit: int, overlap: int) -> list[tuple[int, int, int]]:
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


def _fit(text: str, measure: Measure, a: int, prev: int, limit: int) -> tuple[int, int] | None:
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


def _overlap_start(text: str, measure: Measure, a: int, c: int, overlap: int) -> int:
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
