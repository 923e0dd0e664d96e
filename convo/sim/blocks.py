"""The blocks of a reply (thinking, text, tool_use), and the request options that ask for the
ones besides text (``tools``, ``tool_choice``, ``thinking``), checked the way the API checks them.

The offline model calls a tool when ``tool_choice`` forces one (``any`` / ``tool``) or when
the last user message names it ("use get_weather for Paris"); several named tools make
parallel calls unless ``disable_parallel_tool_use``. The input is built from the tool's
``input_schema``: required strings get the words that follow the tool's name in the message
("Paris"), numbers 1 (or their ``minimum``), booleans true, enums their first value.
Ids and thinking signatures are derived from the conversation, so a request sent twice gets
the same reply — which is what lets a test compare a restarted stream with a clean one.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..messages import Message

__all__ = [
    "Block", "Reply", "ToolCall", "check_final_assistant", "check_thinking", "check_tool_choice", "check_tools",
    "json_chunks", "pick_tools", "thinking_signature",
]  # fmt: skip

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CHOICES = ("auto", "any", "tool", "none")
_THINKING = ("enabled", "disabled", "adaptive", "between_tools")
_FILLER = frozenset(
    "a an the to for on in at of about with from by and or please use using call calling run invoke tool "
    "function me my us it this that then also next".split()
)
_JSON_PIECE = re.compile(r'[^\s:,]*[:,]?\s*')
DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"

ToolCall = tuple[str, dict[str, Any]]  # (tool name, input)


@dataclass(frozen=True)
class Block:
    """One content block of a reply, as the stream sends it."""

    type: str  # thinking | text | tool_use
    deltas: tuple[str, ...]  # the thinking_delta / text_delta / input_json_delta payloads
    signature: str = ""  # thinking: sent in one signature_delta after the deltas
    id: str = ""  # tool_use
    name: str = ""  # tool_use
    input: Any = None  # tool_use: the input object the deltas spell out

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
    stop_reason: str  # end_turn | max_tokens | stop_sequence | tool_use
    stop_sequence: str | None
    output_tokens: int

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


# -- request checks (ValueError with the API's message; the protocol makes it a 400) ----------


def check_tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list) or not all(isinstance(t, Mapping) and t.get("name") for t in tools):
        raise ValueError("tools: Input should be a list of tool definitions, each with a 'name'")
    names = [t["name"] for t in tools]
    if len(set(names)) != len(names):
        raise ValueError(f"tools: Tool names must be unique, got {names}")
    for t in tools:
        if "type" not in t and not isinstance(t.get("input_schema"), Mapping):
            raise ValueError(f"tools.{t['name']}.input_schema: Field required")
    return tools


def check_tool_choice(choice: Any, tools: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind not in _CHOICES:
        raise ValueError(
            f"tool_choice: Input tag {kind!r} found using 'type' does not match any of the expected tags: "
            + ", ".join(repr(c) for c in _CHOICES)
        )
    if kind == "tool":
        names = [t["name"] for t in tools or ()]
        if not isinstance(choice.get("name"), str):
            raise ValueError("tool_choice.tool.name: Field required")
        if choice["name"] not in names:
            raise ValueError(f"tool_choice.name: no tool named {choice['name']!r} in tools (tools: {names})")
    return dict(choice)


def check_thinking(thinking: Any, max_tokens: int | None) -> dict[str, Any] | None:
    """The thinking config when thinking is on, None when it is off; ValueError when invalid."""
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind not in _THINKING:
        raise ValueError(
            f"thinking: Input tag {kind!r} found using 'type' does not match any of the expected tags: "
            + ", ".join(repr(t) for t in _THINKING)
        )
    if thinking.get("display") not in (None, "summarized", "omitted"):
        raise ValueError(f"thinking.{kind}.display: Input should be 'summarized' or 'omitted'")
    if kind == "disabled":
        return None
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if budget is None:
            raise ValueError("thinking.enabled.budget_tokens: Field required")
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise ValueError(f"thinking.enabled.budget_tokens: Input should be a valid integer, got {budget!r}")
        if budget < 1024:
            raise ValueError("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if max_tokens is not None and max_tokens <= budget:
            raise ValueError(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation "
                f"at {DOCS}#max-tokens-and-context-window-size"
            )
    return dict(thinking)


def check_final_assistant(messages: Sequence[Message], thinking: Any) -> None:
    """The API's thinking rules for the last assistant turn (a prefill, or a call whose results
    end the request): with thinking on it must start with a thinking block; off, hold none."""
    last = messages[-1]
    if thinking is None:
        if last.role == "assistant":
            for k, block in enumerate(last.blocks):
                if block.type in ("thinking", "redacted_thinking"):
                    raise ValueError(
                        f"messages.{len(messages) - 1}.content.{k}: When thinking is disabled, an `assistant` message "
                        "in the final position cannot contain `thinking`. To use thinking blocks, enable `thinking` "
                        "in your request."
                    )
        return
    i = len(messages) - 1 if last.role == "assistant" else len(messages) - 2 if last.tool_result_ids() else -1
    if i < 0:
        return
    first = messages[i].blocks[0].type
    if first not in ("thinking", "redacted_thinking"):
        raise ValueError(
            f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When "
            "`thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the "
            "lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from "
            f"previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at {DOCS}"
        )


def forces_tool(choice: Mapping[str, Any] | None) -> bool:
    return choice is not None and choice.get("type") in ("any", "tool")


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
    if kind == "tool":
        found = [f for f in found if f[2] == choice["name"]] or [(0, 0, choice["name"])]
    elif not found and kind == "any":
        found = [(0, 0, custom[0]["name"])]
    if (choice or {}).get("disable_parallel_tool_use") or kind == "tool":
        found = found[:1]
    calls: list[ToolCall] = []
    for i, (start, end, name) in enumerate(found):
        stop = found[i + 1][0] if i + 1 < len(found) else len(text)
        arg = _argument(text, start, end, stop)
        calls.append((name, fill(by_name[name]["input_schema"], arg)))
    return calls


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
