"""How many tokens a span of one text has: the questions :mod:`convo.chunking` asks while cutting.

:class:`Measure` is those questions. :class:`CounterMeasure` asks any counter; the
:class:`OfflineMeasure` answers for convo's own counter (tiktoken cl100k_base, calibrated) from a
single tiktoken pass over the whole text, exactly as ``counter.count_text(text[a:c])`` would.

Why one pass is enough: tiktoken splits text into pieces with a regular expression before
merging bytes, and at some places (after a letter or digit followed by a non-letter, after
punctuation followed by a space, after a line break followed by text) a piece always ends,
whatever comes before or after. Between two such places the whole-text tokens are exactly the
tokens of any span around them, so only the few characters between a span's ends and the
nearest such places are tokenized again. The whole-text tokens are kept as a running sum of
their byte lengths (running sums, see ``_sums``), so finding the token at a place is one binary search, and the CJK
count and character-to-byte mapping of dense non-Latin text are running sums too.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from bisect import bisect_left, bisect_right
from typing import Protocol

from ._sums import char_sums, first_cjk, token_starts
from .offline_counter import CJK, encoding
from .tokens import CachedCounter, OfflineCounter, TokenCounter

#: How far (characters) to look for a place where tiktoken's pieces always split.
SCAN = 256
#: Text with more UTF-8 bytes per character than this gets per-character running sums up front
#: (cheap for CJK text, where every chunk needs them); sparser text is measured chunk by chunk.
_DENSE = 1.25


class Measure(Protocol):
    """What the cutting loop asks about spans text[a:c] of the one text it cuts."""

    def window(self, a: int) -> int: ...  # a likely end of the longest text from a that fits
    def count(self, a: int, c: int) -> int: ...  # the counter's count of text[a:c], exactly
    def back(self, c: int, tokens: int) -> int: ...  # a likely start p of text[p:c] with ~tokens


def measure_for(text: str, counter: TokenCounter, limit: int) -> Measure:
    """The fastest exact way to count spans of ``text`` by ``counter``."""
    inner = counter.inner if isinstance(counter, CachedCounter) else counter
    if type(inner) is OfflineCounter:
        return OfflineMeasure(text, inner, limit)
    return CounterMeasure(text, counter, limit)


class CounterMeasure:
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


class OfflineMeasure:
    """OfflineCounter's exact counts from one tiktoken pass (see the module docstring)."""

    def __init__(self, text: str, counter: OfflineCounter, limit: int) -> None:
        enc = encoding()
        self.text, self.limit, self.estimate = text, limit, counter.estimate
        self.factor, self.cjk_factor = counter.text_factor, counter.cjk_factor
        self._encode = enc.encode_ordinary
        # starts[t]: byte offset where whole-text token t starts (starts[ntok]: the text's size).
        self.ntok, self.starts = token_starts(text)
        self.ascii = text.isascii()
        self.data = b"" if self.ascii else text.encode()
        self.char_bytes: memoryview | None = None  # byte offset of each character (dense text only)
        self.cjk_before: memoryview | None = None  # CJK characters before each character (dense text only)
        if len(self.data) > _DENSE * len(text):
            self.char_bytes, self.cjk_before = char_sums(text)
        self.per_token = len(text) / max(1, self.ntok)  # characters per token
        sample = text[: int(4 * limit * self.per_token) + 64]
        self.density = 0.0 if self.ascii else self._cjk(0, len(sample)) / max(1.0, len(sample) / self.per_token)
        self._anchor = (0, 0)  # a character offset and its byte offset, near the current chunk
        self._short: dict[str, int] = {}  # tokens of short pieces
        # The last start a asked about and, for it, _split_after's answer.
        self._start_at = -1
        self._start: tuple[int, int, int, int] | None = None

    def window(self, a: int) -> int:
        start = self._split_after(a)
        if start is None:
            return a + max(1, int(self.per_token * self.limit / self.factor))
        g, bg, t, left = start
        # CJK characters change the count (less, by default): expect as many as lately, minus a margin.
        per = self.factor + self.cjk_factor * self.density * (0.9 if self.cjk_factor < 0 else 1.1)
        end = t + int(self.limit / max(per, 0.05 * self.factor)) - left
        if end <= t:
            return max(g, a + 1)
        if end >= self.ntok:
            return len(self.text)
        return self._char_at_or_before(g, bg, self.starts[end])

    def count(self, a: int, c: int) -> int:
        if c <= a:
            return 0
        n = None
        start = self._split_after(a)
        if start is not None and start[0] <= c:
            g1, b1, t1, left = start
            g2 = _last_split(self.text, c, g1)
            if g2 is not None:
                b2 = b1 + self._nbytes(g1, g2)
                t2 = self._token_at(b2)
                if t2 is not None:
                    self._anchor = (g2, b2)  # the next chunk likely starts near c
                    n = left + (t2 - t1) + self._n(g2, c)
        if n is None:
            n = self._n(a, c)
        cjk = self._cjk(a, c)
        if n >= 32 and not self.ascii:
            self.density = cjk / n
        return self.estimate(n, cjk)

    def back(self, c: int, tokens: int) -> int:
        g = _last_split(self.text, c, max(0, c - SCAN))
        bg = None if g is None else self._byte(g)
        t = None if bg is None else self._token_at(bg)
        if g is None or bg is None or t is None:
            return c - int(self.per_token * tokens / self.factor)
        raw = int(tokens / self.factor) - self._n(g, c)
        if raw <= 0:
            return c
        return self._char_at_or_after(g, bg, self.starts[max(0, t - raw)])

    # -- token boundaries ------------------------------------------------------------------

    def _split_after(self, a: int) -> tuple[int, int, int, int] | None:
        """The first split point g >= a, its byte offset, its token index, and the tokens of text[a:g]."""
        if self._start_at == a:
            return self._start
        self._start_at, self._start = a, None
        g = _first_split(self.text, a)
        if g is not None:
            ba = self._byte(a)
            self._anchor = (a, ba)
            bg = ba + self._nbytes(a, g)
            t = self._token_at(bg)
            if t is not None:
                self._start = (g, bg, t, self._n(a, g))
        return self._start

    def _token_at(self, b: int) -> int | None:
        """The index of the whole-text token starting at byte b; None if b is inside a token."""
        t = bisect_left(self.starts, b)
        return t if t <= self.ntok and self.starts[t] == b else None

    def _n(self, a: int, c: int) -> int:
        """Tokens of text[a:c] alone; remembered when short (chunk ends repeat: ".", "。")."""
        if c - a > 4:
            return len(self._encode(self.text[a:c]))
        if c <= a:
            return 0
        piece = self.text[a:c]
        n = self._short.get(piece)
        if n is None:
            n = self._short[piece] = len(self._encode(piece))
        return n

    def _nbytes(self, a: int, c: int) -> int:
        """UTF-8 bytes of text[a:c], for a <= c."""
        if self.ascii:
            return c - a
        if self.char_bytes is not None:
            return self.char_bytes[c] - self.char_bytes[a]
        return len(self.text[a:c].encode())

    def _byte(self, x: int) -> int:
        p, bp = self._anchor
        return bp + self._nbytes(p, x) if x >= p else bp - self._nbytes(x, p)

    def _char_at_or_before(self, p: int, bp: int, b: int) -> int:
        """The last character boundary at or before byte b >= bp (bp: the byte offset of character p)."""
        if self.ascii:
            return b
        if self.char_bytes is not None:
            return bisect_right(self.char_bytes, b) - 1
        return p + len(self.data[bp:b].decode("utf-8", "ignore"))  # a cut character is dropped

    def _char_at_or_after(self, p: int, bp: int, b: int) -> int:
        """The first character boundary at or after byte b <= bp (bp: the byte offset of character p)."""
        if self.ascii:
            return b
        if self.char_bytes is not None:
            return bisect_left(self.char_bytes, b)
        return p - len(self.data[b:bp].decode("utf-8", "ignore"))

    def _cjk(self, a: int, c: int) -> int:
        """CJK characters in text[a:c], as OfflineCounter counts them."""
        if self.ascii:
            return 0
        if self.cjk_before is not None:
            return self.cjk_before[c] - self.cjk_before[a]
        piece = self.text[a:c]
        if piece.isascii() or not _cjk_possible().search(piece):  # one range check per character
            return 0
        return len(CJK.findall(piece))


@functools.cache
def _cjk_possible() -> re.Pattern[str]:
    """Matches any character from the first one offline_counter.CJK matches on."""
    return re.compile(f"[{chr(first_cjk())}-\U0010ffff]")


# -- where tiktoken's pieces always split ----------------------------------------------------------

# Candidates for _is_split, found by the regex engine: the same three rules with Python's \w and
# \s, which are exactly str.isalnum (Unicode L and N) plus "_", and str.isspace. _is_split then
# rules out the unassigned characters that the rules cannot vouch for.
_RULES = r"(?<=[^\W_])(?=[\W_])|(?<=[^\w\s]|_)(?=[ \t])|(?<=[\r\n])(?=[ \t]*\S)"
_NEXT = re.compile(_RULES)
_LAST = re.compile(rf"(?s:.*)(?:{_RULES})")
def _classify(ch: str) -> str:
    if ch.isspace():
        return "s"
    cat = unicodedata.category(ch)
    return "w" if cat[0] in "LN" else "?" if cat == "Cn" else "p"


_KINDS = {chr(i): _classify(chr(i)) for i in range(128)}  # grows with the characters seen


def _kind(ch: str) -> str:
    """'w' letter or digit, 's' whitespace, 'p' anything else, '?' unassigned (kept out)."""
    kind = _KINDS.get(ch)
    if kind is None:
        kind = _classify(ch)
        if len(_KINDS) < 100_000:
            _KINDS[ch] = kind
    return kind


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


def _first_split(text: str, a: int) -> int | None:
    """The first split point in [a, a + SCAN]."""
    if a == 0:
        return 0
    end = min(len(text), a + SCAN)
    pos = a
    while (m := _NEXT.search(text, pos, _reach(text, end))) is not None:
        if _is_split(text, m.start()):
            return m.start()
        pos = m.start() + 1
    return len(text) if end == len(text) else None


def _last_split(text: str, c: int, floor: int) -> int | None:
    """The last split point in [max(floor, c - SCAN), c]."""
    if c >= len(text):
        return len(text)
    lo, hi = max(floor, c - SCAN), c
    while hi >= lo and (m := _LAST.match(text, lo, _reach(text, hi))) is not None:
        if _is_split(text, m.end()):
            return m.end()
        hi = m.end() - 1
    return 0 if lo == 0 else None


def _reach(text: str, hi: int) -> int:
    """Where to stop the regex engine so its look-aheads at hi and before see all they need.

    Only "a line break, then spaces, then text" looks further than one character: past any
    spaces at hi. No position inside those spaces is a split, so going past hi finds none.
    """
    j = hi
    while j < len(text) and text[j] in " \t":
        j += 1
    return min(len(text), j + 1)
