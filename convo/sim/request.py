"""Reading a Messages API body: the simulator's own parser, written from the API reference.

The body stays JSON (dicts); :class:`Turn` and :class:`Request` are a thin typed layer over
it. Shape errors come back as 400 ``invalid_request_error`` with a message that names the
field (``messages.2.content.0.text: Field required``); the model-dependent rules (prefill,
sampling, thinking types, images, cache breakpoints) live in :mod:`convo.sim.rules`.

Accepted as the API accepts them: consecutive turns of the same role (merged into one), a
whitespace-only text block beside real content, and content blocks of any type the
simulator does not know, as long as they are objects with a string ``type``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalogue import Model, catalogue
from .edits import adopt_compaction, check_config
from .errors import ErrorReply, invalid

__all__ = ["Request", "Turn", "parse_count_request", "parse_message_request", "parse_turns"]

_FIELDS = frozenset(
    {
        "model", "max_tokens", "messages", "system", "stream", "temperature", "top_p", "top_k",
        "stop_sequences", "tools", "tool_choice", "thinking", "metadata", "service_tier", "container",
        "context_management", "mcp_servers", "output_config", "output_format", "inference_geo", "speed",
        "cache_control", "diagnostics", "user_profile_id",
    }
)  # fmt: skip
_COUNT_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "context_management", "mcp_servers",
     "output_config", "output_format", "cache_control", "speed", "user_profile_id"}
)  # fmt: skip
_ROLES = ("user", "assistant")
_CHOICES = ("auto", "any", "tool", "none")
_THINKING = ("enabled", "disabled", "adaptive", "between_tools")
_IMAGE_SOURCES = ("base64", "url", "file")
#: Not ``container_upload``: it is also a response block (the SDK's ``ContentBlock`` union holds
#: ``ContainerUploadBlock``, "a file uploaded to the container"), so assistant turns sent back hold it.
_USER_ONLY = frozenset({"tool_result", "image", "document", "search_result"})
_ASSISTANT_ONLY = frozenset({"tool_use", "thinking", "redacted_thinking", "server_tool_use", "mcp_tool_use"})


@dataclass(frozen=True)
class Turn:
    """One message as the model sees it: a role and its content blocks (API-shaped dicts)."""

    role: str
    blocks: tuple[dict[str, Any], ...]

    @property
    def text(self) -> str:
        return "".join(b["text"] for b in self.blocks if b.get("type") == "text")

    def of_type(self, *kinds: str) -> list[dict[str, Any]]:
        return [b for b in self.blocks if b.get("type") in kinds]

    def tool_use_ids(self) -> list[str]:
        return [b["id"] for b in self.of_type("tool_use")]

    def tool_result_ids(self) -> list[str]:
        return [b["tool_use_id"] for b in self.of_type("tool_result")]

    def to_api(self) -> dict[str, Any]:
        return {"role": self.role, "content": [dict(b) for b in self.blocks]}


@dataclass
class Request:
    """A parsed ``POST /v1/messages`` (or count_tokens) body."""

    name: str  # the model id as sent (echoed in the reply)
    model: Model
    messages: list[Turn]
    system: tuple[dict[str, Any], ...] = ()
    max_tokens: int = 0
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None  # the config when thinking is on, else None
    thinking_type: str | None = None  # the type as sent (disabled included)
    stop_sequences: list[str] = field(default_factory=list)
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    cache_control: Any = None  # the top-level (automatic) breakpoint
    edits: list[dict[str, Any]] | None = None
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The model's tokenizer label (for counting)."""
        return self.model.tokenizer

    @property
    def prefill(self) -> bool:
        return bool(self.messages) and self.messages[-1].role == "assistant"


def _require(body: Mapping[str, Any], name: str) -> Any:
    if name not in body:
        raise invalid(f"{name}: Field required")
    return body[name]


def find_model(name: Any) -> tuple[str, Model]:
    """The catalogue model a request names; 404 ``not_found_error`` for unknown and retired ones."""
    if not isinstance(name, str) or not name.strip():
        raise invalid("model: Input should be a valid non-empty string")
    model = catalogue().find(name)
    if model is None or not model.served:
        raise ErrorReply(404, f"model: {name}", type="not_found_error")
    return name, model


# -- blocks ----------------------------------------------------------------------------------


def _string(block: Mapping[str, Any], key: str, where: str) -> None:
    if key not in block:
        raise invalid(f"{where}.{key}: Field required")
    if not isinstance(block[key], str):
        raise invalid(f"{where}.{key}: Input should be a valid string")


def check_block(block: Any, where: str) -> dict[str, Any]:
    """One content block's basic shape (by type); unknown types need only a string ``type``."""
    if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
        raise invalid(f"{where}: Input should be a content block object with a string 'type'")
    kind = block["type"]
    if kind == "text":
        _string(block, "text", where)
        if not block["text"]:
            if block.get("cache_control") is not None:
                raise invalid(f"{where}.text: cache_control cannot be set for empty text blocks")
            raise invalid(f"{where}: text content blocks must be non-empty")
    elif kind == "image":
        src = block.get("source")
        if not isinstance(src, Mapping) or src.get("type") not in _IMAGE_SOURCES:
            raise invalid(f"{where}.source: Input should be a 'base64', 'url' or 'file' image source")
        if src["type"] == "base64":
            _string(src, "media_type", f"{where}.source")
            _string(src, "data", f"{where}.source")
        elif src["type"] == "url":
            _string(src, "url", f"{where}.source")
        else:
            _string(src, "file_id", f"{where}.source")
    elif kind == "document":
        if not isinstance(block.get("source"), Mapping) or not isinstance(block["source"].get("type"), str):
            raise invalid(f"{where}.source: Field required")
    elif kind == "tool_use":
        _string(block, "id", where)
        _string(block, "name", where)
        if not isinstance(block.get("input"), Mapping):
            raise invalid(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        _string(block, "tool_use_id", where)
        content = block.get("content")
        if content is not None and not isinstance(content, str):
            if not isinstance(content, list):
                raise invalid(f"{where}.content: Input should be a valid string or a list of content blocks")
            for k, inner in enumerate(content):
                check_block(inner, f"{where}.content.{k}")
        if block.get("is_error") is not None and not isinstance(block["is_error"], bool):
            raise invalid(f"{where}.is_error: Input should be a valid boolean")
    elif kind == "thinking":
        _string(block, "thinking", where)
        _string(block, "signature", where)
    elif kind == "redacted_thinking":
        _string(block, "data", where)
    return dict(block)


def _content(raw: Any, i: int, role: str) -> tuple[dict[str, Any], ...]:
    where = f"messages.{i}.content"
    if isinstance(raw, str):
        return ({"type": "text", "text": raw},) if raw else ()
    if not isinstance(raw, list):
        raise invalid(f"{where}: Input should be a valid string or a list of content blocks")
    blocks = tuple(check_block(b, f"{where}.{j}") for j, b in enumerate(raw))
    for j, b in enumerate(blocks):
        kind = b["type"]
        if role == "assistant" and kind in _USER_ONLY:
            raise invalid(f"{where}.{j}.type: `{kind}` blocks can only be in `user` messages")
        if role == "user" and kind in _ASSISTANT_ONLY:
            raise invalid(f"{where}.{j}.type: `{kind}` blocks can only be in `assistant` messages")
    return blocks


def parse_turns(raw: Any) -> list[Turn]:
    """The messages of a request as turns: checked, compaction resolved, same roles merged."""
    if not isinstance(raw, list):
        raise invalid(f"messages: Input should be a valid list, got {type(raw).__name__}")
    if not raw:
        raise invalid("messages: at least one message is required")
    try:
        raw = adopt_compaction(raw)
    except ValueError as exc:
        raise invalid(f"messages: {exc}") from None
    turns: list[Turn] = []
    for i, m in enumerate(raw):
        if not isinstance(m, Mapping):
            raise invalid(f"messages.{i}: Input should be an object with 'role' and 'content'")
        role = _require_in(m, "role", i)
        if role not in _ROLES:
            raise invalid(f"messages.{i}.role: Input should be 'user' or 'assistant', got {role!r}")
        blocks = _content(_require_in(m, "content", i), i, role)
        last = i == len(raw) - 1
        if not blocks and not (last and role == "assistant"):
            raise invalid(
                f"messages.{i}: all messages must have non-empty content except for the optional final assistant message"
            )
        texts = [b for b in blocks if b["type"] == "text"]
        final_prefill = last and role == "assistant"
        if blocks and len(texts) == len(blocks) and not any(b["text"].strip() for b in texts) and not final_prefill:
            raise invalid(f"messages.{i}: text content blocks must contain non-whitespace text")
        if turns and turns[-1].role == role:  # the API merges consecutive turns of one role
            turns[-1] = Turn(role, turns[-1].blocks + blocks)
        else:
            turns.append(Turn(role, blocks))
    if turns[0].role != "user":
        raise invalid('messages: first message must use the "user" role')
    _check_pairs(turns)
    return turns


def _require_in(m: Mapping[str, Any], key: str, i: int) -> Any:
    if key not in m:
        raise invalid(f"messages.{i}.{key}: Field required")
    return m[key]


def _check_pairs(turns: Sequence[Turn]) -> None:
    """Every tool_use is answered in the next turn, every tool_result answers the turn before."""
    for i, turn in enumerate(turns):
        if turn.role == "user":
            asked = set(turns[i - 1].tool_use_ids()) if i > 0 else set()
            stray = [t for t in turn.tool_result_ids() if t not in asked]
            if stray:
                raise invalid(
                    f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(stray)}. Each `tool_result` block must have a corresponding `tool_use` block "
                    "in the previous message."
                )
            continue
        ids = turn.tool_use_ids()
        if not ids or i + 1 >= len(turns):
            continue
        answered = set(turns[i + 1].tool_result_ids())
        missing = [t for t in ids if t not in answered]
        if missing:
            raise invalid(
                f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block in "
                "the next message."
            )


# -- the other fields ------------------------------------------------------------------------


def _system(raw: Any) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return ({"type": "text", "text": raw},) if raw else ()
    if not isinstance(raw, list):
        raise invalid("system: Input should be a valid string or a list of text blocks")
    out = []
    for j, b in enumerate(raw):
        block = check_block(b, f"system.{j}")
        if block["type"] != "text":
            raise invalid(f"system.{j}.type: Input should be 'text'")
        out.append(block)
    return tuple(out)


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    names = []
    for k, t in enumerate(tools):
        if not isinstance(t, Mapping) or not isinstance(t.get("name"), str) or not t["name"]:
            raise invalid(f"tools.{k}.name: Field required")
        if ("type" not in t or t.get("type") == "custom") and not isinstance(t.get("input_schema"), Mapping):
            raise invalid(f"tools.{k}.custom.input_schema: Field required")
        names.append(t["name"])
    if len(set(names)) != len(names):
        raise invalid(f"tools: Tool names must be unique, got {names}")
    return [dict(t) for t in tools]


def _tool_choice(choice: Any, tools: Sequence[Mapping[str, Any]] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind not in _CHOICES:
        raise invalid(
            f"tool_choice: Input tag {kind!r} found using 'type' does not match any of the expected tags: "
            + ", ".join(repr(c) for c in _CHOICES)
        )
    if kind == "tool":
        names = [t["name"] for t in tools or ()]
        if not isinstance(choice.get("name"), str):
            raise invalid("tool_choice.tool.name: Field required")
        if choice["name"] not in names:
            raise invalid(f"tool_choice.name: no tool named {choice['name']!r} in tools (tools: {names})")
    return dict(choice)


def _thinking(raw: Any) -> tuple[str | None, dict[str, Any] | None]:
    if raw is None:
        return None, None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind not in _THINKING:
        raise invalid(
            f"thinking: Input tag {kind!r} found using 'type' does not match any of the expected tags: "
            + ", ".join(repr(t) for t in _THINKING)
        )
    if raw.get("display") not in (None, "summarized", "omitted"):
        raise invalid(f"thinking.{kind}.display: Input should be 'summarized' or 'omitted'")
    if kind == "enabled":
        budget = raw.get("budget_tokens")
        if budget is None:
            raise invalid("thinking.enabled.budget_tokens: Field required")
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise invalid(f"thinking.enabled.budget_tokens: Input should be a valid integer, got {budget!r}")
        if budget < 1024:
            raise invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    return kind, (None if kind == "disabled" else dict(raw))


def _number(body: Mapping[str, Any], key: str, low: float, high: float | None, integer: bool = False) -> Any:
    v = body.get(key)
    if v is None:
        return None
    ok = not isinstance(v, bool) and isinstance(v, int if integer else (int, float))
    if not ok or v < low or (high is not None and v > high):
        span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        kind = "an integer" if integer else "a number"
        raise invalid(f"{key}: Input should be {kind} {span}, got {v!r}")
    return v


def _common(body: Any, allowed: frozenset[str]) -> Request:
    if not isinstance(body, Mapping):
        raise invalid(f"The request body must be a JSON object, got {type(body).__name__}")
    extra = sorted(k for k in body if k not in allowed)
    if extra:
        raise invalid(f"{extra[0]}: Extra inputs are not permitted")
    name, model = find_model(_require(body, "model"))
    messages = parse_turns(_require(body, "messages"))
    tools = _tools(body.get("tools"))
    req = Request(
        name=name, model=model, messages=messages, system=_system(body.get("system")), tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools), cache_control=body.get("cache_control"),
        body=body,
    )  # fmt: skip
    req.thinking_type, req.thinking = _thinking(body.get("thinking"))
    if body.get("context_management") is not None:
        try:
            req.edits = check_config(body["context_management"], thinking_enabled=req.thinking is not None)
        except ValueError as exc:
            raise invalid(str(exc)) from None
    return req


def parse_message_request(body: Any) -> Request:
    """A Messages API body, shape-checked (400/404 :class:`ErrorReply` otherwise); the model's
    own rules are checked by :func:`convo.sim.rules.check`."""
    req = _common(body, _FIELDS)
    max_tokens = _require(body, "max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise invalid(f"max_tokens: Input should be a valid integer, got {max_tokens!r}")
    if max_tokens < 0:
        raise invalid(f"max_tokens: Input should be greater than or equal to 0, got {max_tokens}")
    req.max_tokens = max_tokens
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise invalid(f"stream: Input should be a valid boolean, got {stream!r}")
    req.stream = stream
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop_sequences: Input should be a list of strings")
    if any(not s.strip() for s in stops):
        raise invalid("stop_sequences: each stop sequence must contain non-whitespace")
    req.stop_sequences = stops
    req.temperature = _number(body, "temperature", 0, 1)
    req.top_p = _number(body, "top_p", 0, 1)
    req.top_k = _number(body, "top_k", 0, None, integer=True)
    return req


def parse_count_request(body: Any) -> Request:
    """A count_tokens body (the Messages body without ``max_tokens``, ``stream`` and sampling)."""
    return _common(body, _COUNT_FIELDS)
