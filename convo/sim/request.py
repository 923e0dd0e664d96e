"""Reading a Messages API body: the simulator's own parser, written from the API reference.

The body stays JSON (dicts); :class:`Request` (its messages: :class:`~convo.sim.turns.Turn`) is
a thin typed layer over it. Shape errors come back as 400 ``invalid_request_error`` with a
message that names the field (``messages.2.content.0.text: Field required``); the
model-dependent rules (prefill, sampling, thinking types, images, cache breakpoints) live in
:mod:`convo.sim.rules`.

Accepted as the API accepts them: consecutive turns of the same role (merged into one), a
whitespace-only text block beside real content, and content blocks of any type the
simulator does not know, as long as they are objects with a string ``type``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .catalogue import Model, catalogue
from .edits import check_config
from .errors import ErrorReply, invalid
from .structured import output_schema, strict_tools
from .turns import Turn, check_block, parse_turns

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
_CHOICES = ("auto", "any", "tool", "none")
_THINKING = ("enabled", "disabled", "adaptive", "between_tools")


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
    output: dict[str, Any] | None = None  # the JSON schema of output_config.format (or output_format)
    output_field: str = ""  # which of the two set it
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
    req.output = output_schema(body)
    if req.output is not None:
        req.output_field = "output_format" if body.get("output_format") is not None else "output_config.format"
    strict_tools(tools)
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
