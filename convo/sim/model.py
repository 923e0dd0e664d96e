"""The offline model: a deterministic, useful stand-in for Claude.

* Asked to summarize or analyze a text (summarize, summary, analyze, tl;dr, 总结, 摘要, 概括,
  分析 …), it answers with an extractive summary: the most salient sentences of that text by a
  word-frequency score, in their original order, within ``max_tokens``, in the text's language
  (English or Chinese; CJK is detected). The text is the rest of the last user message, or the
  earlier conversation when the message is only the instruction.
* Asked to ``say "…"`` (or ``reply with "…"`` / ``repeat "…"``), it says exactly that.
* Given ``tools``, it calls one when ``tool_choice`` forces it or the last user message names
  it ("use get_weather for Paris"): a short text block, then ``tool_use`` blocks (see
  :mod:`convo.sim.blocks`). Given tool results, it reports them ("The result is: …").
* With ``thinking`` on, the reply starts with a thinking block: a few sentences of reasoning
  and a signature.
* After a prefilled assistant turn it continues: when the prefill is the start of the answer
  it would have given, it sends exactly the rest, then the same tool calls (so a resumed
  stream can be stitched).
* Otherwise it acknowledges the last message: its key words and a short paraphrase, with the
  wording picked by a generator seeded from ``seed`` and the conversation.

The reply is cut at the first stop sequence and at ``max_tokens`` (counted with convo's own
counter, over thinking, text and tool input alike), and split into deltas: a word at a time,
or a few characters at a time for CJK.
"""

from __future__ import annotations

import json
import math
import random
import re
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..messages import DocumentBlock, Message, TextBlock, ToolResultBlock
from ..tokens import TokenCounter, default_counter
from .blocks import (
    Block,
    Reply,
    ToolCall,
    json_chunks,
    pick_tools,
    thinking_signature,
    tool_id,
)

__all__ = ["Block", "OfflineModel", "Reply", "split_deltas"]

_CJK_CHARS = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
_CJK = re.compile(f"[{_CJK_CHARS}]")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_PIECE = re.compile(f"[{_CJK_CHARS}]{{1,3}}[^\\S\\n]*|[^\\s{_CJK_CHARS}]+\\s*|\\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])|\n+")
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")
_INTENT = re.compile(
    r"\b(?:summar(?:y|ies|ize|ized|izing|ise|ised|ising)|analy[sz]e|analysis|tl;?dr)\b|总结|摘要|概括|概述|归纳|分析",
    re.IGNORECASE,
)
_SAY = re.compile(r"""\b(?:say|reply with|respond with|repeat)\s*:?\s*["“]([^"”]+)["”]""", re.IGNORECASE)
_STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves please text following below above tell me let us use one
    two like get got make made may might must shall want s t don isn it's i'm that's there's""".split()
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


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _terms(sentence: str) -> list[str]:
    """The words a sentence is scored by: content words, and Han character bigrams."""
    words = [w for w in _WORD.findall(sentence.lower()) if len(w) > 2 and w not in _STOPWORDS]
    for run in _HAN.findall(sentence):
        if len(run) == 1:
            words.append(run)
        words.extend(a + b for a, b in zip(run, run[1:]) if a not in _ZH_STOP and b not in _ZH_STOP)
    return words


def _message_text(message: Message) -> str:
    """All text a message carries: text blocks, text documents and tool results."""
    if isinstance(message.content, str):
        return message.content
    parts: list[str] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, DocumentBlock):
            src = block.source
            if src.type == "text":
                parts.append(src.data)
            elif src.type == "content":
                inner = src.content
                parts.append(inner if isinstance(inner, str) else "\n".join(getattr(b, "text", "") for b in inner))
        elif isinstance(block, ToolResultBlock):
            c = block.content
            if isinstance(c, str):
                parts.append(c)
            elif c:
                parts.extend(b.text for b in c if isinstance(b, TextBlock))
    return "\n\n".join(p for p in parts if p)


class OfflineModel:
    """Deterministic replies for a seed; see the module docstring for what it says.

    ``counter`` counts output tokens (and enforces ``max_tokens``); it defaults to convo's
    process-wide offline counter, so ``usage`` agrees with :func:`convo.count_tokens`.
    """

    def __init__(self, seed: int = 0, counter: TokenCounter | None = None) -> None:
        self.seed = seed
        self.counter = counter if counter is not None else default_counter()

    def __repr__(self) -> str:
        return f"OfflineModel(seed={self.seed})"

    # -- the whole answer ----------------------------------------------------------------

    def compose(self, messages: Sequence[Message], max_tokens: int = 1024) -> str:
        """The unbounded answer to a conversation (before stop sequences and max_tokens)."""
        users = [m for m in messages if m.role == "user"]
        results = _results(users[-1]) if users else []
        if results:
            return _report(results)
        last = _message_text(users[-1]) if users else ""
        said = _SAY.search(last)
        if said:
            return said.group(1)
        if _INTENT.search(last):
            source = self._source(last, messages)
            if source:
                return self.summarize(source, max_tokens)
        return self._acknowledge(last, messages)

    def _source(self, last: str, messages: Sequence[Message]) -> str:
        """The text to summarize: the last message without its instruction, or what came before."""
        sentences = split_sentences(last)
        rest = [s for s in sentences if not (_INTENT.search(s) and len(_terms(s)) <= 12)]
        if len(rest) >= 2 or (rest and len(rest[0]) > 200):
            return "\n".join(rest)
        earlier = [_message_text(m) for m in messages[:-1] if m is not messages[-1]]
        if messages and messages[-1].role == "assistant":  # a prefill: skip it and the instruction
            earlier = [_message_text(m) for m in messages[:-2]]
        text = "\n".join(t for t in earlier if t)
        return text or "\n".join(rest)

    def summarize(self, text: str, max_tokens: int = 1024) -> str:
        """An extractive summary of ``text`` in its language, fitting ``max_tokens``."""
        # Summaries of summaries (a map-reduce's combine step) must not repeat the labels.
        sentences = [s for s in (_LABEL.sub("", x) for x in split_sentences(text)) if s.strip()]
        zh = is_cjk(text)
        prefix = "摘要：" if zh else "Summary: "
        if not sentences:
            return prefix.strip()
        terms = [_terms(s) for s in sentences]
        freq = Counter(t for ts in terms for t in ts)
        top = max(freq.values(), default=1)

        def score(i: int) -> float:
            ts = terms[i]
            if not ts:
                return 0.0
            return sum(freq[t] / top for t in ts) / math.sqrt(len(ts))

        want = max(1, min(6, round(len(sentences) * 0.3)))
        budget = max_tokens - self.counter.count_text(prefix)
        chosen: list[int] = []
        used = 0
        for i in sorted(range(len(sentences)), key=lambda i: (-score(i), i)):
            if len(chosen) >= want:
                break
            cost = self.counter.count_text(sentences[i])
            if chosen and used + cost > budget:
                continue
            chosen.append(i)
            used += cost
        joiner = "" if zh else " "
        return prefix + joiner.join(sentences[i] for i in sorted(chosen))

    def _acknowledge(self, last: str, messages: Sequence[Message]) -> str:
        key = f"{self.seed}\x00{len(messages)}\x00{last}".encode()
        rng = random.Random(zlib.crc32(key))
        words = _terms(last)
        counts = Counter(words)
        keywords = sorted(dict.fromkeys(words), key=lambda w: -counts[w])[:3]
        turn = sum(1 for m in messages if m.role == "user")
        if is_cjk(last):
            opener = rng.choice(["好的。", "明白了。", "收到。", "谢谢你的消息。"])
            parts = [opener]
            if keywords:
                parts.append(f"你提到了{'、'.join(keywords)}。")
            gist = re.sub(r"\s+", "", last)[:40].rstrip("。！？!?.，,")
            if gist:
                parts.append(f"我的理解是：{gist}。")
            parts.append(f"这是我们对话的第{turn}轮。")
            parts.append(rng.choice(["如果需要更多细节，请告诉我。", "接下来想做什么？", "还有什么我可以帮忙的吗？"]))
            return "".join(parts)
        opener = rng.choice(["Got it.", "Understood.", "Thanks for the message.", "Sure."])
        parts = [opener]
        if keywords:
            listed = keywords[0] if len(keywords) == 1 else ", ".join(keywords[:-1]) + " and " + keywords[-1]
            parts.append(f"You mentioned {listed}.")
        gist = " ".join(last.split()[:25]).rstrip(".!?,;:")
        if gist:
            parts.append(f'Here is what I took from it: "{gist}".')
        parts.append(f"This is turn {turn} of our conversation.")
        parts.append(
            rng.choice(
                [
                    "Let me know if you want more detail.",
                    "What would you like to do next?",
                    "Happy to go deeper on any of these.",
                ]
            )
        )
        return " ".join(parts)

    # -- thinking ------------------------------------------------------------------------

    def think(self, messages: Sequence[Message], text: str, calls: Sequence[ToolCall]) -> str:
        """A few sentences of reasoning that lead to the answer ``text`` (and the ``calls``)."""
        users = [m for m in messages if m.role == "user"]
        last = _message_text(users[-1]) if users else ""
        zh = is_cjk(last)
        if calls:
            shown = [(name, json.dumps(args, ensure_ascii=not zh)) for name, args in calls]
            if zh:
                steps = [f"用户需要{name}，参数是{args}。" for name, args in shown]
            else:
                steps = [f"The user needs {name}; I'll call it with {args}." for name, args in shown]
        elif users and _results(users[-1]):
            steps = ["工具已经返回了结果，我把它告诉用户。" if zh else "The tool returned its result, so I can report it."]
        else:
            counts = Counter(_terms(last))
            words = [w for w, _ in counts.most_common(3)]
            about = ("、".join(words) if zh else ", ".join(words)) or ("这条消息" if zh else "their message")
            steps = [f"用户提到了{about}。" if zh else f"The user wrote about {about}."]
        opening = " ".join(text.split()[:8]).rstrip(".,;:!?")
        if zh:
            tail = f"我会这样开头：{opening[:20]}。" if opening else ""
            return "".join([*steps, "简短直接的回答最合适。", tail])
        tail = f'I will open with "{opening}".' if opening else "I have nothing more to add."
        return " ".join([*steps, "A short, direct answer fits best here.", tail])

    # -- one request ---------------------------------------------------------------------

    def reply(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop_sequences: Sequence[str] = (),
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Mapping[str, Any] | None = None,
        thinking: Mapping[str, Any] | None = None,
    ) -> Reply:
        """The answer to one request, cut at the first stop sequence and at ``max_tokens``.

        ``tools``, ``tool_choice`` and ``thinking`` are the request's (already checked);
        ``thinking`` is None when it is off.
        """
        prefill = None
        if messages and messages[-1].role == "assistant":
            messages, prefill = messages[:-1], messages[-1].text
        users = [m for m in messages if m.role == "user"]
        calls = pick_tools(tools, tool_choice, users[-1].text if users else "")
        if calls:
            names = list(dict.fromkeys(name for name, _ in calls))
            listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
            text = f"I'll use {listed}."
        else:
            text = self.compose(messages, max_tokens)
        reasoning = None
        if thinking is not None and prefill is None:
            if thinking.get("type") != "between_tools" or (users and _results(users[-1])):
                reasoning = self.think(messages, text, calls)
        if prefill is not None and text.startswith(prefill):
            # The rest of what it would have said, so partial text + continuation == the answer.
            text = text[len(prefill) :]
        key = _conversation_key(self.seed, messages) if calls else ""
        omit = thinking is not None and thinking.get("display") == "omitted"
        return self.finish(
            text, max_tokens=max_tokens, stop_sequences=stop_sequences, thinking=reasoning, calls=calls, key=key,
            omit_thinking=omit,
        )  # fmt: skip

    def _fit(self, deltas: list[str], budget: int) -> tuple[tuple[str, ...], int, bool]:
        """The longest prefix of ``deltas`` within ``budget`` tokens: (deltas, tokens, was cut)."""
        count = self.counter.count_text
        n = count("".join(deltas))
        if n <= budget:
            return tuple(deltas), n, False
        lo, hi = 0, len(deltas)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count("".join(deltas[:mid])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return tuple(deltas[:lo]), count("".join(deltas[:lo])), True

    def finish(
        self,
        text: str,
        *,
        max_tokens: int,
        stop_sequences: Sequence[str] = (),
        thinking: str | None = None,
        calls: Sequence[ToolCall] = (),
        key: str = "",
        omit_thinking: bool = False,
    ) -> Reply:
        """Lay out the blocks (thinking, text, tool calls) within ``max_tokens`` and the stop
        sequences, and split them into deltas. Output tokens count every block; the API
        reports at least one, even for an empty reply."""
        blocks: list[Block] = []
        used = 0
        if thinking is not None:
            deltas, used, cut = self._fit(split_deltas(thinking), max_tokens)
            sig = thinking_signature(self.seed, "".join(deltas))
            blocks.append(Block("thinking", () if omit_thinking else deltas, signature=sig))
            if cut:
                return Reply(tuple(blocks), "max_tokens", None, max(1, used))
        stop_reason, stop_sequence = "end_turn", None
        hits = [(text.find(s), s) for s in stop_sequences if s and s in text]
        if hits:
            at, stop_sequence = min(hits)
            text, stop_reason, calls = text[:at], "stop_sequence", ()
        deltas, n, cut = self._fit(split_deltas(text), max_tokens - used)
        used += n
        if deltas:
            blocks.append(Block("text", deltas))
        if cut:
            return Reply(tuple(blocks), "max_tokens", None, max(1, used))
        for i, (name, args) in enumerate(calls):
            payload = json.dumps(args, ensure_ascii=False)
            n = self.counter.count_text(payload)
            if used + n > max_tokens:
                return Reply(tuple(blocks), "max_tokens", None, max(1, used))
            blocks.append(Block("tool_use", json_chunks(payload), id=tool_id(key, i), name=name, input=args))
            used += n
            stop_reason = "tool_use"
        return Reply(tuple(blocks), stop_reason, stop_sequence, max(1, used))


def _conversation_key(seed: int, messages: Sequence[Message]) -> str:
    return "\x00".join([str(seed), *(json.dumps(m.to_api(), sort_keys=True, ensure_ascii=False) for m in messages)])


def _results(message: Message) -> list[tuple[str, bool]]:
    """The tool results a user message carries: (text, is_error) each."""
    if isinstance(message.content, str):
        return []
    out = []
    for block in message.content:
        if isinstance(block, ToolResultBlock):
            c = block.content
            text = c if isinstance(c, str) else " ".join(b.text for b in c or () if isinstance(b, TextBlock))
            out.append((text.strip() or "(empty)", bool(block.is_error)))
    return out


def _report(results: Sequence[tuple[str, bool]]) -> str:
    """The answer to tool results: what they said, in their language."""
    zh = is_cjk(" ".join(t for t, _ in results))
    parts = []
    for text, failed in results:
        if zh:
            parts.append(f"工具出错了：{text}" if failed else f"结果是：{text}")
        else:
            parts.append(f"The tool failed: {text}" if failed else f"The result is: {text}")
    return ("" if zh else " ").join(p if p[-1] in ".。!?！？" else p + ("。" if zh else ".") for p in parts)
