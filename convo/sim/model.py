"""The offline model: a deterministic, useful stand-in for Claude.

* Asked to summarize or analyze a text (summarize, summary, analyze, tl;dr, 总结, 摘要, 概括,
  分析 …), it answers with an extractive summary that covers the text's sections in proportion,
  prose before code and boilerplate, no sentence twice, in the text's order, within
  ``max_tokens`` (:mod:`convo.sim.extract`), headed in the instruction's language (else the
  text's). The text is the ``<document>`` blocks of the last user message, or the rest of it, or
  the earlier conversation when the message is only the instruction; a map-reduce's combining
  request (``<answer part="k">`` blocks) is merged the same way, across its parts.
* Asked for a rolling summary (convo's ``Summarize``: "Summary so far:" / "New turns:"), it
  keeps the names, numbers, dates, preferences and decisions of the user's turns as short
  factual sentences (:mod:`convo.sim.facts`).
* Asked to ``say "…"`` (or ``reply with "…"`` / ``repeat "…"``), it says exactly that.
* Given ``tools``, it calls one when ``tool_choice`` forces it or the last user message names
  it ("use get_weather for Paris"): a short text block, then ``tool_use`` blocks (see
  :mod:`convo.sim.blocks`); several in one reply for several named tools or a list of
  subjects ("use get_weather for Paris and Tokyo"). Given tool results, it reports them ("The
  result is: …"; several one by one: "Paris: Sunny. Tokyo: Rain.").
* Given ``output_config.format`` (a JSON schema), it answers with JSON valid for the schema,
  its values drawn from the conversation (:mod:`convo.sim.structured`), unless it calls a tool.
* With ``thinking`` on, the reply starts with a thinking block: a few sentences of reasoning
  and a signature.
* After a prefilled assistant turn it continues: when the prefill is the start of the answer
  it would have given, it sends exactly the rest, then the same tool calls (so a resumed
  stream can be stitched). The same holds for a *continuation request*, the form models
  without prefill need: the history, an assistant turn with the partial text, then a user
  message asking to continue; the reply is the rest of the answer to the history before
  the partial turn, or a normal answer when the partial text is not its start.
* Given a server tool (``web_search``, ``web_fetch``, ``code_execution``) that the message
  names or asks for ("search the web for ..."), it runs one step: a ``server_tool_use`` block
  and the tool's result block, then its answer. A paused turn (``pause_turn``) sent back as the
  final assistant message is continued with the answer.
* Otherwise it acknowledges the last message: its key words, a short paraphrase and what the
  conversation said that bears on it ("What is my name?" is answered from the history, a
  rolling summary included), with the wording picked by a generator seeded from ``seed`` and
  the conversation.

The reply is cut at the first stop sequence and at ``max_tokens`` (counted with the
simulator's tokenizer, over thinking, text and tool input alike), and split into deltas: a word at a time,
or a few characters at a time for CJK.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .blocks import (
    Block,
    Reply,
    ToolCall,
    json_chunks,
    pick_tools,
    server_tools,
    thinking_signature,
    tool_id,
)
from .extract import summarize_parts
from .facts import _ROLLING, recall, rolling_summary
from .request import Turn
from .servertools import REFUSAL, server_step, wants_server_tool
from .structured import answer as structured_answer
from .text import (
    _INTENT,
    _SAY,
    as_turns,
    inner_text,
    is_cjk,
    is_continuation,
    split_deltas,
    split_sentences,
    summary_source,
    terms,
    turn_text,
)
from .tokens import Tokenizer

__all__ = [
    "Block", "OfflineModel", "Reply", "as_turns", "is_cjk", "is_continuation", "split_deltas", "split_sentences",
    "turn_text",
]  # fmt: skip

class OfflineModel:
    """Deterministic replies for a seed; see the module docstring for what it says.

    ``counter`` counts output tokens (and enforces ``max_tokens``): the simulator's own
    :class:`~convo.sim.tokens.Tokenizer`; ``label`` picks the model's tokenizer.
    """

    def __init__(self, seed: int = 0, counter: Tokenizer | None = None) -> None:
        self.seed = seed
        self.counter = counter if counter is not None else Tokenizer()
        self.label = ""

    def _count(self, text: str) -> int:
        return self.counter.count_text(text, self.label)

    def __repr__(self) -> str:
        return f"OfflineModel(seed={self.seed})"

    # -- the whole answer ----------------------------------------------------------------

    def compose(self, messages: Sequence[Turn | Mapping[str, Any]], max_tokens: int = 1024) -> str:
        """The unbounded answer to a conversation (before stop sequences and max_tokens)."""
        messages = as_turns(messages)
        users = [m for m in messages if m.role == "user"]
        results = _results(users[-1]) if users else []
        if results:
            return _report(results, _subjects(messages, users[-1]))
        last = turn_text(users[-1]) if users else ""
        said = _SAY.search(last)
        if said:
            return said.group(1)
        if _INTENT.search(last):
            if _ROLLING.search(last):
                return rolling_summary(last, max_tokens, self._count)
            earlier = messages[:-2] if messages and messages[-1].role == "assistant" else messages[:-1]
            parts, instruction, combining = summary_source(last, [turn_text(m) for m in earlier])
            if parts:
                return self.summarize(parts, max_tokens, instruction=instruction, combining=combining)
        return self._acknowledge(last, messages)

    def summarize(self, text: str | Sequence[str], max_tokens: int = 1024, *, instruction: str = "",
                  combining: bool = False) -> str:  # fmt: skip
        """An extractive summary of ``text`` (or of its parts) within ``max_tokens``, headed in
        the language of the ``instruction`` (else the text's); see :mod:`convo.sim.extract`."""
        parts = [text] if isinstance(text, str) else list(text)
        words = re.sub(r"[\W\d_]+", "", instruction)
        zh = is_cjk(instruction) if words else is_cjk("\n".join(parts))
        return summarize_parts(parts, max_tokens, self._count, zh=zh, combining=combining)

    def _acknowledge(self, last: str, messages: Sequence[Turn]) -> str:
        key = f"{self.seed}\x00{len(messages)}\x00{last}".encode()
        rng = random.Random(zlib.crc32(key))
        words = terms(last)
        counts = Counter(words)
        keywords = sorted(dict.fromkeys(words), key=lambda w: -counts[w])[:3]
        turn = sum(1 for m in messages if m.role == "user")
        history = [turn_text(m) for m in messages[:-1] if m.role == "user"]
        said, answers = recall(last, history, words) if history else ("", False)
        if said and not answers and said.split(" ", 1)[0] in ("Your", "You", "They", "Their"):
            said = said[0].lower() + said[1:]
        if is_cjk(last):
            if answers:
                return f"{said}{rng.choice(['还有什么我可以帮忙的吗？', '接下来想做什么？'])}"
            opener = rng.choice(["好的。", "明白了。", "收到。", "谢谢你的消息。"])
            parts = [opener]
            if keywords:
                parts.append(f"你提到了{'、'.join(keywords)}。")
            gist = re.sub(r"\s+", "", last)[:40].rstrip("。！？!?.，,")
            if gist:
                parts.append(f"我的理解是：{gist}。")
            if said:
                parts.append(f"我记得：{said}")
            parts.append(f"这是我们对话的第{turn}轮。")
            parts.append(rng.choice(["如果需要更多细节，请告诉我。", "接下来想做什么？", "还有什么我可以帮忙的吗？"]))
            return "".join(parts)
        if answers:
            return f"{said} {rng.choice(['Anything else you would like to know?', 'What would you like to do next?'])}"
        opener = rng.choice(["Got it.", "Understood.", "Thanks for the message.", "Sure."])
        parts = [opener]
        if keywords:
            listed = keywords[0] if len(keywords) == 1 else ", ".join(keywords[:-1]) + " and " + keywords[-1]
            parts.append(f"You mentioned {listed}.")
        gist = " ".join(last.split()[:25]).rstrip(".!?,;:")
        if gist:
            parts.append(f'Here is what I took from it: "{gist}".')
        if said:
            parts.append(f"I remember that {said}")
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

    def think(self, messages: Sequence[Turn], text: str, calls: Sequence[ToolCall]) -> str:
        """A few sentences of reasoning that lead to the answer ``text`` (and the ``calls``)."""
        users = [m for m in messages if m.role == "user"]
        last = turn_text(users[-1]) if users else ""
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
            counts = Counter(terms(last))
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

    def _answer(
        self, turns: Sequence[Turn], tools: Sequence[Mapping[str, Any]] | None,
        tool_choice: Mapping[str, Any] | None, max_tokens: int, output: Mapping[str, Any] | None = None,
    ) -> tuple[str, list[ToolCall]]:
        users = [m for m in turns if m.role == "user"]
        calls = pick_tools(tools, tool_choice, users[-1].text if users else "")
        if calls:
            names = list(dict.fromkeys(name for name, _ in calls))
            listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
            return f"I'll use {listed}.", calls
        if output is not None:
            # The newest words first, so a value the last message gives wins over an older one.
            said = [turn_text(m) for m in reversed(users)]
            results = [text for m in reversed(users) for text, _ in _results(m)]
            return structured_answer(output, "\n".join([*results, *said])), calls
        return self.compose(turns, max_tokens), calls

    def reply(
        self,
        messages: Sequence[Turn | Mapping[str, Any]],
        *,
        max_tokens: int,
        stop_sequences: Sequence[str] = (),
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Mapping[str, Any] | None = None,
        thinking: Mapping[str, Any] | None = None,
        label: str = "",
        stop: str = "",
        output: Mapping[str, Any] | None = None,
    ) -> Reply:
        """The answer to one request, cut at the first stop sequence and at ``max_tokens``.

        ``tools``, ``tool_choice`` and ``thinking`` are the request's (already checked);
        ``thinking`` is None when it is off. ``label`` is the model's tokenizer. ``stop`` asks
        for an unusual ending: ``pause_turn`` (a server-tool step, then a pause), ``refusal``
        or ``model_context_window_exceeded`` (the answer cut part-way). ``output`` is the JSON
        schema of ``output_config.format``: the answer is JSON for it (:mod:`convo.sim.structured`).
        """
        self.label = label
        turns = as_turns(messages)
        base, prefill, paused = turns, None, False
        if turns and turns[-1].role == "assistant":
            paused = any(b.get("type") == "server_tool_use" for b in turns[-1].blocks)
            base, prefill = turns[:-1], (None if paused else turns[-1].text)
        text, calls = self._answer(base, tools, tool_choice, max_tokens, output)
        if prefill is None and not paused and is_continuation(turns):
            earlier, partial = turns[:-2], turns[-2].text
            said, said_calls = self._answer(earlier, tools, tool_choice, max_tokens, output)
            # A finished answer followed by "continue" is a new request, not a recovery.
            if said.startswith(partial.rstrip()) and said[len(partial.rstrip()) :].strip():
                base, prefill, text, calls = earlier, partial, said, said_calls
        users = [m for m in base if m.role == "user"]
        last = users[-1].text if users else ""
        key = _conversation_key(self.seed, base)
        step: list[Block] = []
        if prefill is None and not paused:
            tool = wants_server_tool(server_tools(tools), last)
            if tool is not None or stop == "pause_turn":
                step = server_step(tool, last, key)
        if stop == "pause_turn":
            return self.finish("", max_tokens=max_tokens, pre=step, stop="pause_turn")
        reasoning = None
        if (
            thinking is not None and prefill is None and not paused
            and (thinking.get("type") != "between_tools" or (users and _results(users[-1])))
        ):  # fmt: skip
            reasoning = self.think(base, text, calls)
        if prefill is not None:
            # The rest of what it would have said, so partial text + continuation == the answer.
            if text.startswith(prefill):
                text = text[len(prefill) :]
            elif text.startswith(prefill.rstrip()):
                text = text[len(prefill.rstrip()) :]
        if stop in ("refusal", "model_context_window_exceeded"):
            pieces = split_deltas(text)
            text, calls = "".join(pieces[: max(1, len(pieces) // 3)]), []
        omit = thinking is not None and thinking.get("display") == "omitted"
        return self.finish(
            text, max_tokens=max_tokens, stop_sequences=stop_sequences, thinking=reasoning, calls=calls,
            key=key if calls else "", omit_thinking=omit, pre=step, stop=stop,
        )  # fmt: skip

    def _fit(self, deltas: list[str], budget: int) -> tuple[tuple[str, ...], int, bool]:
        """The longest prefix of ``deltas`` within ``budget`` tokens: (deltas, tokens, was cut)."""
        count = self._count
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
        pre: Sequence[Block] = (),
        stop: str = "",
    ) -> Reply:
        """Lay out the blocks (thinking, server-tool steps ``pre``, text, tool calls) within
        ``max_tokens`` and the stop sequences, and split them into deltas. Output tokens count
        every block; the API reports at least one, even for an empty reply. ``max_tokens`` 0
        (a cache-warming request) produces nothing. ``stop`` overrides the stop reason."""
        if max_tokens <= 0:
            return Reply((), "max_tokens", None, 0)
        blocks: list[Block] = []
        used = 0
        if thinking is not None:
            deltas, used, cut = self._fit(split_deltas(thinking), max_tokens)
            sig = thinking_signature(self.seed, "".join(deltas))
            blocks.append(Block("thinking", () if omit_thinking else deltas, signature=sig))
            if cut:
                return Reply(tuple(blocks), "max_tokens", None, max(1, used))
        for block in pre:
            blocks.append(block)
            used += self._count(block.value) + (3 if block.type == "server_tool_use" else 0)
        if stop == "pause_turn":
            return Reply(tuple(blocks), "pause_turn", None, max(1, used))
        stop_reason, stop_sequence = "end_turn", None
        hits = [(text.find(s), s) for s in stop_sequences if s and s in text]
        if hits:
            at, stop_sequence = min(hits)
            text, stop_reason, calls = text[:at], "stop_sequence", ()
        deltas, n, cut = self._fit(split_deltas(text), max_tokens - used)
        if not deltas and text and not blocks and self._count(text[0]) <= max_tokens - used:
            # Even a tiny max_tokens yields some text: the first character.
            deltas, n = (text[0],), self._count(text[0])
        used += n
        if deltas or not blocks:
            blocks.append(Block("text", deltas))
        if cut:
            return Reply(tuple(blocks), "max_tokens", None, max(1, used))
        for i, (name, args) in enumerate(calls):
            payload = json.dumps(args, ensure_ascii=False)
            n = self._count(payload)
            if used + n > max_tokens:
                return Reply(tuple(blocks), "max_tokens", None, max(1, used))
            blocks.append(Block("tool_use", json_chunks(payload), id=tool_id(key, i), name=name, input=args))
            used += n
            stop_reason = "tool_use"
        if stop in ("refusal", "model_context_window_exceeded"):
            details = dict(REFUSAL) if stop == "refusal" else None
            return Reply(tuple(blocks), stop, None, max(1, used), stop_details=details)
        return Reply(tuple(blocks), stop_reason, stop_sequence, max(1, used))


def _conversation_key(seed: int, messages: Sequence[Turn]) -> str:
    return "\x00".join([str(seed), *(json.dumps(m.to_api(), sort_keys=True, ensure_ascii=False) for m in messages)])


def _results(message: Turn) -> list[tuple[str, bool]]:
    """The tool results a user turn carries: (text, is_error) each."""
    out = []
    for block in message.of_type("tool_result"):
        text = inner_text(block.get("content"))
        out.append((text.strip() or "(empty)", bool(block.get("is_error"))))
    return out


def _subjects(messages: Sequence[Turn], results: Turn) -> list[str]:
    """What each tool result of ``results`` was about: its call's text input (``Paris``), else
    the tool's name; from the assistant turn that made the calls."""
    calls: dict[str, str] = {}
    for m in messages:
        if m.role != "assistant":
            continue
        for b in m.of_type("tool_use"):
            args = b.get("input")
            words = [v for v in args.values() if isinstance(v, str)] if isinstance(args, Mapping) else []
            calls[str(b.get("id"))] = words[0] if words else str(b.get("name") or "the tool")
    return [calls.get(str(b.get("tool_use_id")), "the tool") for b in results.of_type("tool_result")]


def _report(results: Sequence[tuple[str, bool]], subjects: Sequence[str] = ()) -> str:
    """The answer to tool results: what they said, in their language; several results one
    by one, each after what its call was about ("Paris: Sunny, 21 C.")."""
    zh = is_cjk(" ".join(t for t, _ in results))
    parts = []
    several = len(results) > 1
    for k, (text, failed) in enumerate(results):
        about = subjects[k] if k < len(subjects) else "the tool"
        if several and zh:
            parts.append(f"{about}出错了：{text}" if failed else f"{about}：{text}")
        elif several:
            parts.append(f"{about} failed: {text}" if failed else f"{about}: {text}")
        elif zh:
            parts.append(f"工具出错了：{text}" if failed else f"结果是：{text}")
        else:
            parts.append(f"The tool failed: {text}" if failed else f"The result is: {text}")
    if several:
        parts.insert(0, "结果如下。" if zh else "Here are the results.")
    return ("" if zh else " ").join(p if p[-1] in ".。!?！？" else p + ("。" if zh else ".") for p in parts)
