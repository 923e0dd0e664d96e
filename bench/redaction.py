"""How well and how fast does convo's Redactor find sensitive data?

1. Precision and recall per kind on the labeled set in ``tests/data/redaction_cases.py``
   (sentences with known values, and look-alikes that must be left alone). A value counts as
   found when a finding of the right kind covers exactly its characters.
2. How often random digit strings are taken for a card, an ID or an SSN: the floor on false
   positives that checksums leave (a random number passes Luhn one time in ten).
3. Throughput on 1 MB texts (English prose with values sprinkled in, Chinese prose, log lines).

Run: ``python bench/redaction.py`` (``--quick`` for a smoke run that writes nothing). Writes
``bench/results/redaction.md``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import os
import platform
import random
import statistics
import time
from collections import Counter
from pathlib import Path

import convo
from convo.redact import KINDS, Redactor

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results") / "redaction.md"


def load_cases() -> list[dict]:
    spec = importlib.util.spec_from_file_location("redaction_cases", ROOT / "tests" / "data" / "redaction_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.cases()


def quality(cases: list[dict]) -> tuple[list[list[str]], list[str]]:
    redactor = Redactor()
    tp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fp_notes: list[str] = []
    for case in cases:
        text = case["text"]
        got = {(f.kind, text[f.start : f.end]) for f in redactor.scan(text)}
        want = set(case["labels"])
        for kind, value in want:
            (tp if (kind, value) in got else fn)[kind] += 1
        for kind, value in got - want:
            fp[kind] += 1
            fp_notes.append(f"{kind} on `{value}` ({case['category']})")
    rows = []
    for kind in (*KINDS, "all"):
        t = sum(tp.values()) if kind == "all" else tp[kind]
        n = sum(fn.values()) if kind == "all" else fn[kind]
        f = sum(fp.values()) if kind == "all" else fp[kind]
        precision = t / (t + f) if t + f else 1.0
        recall = t / (t + n) if t + n else 1.0
        rows.append([kind, str(t + n), str(t), str(n), str(f), f"{precision:.1%}", f"{recall:.1%}"])
    return rows, fp_notes


def negatives(cases: list[dict]) -> list[list[str]]:
    redactor = Redactor()
    seen: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    for case in cases:
        if not case["labels"]:
            seen[case["category"]] += 1
            flagged[case["category"]] += bool(redactor.scan(case["text"]))
    return [[cat, str(seen[cat]), str(flagged[cat])] for cat in sorted(seen)]


def random_numbers(n: int) -> list[list[str]]:
    """Share of uniformly random strings that a kind claims."""
    rng = random.Random(7)
    redactor = Redactor()

    def rate(make, kind: str) -> str:
        hits = sum(any(f.kind == kind for f in redactor.scan(f"ref {make()} ok")) for _ in range(n))
        return f"{hits / n:.2%}"

    digits = lambda k: "".join(rng.choice("0123456789") for _ in range(k))
    return [
        ["16 random digits", "CARD", rate(lambda: digits(16), "CARD"), "Luhn passes 1 in 10; network prefixes and lengths cut that further"],
        ["16 digits as 4-4-4-4", "CARD", rate(lambda: " ".join(digits(4) for _ in range(4)), "CARD"), "same, printed like a card"],
        ["13-19 random digits", "CARD", rate(lambda: digits(rng.randint(13, 19)), "CARD"), ""],
        ["18 random digits", "CN_ID", rate(lambda: digits(18), "CN_ID"), "needs a province, a real birth date and the check character"],
        ["3-2-4 random digits", "SSN", rate(lambda: f"{digits(3)}-{digits(2)}-{digits(4)}", "SSN"), "any issuable SSN is taken: the format is the signal"],
        ["11 digits 1[3-9]...", "PHONE", rate(lambda: "1" + rng.choice("3456789") + digits(9), "PHONE"), "any such number is a possible Chinese mobile"],
    ]


def corpus(kind: str, size: int) -> str:
    rng = random.Random(11)
    values = ["ann@example.com", "+1 415 555 2671", "4111 1111 1111 1111", "192.168.0.1", "13812345678",
              "11010519491231002X", "123-45-6789", "AKIAIOSFODNN7EXAMPLE"]
    if kind == "english":
        words = ["the", "a", "of", "to", "and", "in", "is", "on", "for", "with", "order", "version", "1.2.3", "at",
                 "10:30", "on", "2024-01-15", "deploy", "cafe", "bead", "total", "42", "items", "3.14", "percent",
                 "note:", "see", "the", "logs"]
    elif kind == "chinese":
        words = ["我们", "今天", "讨论", "了", "订单", "问题", "，", "请", "在", "下午", "3点", "前", "回复", "。", "版本", "2.1"]
    else:
        words = ["2024-01-15T10:30:00Z", "INFO", "GET", "/api/v1/items/12345", "200", "12ms", "user=42",
                 "req=9f2c1a7e", "host=web-3", "ERROR", "retry=2", "\n"]
    parts, n = [], 0
    while n < size:
        word = rng.choice(values) if rng.random() < 0.01 else rng.choice(words)
        parts.append(word)
        n += len(word) + 1
    return " ".join(parts)[:size]


def speed(repeats: int, size: int) -> list[list[str]]:
    rows = []
    for kind in ("english", "chinese", "logs"):
        text = corpus(kind, size)
        for mode in ("mask", "placeholder"):
            redactor = Redactor(mode=mode)
            redactor.redact(text)  # warm-up
            times = []
            gc.disable()
            try:
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    result = redactor.redact(text)
                    times.append(time.perf_counter() - t0)
            finally:
                gc.enable()
            median = statistics.median(times)
            rows.append([kind, mode, f"{len(text) / 1e6:.2f}", f"{median * 1000:.0f}", f"{len(text) / 1e6 / median:.1f}",
                         f"{len(result.findings):,}"])
    return rows


def table(header: list[str], rows: list[list[str]], align: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run, print only")
    args = parser.parse_args()
    cases = load_cases()
    positives = sum(1 for c in cases if c["labels"])
    rows, fp_notes = quality(cases)
    neg_rows = negatives(cases)
    rand_rows = random_numbers(2000 if args.quick else 20000)
    speed_rows = speed(2 if args.quick else 7, 100_000 if args.quick else 1_000_000)

    cpu = platform.processor() or platform.machine()
    out = [
        "# Redaction: precision, recall and speed of `convo.redact.Redactor`",
        "",
        (f"Python {platform.python_version()} ({platform.python_implementation()}), {os.cpu_count()} CPUs ({cpu}), "
         f"{platform.system()} {platform.release()}; convo {convo.__version__}; "
         f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"),
        "",
        (f"Labeled set: `tests/data/redaction_cases.py`, {len(cases)} texts — {positives} with sensitive values, "
         f"{len(cases) - positives} look-alikes. A value is found when a finding of its kind covers exactly its "
         "characters; anything else reported is a false positive. The set was written with the detectors, so "
         "these numbers show the rules work as documented, not how they fare on unseen text."),
        "",
        table(["kind", "values", "found", "missed", "false positives", "precision", "recall"], rows, "lrrrrrr"),
        "",
        "False positives: " + ("; ".join(fp_notes) if fp_notes else "none") + ".",
        "",
        "Look-alikes by category (texts with no sensitive value; any finding is a false positive):",
        "",
        table(["category", "texts", "texts with a finding"], neg_rows, "lrr"),
        "",
        (f"Random strings ({2000 if args.quick else 20000:,} each, fixed seed), in `ref ... ok`: the share a kind "
         "claims. Checksums cannot do better than this floor; context (\"card\", \"SSN\") is not used."),
        "",
        table(["input", "kind", "claimed", "why"], rand_rows, "llrl"),
        "",
        ("Speed: median of repeated `redact` calls on about 1 MB (1% of tokens are sensitive values), "
         "`time.perf_counter`, gc disabled. No peer is measured here: the candidates (Presidio, scrubadub) "
         "need NLP models or extra dependencies that the bench extra does not install."),
        "",
        table(["text", "mode", "MB", "median ms", "MB/s", "findings"], speed_rows, "llrrrr"),
        "",
    ]
    report = "\n".join(out)
    print(report)
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(report)
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
