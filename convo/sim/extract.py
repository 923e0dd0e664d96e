"""Extractive summaries that cover a text: its sections in proportion, prose before code.

A text is cut into *sections* (Markdown or underlined headings; without headings, blank-line
blocks; the parts of a map-reduce's combining request), each section into sentences. Code
(fenced blocks, indented or symbol-heavy lines) is left out; boilerplate (URLs, ``Support:``
lines, copyright notices, lines repeated through the text) and fragments (a heading, a sentence
that only introduces an example with ``:``) rank low. Sentences are then picked greedily, in the
way of maximal marginal relevance: the value of a sentence is how central its terms are to its
section and to the text, times how new it is next to the sentences already picked, times a bonus
while its section (and its part) has nothing yet or less than its share of the budget, per token
it costs. No sentence is picked twice (they are compared normalized), and the summary is laid
out in the text's order, a paragraph per section (per part, when combining), within a budget of
tokens. All of it is deterministic: ties go to the earlier sentence.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .text import is_cjk, sentences_of, terms

__all__ = ["Sentence", "normalized", "pick", "render", "sections", "summarize_parts"]

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+\S")
_UNDERLINE = re.compile(r"^\s*([=\-~^*])\1{2,}\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_BULLET = re.compile(r"^\s*(?:[*\-+•·]|\d{1,3}[.)]|\(\d{1,3}\))\s+")
_CODE_START = re.compile(
    r"^\s*(?:>>>|\.\.\.\s|\$ |# ?include\b|def |class \w+[(:]|import \w|from [\w.]+ import|return\b|"
    r"(?:const|let|var|function|public|private|static|async def|fn|func|package|using)\s|"
    r"if\s*\(|for\s*\(|while\s*\(|print\(|console\.|[}\])];?\s*$|<\/?\w+[^>]*>\s*$)"
)
_ASSIGN = re.compile(r"^\s*[\w.\[\]'\"]+\s*(?:[-+*/|&]?=|:=|->|=>)\s*\S")
_URL = re.compile(r"\bhttps?://\S+|\bwww\.\S+|\b[\w.+-]+@[\w-]+\.[\w.]+")
_LABEL = re.compile(r"^[^\W\d][\w .’'\-]{0,30}:\s")
_BOILER = re.compile(
    r"^(?:support|contact|e-?mail|website|homepage|home page|tel|phone|fax|copyright|license|licence|"
    r"source|url|link|download|see also|技术支持|支持|联系方式|网址|官网|邮箱|电话|版权|许可)\s*[:：]"
    r"|copyright|©|all rights reserved|版权所有|保留所有权利",
    re.IGNORECASE,
)
_ASIDE = re.compile(r"^\(?(?:(?:new|changed|deprecated|added) (?:in|since) version|see\b)", re.IGNORECASE)
_BACKREF = re.compile(r"^(?:it|its|this|these|they|their|such|the same)\b", re.IGNORECASE)
_CJK_WORDISH = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CLOSE_EN = (".", "!", "?", '"', "'", "”", "’", ")")
_CLOSE_ZH = ("。", "！", "？", "；", "…", "”", "’", "」", "』", "）", "》")
_NORMAL = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Sentence:
    """One candidate: its text, where it sits (section, part, order) and what it costs."""

    text: str
    section: int
    part: int
    order: int
    terms: frozenset[str]
    quality: float
    key: str


def normalized(sentence: str) -> str:
    """The sentence as compared for repeats: lower case, letters and digits only."""
    return _NORMAL.sub(" ", sentence.lower()).strip()


def is_code(line: str) -> bool:
    """A line of code rather than prose: a prompt or keyword start, an assignment, or few words
    among many symbols."""
    text = line.strip()
    if not text:
        return False
    if _CODE_START.match(line) or (_ASSIGN.match(text) and not _CJK_WORDISH.search(text)):
        return True
    if line.startswith(("    ", "\t")) and not _BULLET.match(line):
        return True
    if _CJK_WORDISH.search(text):
        return False
    symbols = sum(1 for ch in text if ch in "{}[]()<>=;_/\\|&^%$#@~`+*")
    words = len(re.findall(r"[A-Za-z]{3,}", text))
    return symbols >= 4 and symbols > 0.12 * len(text) and words < 8


def quality(sentence: str, repeated: bool) -> float:
    """How much a sentence reads as the text's prose (0 for nothing to say)."""
    zh = bool(_CJK_WORDISH.search(sentence))
    q = 1.0
    if _BOILER.search(sentence):
        q *= 0.05
    if _URL.search(sentence):
        q *= 0.1
    elif _LABEL.match(sentence):
        q *= 0.6
    if _ASIDE.match(sentence):
        q *= 0.1
    if repeated:
        q *= 0.3
    if sentence[:1].islower():
        q *= 0.3
    elif sentence[:1] in "(（[":  # an aside
        q *= 0.5
    elif _BACKREF.match(sentence):
        q *= 0.7
    if sentence.endswith((":", "：")):
        q *= 0.3
    elif not sentence.endswith(_CLOSE_ZH if zh else _CLOSE_EN) and not sentence.endswith(_CLOSE_EN):
        q *= 0.4
    size = len(sentence) / 2 if zh else len(sentence.split())
    if size < 4:
        q *= 0.2
    elif size < 7:
        q *= 0.7
    elif size > 60:
        q *= 0.6
    return q


def _paragraphs(lines: list[str]) -> list[str]:
    """A block's lines as paragraphs: wrapped lines joined, list items kept apart, code dropped."""
    out: list[str] = []
    for line in lines:
        if is_code(line):
            continue
        text = line.strip()
        item = _BULLET.match(line)
        if item:
            out.append(text[item.end() - (len(line) - len(line.lstrip())) :])
        elif out and not out[-1].endswith(_CLOSE_ZH + (":", "：")):
            cjk = _CJK_WORDISH.match(text[:1]) and _CJK_WORDISH.search(out[-1][-1:])
            out[-1] += ("" if cjk else " ") + text
        else:
            out.append(text)
    return out


def headed(lines: Sequence[str]) -> bool:
    """Whether a text (as lines) has headings; without them its sections are its paragraphs."""
    return any(_HEADING.match(line) for line in lines) or any(
        _UNDERLINE.match(b) and a.strip() for a, b in itertools.pairwise(lines)
    )


def sections(text: str) -> list[list[str]]:
    """The text's sections, each a list of its sentences (headings and code left out)."""
    found: list[list[str]] = [[]]
    block: list[str] = []
    fenced = False
    lines = text.split("\n")

    def flush() -> None:
        for para in _paragraphs(block):
            found[-1].extend(sentences_of(para))
        block.clear()

    has_headings = headed(lines)
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        underline = i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line.strip()
        if _HEADING.match(line) or underline:
            flush()
            found.append([])
            continue
        if _UNDERLINE.match(line):
            continue
        if not line.strip():
            flush()
            if not has_headings and found[-1]:
                found.append([])
            continue
        block.append(line)
    flush()
    return [s for s in found if s]


def candidates(parts: Sequence[str]) -> list[Sentence]:
    """The sentences of ``parts`` (one text each), numbered by section and part, repeats once."""
    raw: list[tuple[str, int, int]] = []
    n = 0
    for p, part in enumerate(parts):
        for sec in sections(part):
            raw.extend((s, n, p) for s in sec)
            n += 1
    counts = Counter(normalized(s) for s, _, _ in raw)
    out: list[Sentence] = []
    seen: set[str] = set()
    for s, sec_no, p in raw:
        key = normalized(s)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(Sentence(s, sec_no, p, len(out), frozenset(terms(s)), quality(s, counts[key] > 1), key))
    return out


def _relevance(items: Sequence[Sentence]) -> list[float]:
    """How central each sentence is: its terms' spread through its section and the text."""
    df: Counter[str] = Counter(t for s in items for t in s.terms)
    by_section: dict[int, Counter[str]] = {}
    for s in items:
        by_section.setdefault(s.section, Counter()).update(s.terms)
    firsts: set[int] = set()
    seen_sections: set[int] = set()
    for s in items:
        if s.section not in seen_sections and s.quality >= 0.5:
            seen_sections.add(s.section)
            firsts.add(s.order)
    raw = []
    for s in items:
        sec = by_section[s.section]
        score = sum(sec[t] - 1 + 0.5 * math.log1p(df[t]) for t in s.terms) / math.sqrt(len(s.terms) + 1)
        raw.append(score)
    top = max(raw, default=0.0) or 1.0
    return [r / top + (0.3 if s.order in firsts else 0.0) for r, s in zip(raw, items, strict=True)]


def pick(items: Sequence[Sentence], budget: int, target: int, cost: Callable[[str], int], *,
         cheap: float = 0.6) -> list[Sentence]:  # fmt: skip
    """Sentences within ``budget`` tokens (stopping past ``target``), spread over the sections.

    ``cheap`` is how much shorter sentences are preferred (the exponent of their cost)."""
    pool = [s for s in items if s.quality > 0.15] or list(items)
    if not pool:
        return []
    rel = dict(zip((s.order for s in pool), _relevance(pool), strict=True))
    costs = {s.order: max(1, cost(s.text)) for s in pool}
    size: Counter[int] = Counter()
    for s in pool:
        size[s.section] += costs[s.order]
    whole = sum(size.values()) or 1
    share = {sec: target * n / whole for sec, n in size.items()}
    sections_used: Counter[int] = Counter()
    parts_used: set[int] = set()
    overlap = dict.fromkeys(costs, 0.0)  # the most like any picked sentence: Jaccard over terms
    twin = dict.fromkeys(costs, False)  # a near-copy of a picked sentence of its own section
    n_sections = max(s.section for s in pool) + 1
    far = dict.fromkeys(costs, 1.0)  # distance to the nearest picked section, as a share of all
    chosen: list[Sentence] = []
    left = budget
    used = 0
    remaining = list(pool)
    while remaining and used < target:
        best, best_value = None, 0.0
        for s in remaining:
            c = costs[s.order]
            if c > left or twin[s.order]:
                continue
            spread = 3.0 if not sections_used[s.section] else (1.0 if sections_used[s.section] < share[s.section] else 0.15)
            if s.part not in parts_used:
                spread *= 1.5
            novelty = max(0.2, 1 - overlap[s.order])
            value = (rel[s.order] * s.quality + 0.05) * novelty * spread * (1 + far[s.order]) / c**cheap
            if value > best_value:
                best, best_value = s, value
        if best is None:
            break
        chosen.append(best)
        c = costs[best.order]
        left -= c
        used += c
        sections_used[best.section] += c
        parts_used.add(best.part)
        remaining = [s for s in remaining if s is not best]
        for s in remaining:
            if s.terms and best.terms:
                sim = len(s.terms & best.terms) / len(s.terms | best.terms)
                overlap[s.order] = max(overlap[s.order], sim)
                if sim >= 0.6 and s.section == best.section:
                    twin[s.order] = True
            far[s.order] = min(far[s.order], abs(s.section - best.section) / n_sections)
    return chosen


def _closed(sentence: str, last: bool) -> str:
    """The sentence with an end mark (a list item or a line may have none; a clause that ends a
    paragraph ends with a full stop, not a semicolon)."""
    if last and sentence.endswith(("；", ";")):
        sentence = sentence[:-1]
    elif sentence.endswith(_CLOSE_ZH) or sentence.endswith(_CLOSE_EN):
        return sentence
    cjk = bool(_CJK_WORDISH.search(sentence[-1:]))
    return sentence.rstrip(":：,，;") + ("。" if cjk else ".")


def render(chosen: Sequence[Sentence], prefix: str, *, paragraph: int = 0, by_part: bool = False) -> str:
    """The picked sentences in the text's order after ``prefix``: a paragraph per section, or
    (``paragraph`` > 0) paragraphs of at least that many characters, broken between sections
    (between parts, ``by_part``)."""
    paragraphs: list[list[Sentence]] = []
    last: int | None = None
    size = 0
    for s in sorted(chosen, key=lambda s: s.order):
        group = s.part if by_part else s.section
        if last is None or (group != last and size >= paragraph):
            paragraphs.append([])
            size = 0
        last = group
        paragraphs[-1].append(s)
        size += len(s.text)
    texts = []
    for members in paragraphs:
        para = [_closed(m.text, i == len(members) - 1) for i, m in enumerate(members)]
        out = para[0]
        for sentence in para[1:]:
            glue = "" if out.endswith(_CLOSE_ZH) and _CJK_WORDISH.match(sentence[:1]) else " "
            out += glue + sentence
        texts.append(out)
    return prefix + "\n\n".join(texts)


def summarize_parts(parts: Sequence[str], max_tokens: int, cost: Callable[[str], int], *, zh: bool | None = None,
                    combining: bool = False) -> str:  # fmt: skip
    """The summary of a text given as ``parts`` (one, or the answers a combining request holds).

    A summary runs to about a fifth of the text (half, when combining summaries), at least a few
    sentences, and never past ``max_tokens``. ``zh`` picks the heading's language (default: the
    text's)."""
    whole = "\n\n".join(parts)
    if zh is None:
        zh = is_cjk(whole)
    prefix = "摘要：" if zh else "Summary: "
    items = candidates(parts)
    budget = max_tokens - cost(prefix) - 4
    if not items or budget <= 0:
        return prefix.strip()
    total = sum(cost(s.text) for s in items if s.quality > 0.15) or 1
    cheapest: dict[int, int] = {}  # one sentence per section, at least, when the budget allows
    for s in items:
        if s.quality >= 0.5:
            cheapest[s.section] = min(cheapest.get(s.section, budget), cost(s.text))
    share = round(total * (0.5 if combining else 0.08))
    half = total if combining else max(1, total // 2)  # a summary is shorter than its text
    target = min(budget, max(min(60, half), share, min(sum(cheapest.values()), max(150, 3 * share // 2), half)))
    chosen = pick(items, budget, target, cost, cheap=1.2 if combining else 0.8)
    # A paragraph per section under headings; else (and when combining) a few long ones.
    if combining:
        paragraph = max(1, sum(len(s.text) for s in chosen) // 8)
    else:
        paragraph = 0 if any(headed(p.split("\n")) for p in parts) else 1200
    text = render(chosen, prefix, paragraph=paragraph, by_part=combining)
    while chosen and cost(text) > max_tokens:  # paragraph breaks and end marks cost tokens too
        chosen = chosen[:-1]  # the sentence picked last is worth the least
        text = render(chosen, prefix, paragraph=paragraph, by_part=combining)
    return text if chosen else prefix.strip()
