"""The offline model's reading of text: languages, sentences, key terms, stream pieces, and
the turns of a request (their text, and whether the last one asks to continue)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .turns import Turn

__all__ = [
    "as_turns", "inner_text", "is_cjk", "is_continuation", "sentences_of", "split_deltas", "split_sentences",
    "summary_source", "terms", "turn_text",
]  # fmt: skip

_CJK_CHARS = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_PIECE = re.compile(f"[{_CJK_CHARS}]{{1,3}}[^\\S\\n]*|[^\\s{_CJK_CHARS}]+\\s*|\\s+")
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")
_INTENT = re.compile(
    r"\b(?:summar(?:y|ies|ize|ized|izing|ise|ised|ising)|analy[sz]e|analysis|tl;?dr)\b|总结|摘要|概括|概述|归纳|分析",
    re.IGNORECASE,
)
_SAY = re.compile(r"""\b(?:say|reply with|respond with|repeat)\s*:?\s*["“]([^"”]+)["”]""", re.IGNORECASE)
_STOPWORDS = frozenset(
    ["a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves", "please", "text", "following", "below", "above", "tell", "me", "let", "us", "use", "one", "two", "like", "get", "got", "make", "made", "may", "might", "must", "shall", "want", "s", "t", "don", "isn", "it's", "i'm", "that's", "there's"]
)
_ZH_STOP = frozenset("的了和是在我有你他她它这那也就都而及与着或一个上下不人们之为以于中".replace(" ", ""))


def is_cjk(text: str) -> bool:
    """True when CJK characters make up a good share of the text's letters."""
    if text.isascii():
        return False
    cjk = len(_CJK.findall(text))
    letters = sum(1 for ch in text if ch.isalpha())
    return cjk > 0 and cjk >= 0.3 * max(1, letters)


def split_deltas(text: str) -> list[str]:
    """The text as stream deltas: words with their trailing space, or 1-3 CJK characters."""
    return _PIECE.findall(text)


_LABEL = re.compile(r"^\s*(?:Summary:|摘要：)\s*")


#: Where a sentence ends: CJK marks (no space needed), or Latin marks before a space.
_END = re.compile(r"[。！？；…]+[”’」』）》\"')]*\s*|[!?！？]+[\"'”’)\]]*\s+|\.+[\"'”’)\]]*\s+")
_ABBREV = frozenset(["e.g", "i.e", "etc", "vs", "cf", "mr", "mrs", "ms", "dr", "st", "no", "fig", "al", "approx", "resp"])


def sentences_of(line: str) -> list[str]:
    """The sentences of one line of text, each with its end mark; never split inside a word,
    after an abbreviation (``e.g.``, ``Dr.``) or an initial, or before a lower-case word."""
    out: list[str] = []
    start = 0
    for m in _END.finditer(line):
        end = m.end()
        if m.group().startswith("."):
            before = line[start : m.start()].rsplit(None, 1)
            word = before[-1].lower().lstrip("(\"'“‘") if before else ""
            following = line[end : end + 1]
            if word in _ABBREV or (len(word) == 1 and word.isalpha()) or following.islower():
                continue
        piece = line[start:end].strip()
        if piece:
            out.append(piece)
        start = end
    rest = line[start:].strip()
    if rest:
        out.append(rest)
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences, line by line (a line break always ends one)."""
    return [s for line in text.split("\n") for s in sentences_of(line)]


def terms(sentence: str) -> list[str]:
    """The words a sentence is scored by: content words, and Han character bigrams."""
    words = [w for w in _WORD.findall(sentence.lower()) if len(w) > 2 and w not in _STOPWORDS]
    for run in _HAN.findall(sentence):
        if len(run) == 1:
            words.append(run)
        words.extend(a + b for a, b in itertools.pairwise(run) if a not in _ZH_STOP and b not in _ZH_STOP)
    return words


def as_turns(messages: Sequence[Turn | Mapping[str, Any]]) -> list[Turn]:
    """Turns from turns or API-shaped message dicts (string content becomes one text block)."""
    out = []
    for m in messages:
        if isinstance(m, Turn):
            out.append(m)
            continue
        content = m.get("content")
        blocks = ({"type": "text", "text": content},) if isinstance(content, str) else tuple(dict(b) for b in content or ())
        out.append(Turn(str(m.get("role")), blocks))
    return out


def inner_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content or () if isinstance(b, Mapping) and b.get("type") == "text")


def turn_text(turn: Turn) -> str:
    """All text a turn carries: text blocks, text documents and tool results."""
    parts: list[str] = []
    for block in turn.blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append(block["text"])
        elif kind == "document":
            src = block.get("source") or {}
            if src.get("type") == "text":
                parts.append(src.get("data") or "")
            elif src.get("type") == "content":
                parts.append(inner_text(src.get("content")))
        elif kind == "tool_result":
            parts.append(inner_text(block.get("content")))
    return "\n\n".join(p for p in parts if p)


_CONTINUE = re.compile(r"\bcontinu(?:e|ing)\b|\bresume\b|\bkeep going\b|\bcarry on\b|继续", re.IGNORECASE)


def is_continuation(turns: Sequence[Turn]) -> bool:
    """A continuation request: a user message asking to go on, right after an assistant turn with text."""
    if len(turns) < 3 or turns[-1].role != "user" or turns[-2].role != "assistant":
        return False
    last = turns[-1]
    return not last.tool_result_ids() and bool(_CONTINUE.search(last.text)) and bool(turns[-2].text)


_ANSWER = re.compile(r'<answer part="[^"]*">\n?(.*?)\n?</answer>', re.DOTALL)
_DOCUMENT = re.compile(r"<document\b[^>]*>\n?(.*?)\n?</document>", re.DOTALL)


def _at_colon(sentence: str) -> tuple[str, str, str]:
    """An instruction sentence cut after its first colon ("总结一下：今天…" holds text too)."""
    m = re.search(r"[:：]", sentence)
    return (sentence[: m.start()], m.group(), sentence[m.end() :]) if m else (sentence, "", "")


def summary_source(last: str, earlier: Sequence[str]) -> tuple[list[str], str, bool]:
    """What a request asks to summarize: (parts, instruction, combining). The parts are the
    ``<answer>`` blocks of a combining request (their ``Summary:`` labels dropped), the
    ``<document>`` blocks of the message ``last``, the message without its instruction, or the
    ``earlier`` turns' text when the message is only the instruction."""
    answers = _ANSWER.findall(last)
    docs = [] if answers else _DOCUMENT.findall(last)
    if answers or docs:
        instruction = _DOCUMENT.sub(" ", _ANSWER.sub(" ", last))
        task = instruction.rsplit("The task:", 1)
        return [_LABEL.sub("", t) for t in answers or docs], task[-1].strip(), bool(answers)
    kept: list[str] = []
    said: list[str] = []
    for line in last.split("\n"):
        if not _INTENT.search(line):
            kept.append(line)
            continue
        rest: list[str] = []
        for sentence in sentences_of(line):
            if not (_INTENT.search(sentence) and len(terms(sentence)) <= 12):
                rest.append(sentence)
                continue
            ask, colon, after = _at_colon(sentence)
            said.append(ask + colon)
            if after.strip() and not _INTENT.search(after):
                rest.append(after.strip())
        kept.append(" ".join(rest))
    source = "\n".join(kept).strip()
    if len(split_sentences(source)) >= 2 or len(source) > 200:
        return [source], " ".join(said), False
    text = "\n\n".join(t for t in earlier if t)
    return ([text] if text else [source] if source else []), " ".join(said), False
