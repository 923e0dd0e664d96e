"""chunk_text / chunk_file: the limit, exact offsets, full coverage, overlap and where cuts fall."""

from __future__ import annotations

import pydoc_data.topics
import re
from itertools import pairwise
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convo import (
    CachedCounter,
    InvalidConfigError,
    InvalidInputError,
    OfflineCounter,
    _measure,
)
from convo.chunking import Chunk, TextFileError, chunk_file, chunk_text
from convo.tokens import CJK, default_counter, encoding

EN = "\n\n".join(pydoc_data.topics.topics.values())
ZH = (Path(__file__).resolve().parents[1] / "bench" / "data" / "zh_sample.txt").read_text("utf-8")
COUNTER = default_counter()
RAW = OfflineCounter(text_factor=1.0, cjk_factor=0.0)  # exactly tiktoken cl100k tokens
SENTENCE_END = re.compile(r"[.!?。！？:：;；][\"')\]’”」』）》]*\s*$")

# Pieces that exercise tiktoken's pre-tokenizer: words with and without leading spaces, digit
# runs, contractions, punctuation runs, blank lines, CRLF, CJK with its punctuation, emoji
# (with skin tone and ZWJ), combining marks, unusual spaces and Markdown headings.
PIECES = [
    "Hello", " world", " the", "quick", ".", ". ", "! ", "? ", ", ", "'s", "'ll", " 123456", "3.14", "...", "\n",
    "\n\n", "\r\n", "  \n", "\n   ", "\t", "   ", "# Heading\n", "\n## Part 2\n", "e\u0301", "naïve", "中文", "天气",
    "很好", "。", "！", "？", "，", "“", "”", "：", "😀", "👍🏽", "👨\u200d👩\u200d👧", "\u3000", "\u00a0", "ok?!", "—",
    "Ärger", "д", "ё", "ß", "\x0b", "x=1;", "{}", "<a href='#'>", "éé", "-\n",
]


@st.composite
def mixed_text(draw):
    return "".join(draw(st.lists(st.sampled_from(PIECES), max_size=120)))


def check(text: str, chunks: list[Chunk], limit: int, overlap: int = 0, counter=COUNTER) -> None:
    """Every invariant chunk_text promises."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    if not text:
        assert chunks == []
        return
    assert chunks[0].start == 0 and chunks[-1].end == len(text)  # covers the whole text ...
    for c in chunks:
        assert c.start < c.end and text[c.start : c.end] == c.text
        assert c.tokens == counter.count_text(c.text) <= limit
        assert "\ufffd" not in c.text or "\ufffd" in text
    for prev, nxt in pairwise(chunks):
        assert prev.start < nxt.start <= prev.end < nxt.end  # ... with no gap, always moving on
        if overlap == 0:
            assert nxt.start == prev.end
        else:
            assert counter.count_text(text[nxt.start : prev.end]) <= overlap


# -- properties -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_text(), st.integers(8, 80), st.data())
def test_random_text_invariants(text, limit, data):
    overlap = data.draw(st.sampled_from([0, 0, 1, limit // 4, limit - 1]))
    check(text, chunk_text(text, limit, overlap), limit, overlap)


@settings(max_examples=100, deadline=None)
@given(mixed_text(), st.integers(8, 80))
def test_raw_tiktoken_counter_invariants(text, limit):
    chunks = chunk_text(text, limit, counter=RAW)
    check(text, chunks, limit, counter=RAW)
    assert all(c.tokens == len(encoding().encode_ordinary(c.text)) for c in chunks)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["en", "zh"]), st.integers(0, 10**9), st.integers(200, 6000), st.integers(16, 400), st.data())
def test_real_text_invariants(lang, seed, length, limit, data):
    source = EN if lang == "en" else ZH * 3
    start = seed % max(1, len(source) - length)
    text = source[start : start + length]
    overlap = data.draw(st.sampled_from([0, limit // 8, limit // 2]))
    check(text, chunk_text(text, limit, overlap), limit, overlap)


@pytest.mark.parametrize("limit", [128, 512, 2000])
def test_whole_real_documents(limit):
    for text in (EN, ZH * 20):
        chunks = chunk_text(text, limit)
        check(text, chunks, limit)
        assert sum(c.tokens for c in chunks) >= COUNTER.count_text(text) * 0.97  # no token counted twice
        assert len(chunks) <= COUNTER.count_text(text) / (limit * 0.5) + 2  # chunks are well filled


def test_cuts_fall_at_sentence_or_paragraph_ends():
    for text in (EN, ZH * 20):
        chunks = chunk_text(text, 512)
        clean = sum(bool(SENTENCE_END.search(text[: c.end]) or "\n\n" in text[c.end - 2 : c.end + 2]) for c in chunks[:-1])
        assert clean >= 0.9 * (len(chunks) - 1)


def test_overlap_on_real_text():
    chunks = chunk_text(EN, 512, overlap=64)
    check(EN, chunks, 512, overlap=64)
    shared = [COUNTER.count_text(EN[b.start : a.end]) for a, b in pairwise(chunks)]
    assert min(shared) > 0 and sum(shared) / len(shared) > 32  # neighbours really share text


# -- the one-pass measure (convo._measure) ----------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(mixed_text(), st.integers(8, 80), st.sampled_from([0, 3]))
def test_dense_and_sparse_text_paths_agree(text, limit, overlap):
    # Dense non-Latin text gets per-character running sums up front, other text is measured
    # chunk by chunk: both must give the same chunks.
    results = []
    for dense in (0.0, float("inf")):
        with mock.patch.object(_measure, "_DENSE", dense):
            results.append(chunk_text(text, limit, overlap))
    check(text, results[0], limit, overlap)
    assert results[0] == results[1]


@settings(max_examples=150, deadline=None)
@given(mixed_text(), st.data())
def test_split_points_are_found_as_one_by_one_would(text, data):
    # The regex engine finds the places where tiktoken's pieces always split; checking each
    # position with _is_split is the slow definition it must agree with.
    splits = [m for m in range(len(text) + 1) if _measure._is_split(text, m)]
    a, scan = data.draw(st.integers(0, len(text))), data.draw(st.sampled_from([1, 3, 16, _measure.SCAN]))
    floor = data.draw(st.integers(0, a))
    window = [m for m in splits if a <= m <= a + scan]
    before = [m for m in splits if max(floor, a - scan) <= m <= a]
    with mock.patch.object(_measure, "SCAN", scan):  # small windows: their edges get tested too
        assert _measure._first_split(text, a) == (window[0] if window else None)
        assert _measure._last_split(text, a, floor) == (before[-1] if before else None)


def test_cjk_count_and_estimate_match_the_counter():
    sample = "".join(PIECES) + ZH[:2000] + "\U00020000\u2e80\u4dbf\uac00\U0001f600\U0002fa1f\U0002fa20"
    dense = _measure.OfflineMeasure(sample, OfflineCounter(), 100)  # per-character running sums
    sparse = _measure.OfflineMeasure(EN[:20000] + sample, OfflineCounter(), 100)  # chunk by chunk
    assert dense.cjk_before is not None and sparse.cjk_before is None
    counter = OfflineCounter()
    for a, c in [(0, len(sample)), (5, 700), (len(sample) - 9, len(sample))]:
        piece = sample[a:c]
        assert dense._cjk(a, c) == len(CJK.findall(piece)) == sparse._cjk(20000 + a, 20000 + c)
        bpe = len(encoding().encode_ordinary(piece))
        assert counter.estimate(bpe, len(CJK.findall(piece))) == counter.count_text(piece)
    assert counter.estimate(0, 0) == counter.count_text("") == 0


# -- where cuts fall ------------------------------------------------------------------------------

SENT = "The committee reviewed the proposal in detail and asked for a revised budget. "


def test_paragraph_break_beats_a_later_sentence_end():
    text = SENT * 6 + "\n\n" + SENT * 20
    first = chunk_text(text, 150)[0]
    assert first.text == SENT * 6 + "\n\n"  # not the later sentence ends that would also fit


def test_sentence_end_beats_a_paragraph_break_in_the_first_half():
    text = SENT + "\n\n" + SENT * 30
    first = chunk_text(text, 150)[0]
    assert first.end > len(SENT) + 2 and first.text.endswith("budget.")


def test_sentence_end_beats_a_later_word():
    text = (SENT * 10).replace(". ", ", and then ") + ". " + SENT * 10
    first = chunk_text(text, 200)[0]
    assert first.text.rstrip().endswith(".")


def test_word_beats_a_token_cut():
    text = " ".join(["supercalifragilistic"] * 400)  # no sentence ends at all
    chunks = chunk_text(text, 64)
    check(text, chunks, 64)
    assert all(text[c.end] == " " for c in chunks[:-1])  # a cut before a space, never mid-word


def test_tokens_as_the_last_resort_never_split_a_character():
    for text in ("x" * 5000, "天" * 3000, "😀" * 800 + "👨\u200d👩\u200d👧" * 300, "\u0301" * 2000):
        chunks = chunk_text(text, 20)
        check(text, chunks, 20)


def test_chinese_cuts_at_chinese_sentence_ends():
    text = "今天天气很好，我们去公园散步。" * 200
    chunks = chunk_text(text, 100)
    check(text, chunks, 100)
    assert all(c.text.endswith("。") for c in chunks)


def test_markdown_heading_starts_a_chunk():
    text = "Intro line one.\nIntro line two goes on for a while here.\n" * 8 + "# Usage\n\n" + SENT * 30
    first, second = chunk_text(text, 200)[:2]
    assert second.text.startswith("# Usage")
    assert first.end == text.index("# Usage")


def test_line_breaks_stay_with_the_chunk_they_end():
    text = (SENT * 4 + "\n\n") * 20
    for c in chunk_text(text, 100)[:-1]:
        assert c.text.endswith("\n\n") or c.text.endswith(".")


# -- counters -------------------------------------------------------------------------------------


class WordCounter:
    """A counter that only has count_text: one token per whitespace-separated word."""

    def count_text(self, text: str) -> int:
        return len(text.split())


def test_custom_counter_is_respected():
    counter = WordCounter()
    for text in (EN[:20000], ZH[:3000], "word " * 1000):
        chunks = chunk_text(text, 50, counter=counter)
        check(text, chunks, 50, counter=counter)
    overlapping = chunk_text(EN[:20000], 50, overlap=10, counter=counter)
    check(EN[:20000], overlapping, 50, overlap=10, counter=counter)


def test_cached_and_custom_offline_counters_take_the_exact_path():
    for counter in (CachedCounter(OfflineCounter()), OfflineCounter(text_factor=1.3, cjk_factor=-0.3)):
        text = EN[:30000] + ZH[:3000]
        check(text, chunk_text(text, 300, counter=counter), 300, counter=counter)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"text": b"bytes"}, InvalidInputError, "decode it first"),
        ({"text": None}, InvalidInputError, "needs a str"),
        ({"max_tokens": 0}, InvalidConfigError, "must be positive"),
        ({"max_tokens": 1.5}, InvalidConfigError, "must be an int"),
        ({"max_tokens": True}, InvalidConfigError, "must be an int"),
        ({"overlap": -1}, InvalidConfigError, "0 or more"),
        ({"max_tokens": 100, "overlap": 100}, InvalidConfigError, "smaller than max_tokens"),
        ({"counter": object()}, InvalidConfigError, "count_text"),
        ({"max_tokens": 1}, InvalidConfigError, "too small"),
        ({"text": "ok \ud800 no"}, InvalidInputError, "lone surrogate"),
    ],
)
def test_bad_arguments(kwargs, error, fragment):
    args = {"text": "Some text.", "max_tokens": 10} | kwargs
    with pytest.raises(error, match=fragment):
        chunk_text(**args)


def test_empty_text():
    assert chunk_text("") == []


def test_chunk_file_reads_utf8_and_markdown(tmp_path):
    doc = tmp_path / "notes.md"
    text = "# Notes\n\n" + ZH[:3000] + "\n\n## English\n\n" + EN[:5000]
    doc.write_bytes(b"\xef\xbb\xbf" + text.encode())  # with a byte-order mark, dropped
    chunks = chunk_file(doc, 200)
    assert chunks == chunk_text(text, 200)
    check(text, chunks, 200)


@pytest.mark.parametrize(
    ("content", "offset", "fragment"),
    [
        (b"%PDF-1.7\n\x00\x01binary", 9, "looks binary"),
        (b"caf\xc3\xa9 ok then \xff bad", 14, "not UTF-8"),
        (b"cut in the middle \xe4\xb8", 18, "not UTF-8"),
    ],
)
def test_chunk_file_rejects_binary_and_non_utf8(tmp_path, content, offset, fragment):
    path = tmp_path / "file.txt"
    path.write_bytes(content)
    with pytest.raises(TextFileError, match=fragment) as info:
        chunk_file(path)
    assert info.value.offset == offset and f"byte offset {offset}" in str(info.value)
    assert isinstance(info.value, InvalidInputError)


def test_chunk_file_missing_or_directory(tmp_path):
    with pytest.raises(TextFileError, match="no such file"):
        chunk_file(tmp_path / "missing.txt")
    with pytest.raises(TextFileError, match="is a directory"):
        chunk_file(tmp_path)


# -- numpy is optional: the pure-Python running sums are the same numbers --------------------------

_MIXED = st.text(alphabet=st.sampled_from(list("ab Z9.,!?\n\t#") + list("中文。，日本語のテキスト한국어") + ["😀", "𠀋", "é", "ß"]),
                 max_size=400)


@given(_MIXED)
@settings(max_examples=60, deadline=None)
def test_pure_python_token_starts_equal_numpy(text):
    pytest.importorskip("numpy")
    from convo import _sums

    n1, with_numpy = _sums.token_starts(text, use_numpy=True)
    n2, pure = _sums.token_starts(text, use_numpy=False)
    assert n1 == n2 and with_numpy.tolist() == pure.tolist()
    assert pure[n2] == len(text.encode())  # the last start is the text's size in bytes


@given(_MIXED)
@settings(max_examples=60, deadline=None)
def test_pure_python_char_sums_equal_numpy(text):
    pytest.importorskip("numpy")
    from convo import _sums
    from convo.tokens import CJK

    numpy_sums = [m.tolist() for m in _sums.char_sums(text, use_numpy=True)]
    pure_sums = [m.tolist() for m in _sums.char_sums(text, use_numpy=False)]
    assert numpy_sums == pure_sums
    byte_at, cjk_before = pure_sums
    assert byte_at[-1] == len(text.encode()) and cjk_before[-1] == len(CJK.findall(text))
    assert CJK.match(chr(_sums.first_cjk())) and not any(CJK.match(chr(c)) for c in range(_sums.first_cjk()))
