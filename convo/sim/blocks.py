"""The blocks of a reply (thinking, text, tool_use, server-tool steps) and which tool calls
the offline model makes (the request's ``tools`` and ``tool_choice`` are checked in
:mod:`convo.sim.request` and :mod:`convo.sim.rules`).

The offline model calls a tool when ``tool_choice`` forces one (``any`` / ``tool``) or when
the last user message names it ("use get_weather for Paris"); several named tools make
parallel calls unless ``disable_parallel_tool_use``, and so does one tool named with a list
of subjects ("use get_weather for Paris and Tokyo": one call per city, in order). The input is
built from the tool's ``input_schema``: required strings get the words that follow the tool's
name in the message ("Paris"), numbers 1 (or their ``minimum``), booleans true, enums their
first value.
Ids and thinking signatures are derived from the conversation, so a request sent twice gets
the same reply — which is what lets a test compare a restarted stream with a clean one.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Block", "Reply", "ToolCall", "json_chunks", "pick_tools", "server_tools", "thinking_signature"]

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FILLER = frozenset(
    ["a", "an", "the", "to", "for", "on", "in", "at", "of", "about", "with", "from", "by", "and", "or", "please", "use", "using", "call", "calling", "run", "invoke", "tool", "function", "me", "my", "us", "it", "this", "that", "then", "also", "next"]
)
_JSON_PIECE = re.compile(r'[^\s:,]*[:,]?\s*')
#: What separates the subjects of one call ("Paris and Tokyo", "Paris, Tokyo, and Rome", "巴黎和东京").
_LIST = re.compile(r"\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or|&)\s+|\s*[、，和与及]\s*")
_MAX_SUBJECTS = 8
_MAX_SUBJECT_WORDS = 4

ToolCall = tuple[str, dict[str, Any]]  # (tool name, input)


@dataclass(frozen=True)
class Block:
    """One content block of a reply, as the stream sends it."""

    type: str  # thinking | text | tool_use | server_tool_use | compaction | a server tool's result
    deltas: tuple[str, ...]  # the thinking_delta / text_delta / input_json_delta payloads
    signature: str = ""  # thinking: sent in one signature_delta after the deltas
    id: str = ""  # tool_use
    name: str = ""  # tool_use
    input: Any = None  # tool_use: the input object the deltas spell out
    body: Any = None  # a server tool result: its whole block (sent at once, without deltas)

    @property
    def value(self) -> str:
        return "".join(self.deltas)

    @property
    def events(self) -> int:
        """How many content_block_delta events the block streams as."""
        return len(self.deltas) + (self.type == "thinking")


@dataclass(frozen=True)
class Reply:
    """What the model produces for one request."""

    blocks: tuple[Block, ...]  # in order: thinking, text, tool_use...
    stop_reason: str  # end_turn | max_tokens | stop_sequence | tool_use | pause_turn | refusal | ...
    stop_sequence: str | None
    output_tokens: int
    stop_details: dict[str, Any] | None = None  # refusal: {type, category, explanation}

    @property
    def text(self) -> str:
        return "".join(b.value for b in self.blocks if b.type == "text")

    @property
    def deltas(self) -> tuple[str, ...]:
        """The text deltas; they concatenate to ``text``."""
        return tuple(d for b in self.blocks if b.type == "text" for d in b.deltas)

    @property
    def events(self) -> int:
        return sum(b.events for b in self.blocks)


# -- which tools, with what input ---------------------------------------------------------------


def _mentions(text: str, names: Sequence[str]) -> list[tuple[int, int, str]]:
    found = []
    for name in names:
        m = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
        if m:
            found.append((m.start(), m.end(), name))
    return sorted(found)


def _trim(words: list[str], *, from_end: bool = False) -> list[str]:
    """Drop filler words (and bare punctuation) off one end."""
    while words:
        w = words[-1] if from_end else words[0]
        if w.lower().strip(".,;:!?\"'()") not in _FILLER and w.strip(".,;:!?\"'()"):
            break
        words = words[:-1] if from_end else words[1:]
    return words


def _argument(text: str, start: int, end: int, stop: int) -> str:
    """The words a call is about: those after the tool's name, else those before it."""
    words = _trim(_trim(text[end:stop].split()), from_end=True)
    if not words:
        words = _trim(_trim(text[:start].split(), from_end=True))
    return " ".join(words[:12]).strip(".,;:!?") or "example"


def server_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    """The request's server tools (``web_search_*``, ``web_fetch_*``, ``code_execution_*`` ...)."""
    return [t for t in tools or () if isinstance(t.get("type"), str) and t["type"] != "custom"
            and not isinstance(t.get("input_schema"), Mapping)]


def pick_tools(
    tools: Sequence[Mapping[str, Any]] | None, choice: Mapping[str, Any] | None, text: str
) -> list[ToolCall]:
    """The calls to make, given the text of the last user message (its tool results left out)."""
    custom = [t for t in tools or () if isinstance(t.get("input_schema"), Mapping)]
    kind = (choice or {}).get("type", "auto")
    if not custom or kind == "none":
        return []
    by_name = {t["name"]: t for t in custom}
    found = _mentions(text, list(by_name))
    if kind == "tool" and choice is not None:
        found = [f for f in found if f[2] == choice["name"]] or [(0, 0, choice["name"])]
    elif not found and kind == "any":
        found = [(0, 0, custom[0]["name"])]
    single = bool((choice or {}).get("disable_parallel_tool_use"))
    if single or kind == "tool":
        found = found[:1]
    calls: list[ToolCall] = []
    for i, (start, end, name) in enumerate(found):
        stop = found[i + 1][0] if i + 1 < len(found) else len(text)
        arg = _argument(text, start, end, stop)
        schema = by_name[name]["input_schema"]
        subjects = [arg] if single or not _takes_text(schema) else subjects_of(arg)
        calls.extend((name, fill(schema, subject)) for subject in subjects)
    return calls


def subjects_of(arg: str) -> list[str]:
    """The subjects a call's words list ("Paris and Tokyo" -> Paris, Tokyo); the words
    themselves when they are not a short list."""
    parts = [p.strip(".,;:!?\"'()") for p in _LIST.split(arg)]
    parts = [" ".join(_trim(_trim(p.split()), from_end=True)) for p in parts]
    parts = list(dict.fromkeys(p for p in parts if p))
    if not 2 <= len(parts) <= _MAX_SUBJECTS or any(len(p.split()) > _MAX_SUBJECT_WORDS for p in parts):
        return [arg]
    return parts


def _takes_text(schema: Any) -> bool:
    """Whether :func:`fill` puts the call's words in the input (a required free-text string)."""
    if not isinstance(schema, Mapping):
        return False
    props = schema.get("properties") or {}
    for key in schema.get("required") or ():
        prop = props.get(key)
        if isinstance(prop, Mapping) and not ({"const", "enum", "default"} & prop.keys()):
            kind = prop.get("type", "string")
            if kind == "string" or (isinstance(kind, list) and "string" in kind):
                return True
    return False


def fill(schema: Any, arg: str, depth: int = 0) -> Any:
    """A value that satisfies ``schema`` (the common JSON Schema keywords), using ``arg`` for text."""
    if not isinstance(schema, Mapping) or depth > 6:
        return arg
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        options = schema.get("anyOf") or schema.get("oneOf")
        if options:
            return fill(options[0], arg, depth + 1)
        kind = "object" if "properties" in schema else "string"
    if kind in ("integer", "number"):
        value = max(1, schema.get("minimum", 1), schema.get("exclusiveMinimum", 0) + 1)
        value = min(value, schema.get("maximum", value))
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "array":
        return [fill(schema.get("items", {}), arg, depth + 1) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: fill(props.get(k, {}), arg, depth + 1) for k in schema.get("required") or ()}
    return arg


# -- ids, signatures, chunks ----------------------------------------------------------------------


def _digest(*parts: str, size: int = 32) -> bytes:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=size).digest()


def tool_id(key: str, index: int) -> str:
    """``toolu_01…``: 22 base62 characters derived from the conversation ``key``."""
    n = int.from_bytes(_digest(key, str(index), size=17), "big")
    chars = []
    for _ in range(22):
        n, r = divmod(n, 62)
        chars.append(_B62[r])
    return "toolu_01" + "".join(chars)


def thinking_signature(seed: int, thinking: str) -> str:
    """An opaque signature for a thinking block (base64, like the API's)."""
    return base64.b64encode(b"\x12\x02" + _digest(str(seed), thinking, size=64) * 2).decode()


def json_chunks(payload: str) -> tuple[str, ...]:
    """Tool input JSON as the stream sends it: an empty first chunk, then a few characters at a time."""
    return ("", *(p for p in _JSON_PIECE.findall(payload) if p))
