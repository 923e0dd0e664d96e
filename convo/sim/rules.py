"""The simulator's rulebook: what the API refuses, per model, with the API's messages.

Each rule reads the parsed :class:`~convo.sim.request.Request` and the catalogue's entry for
its model, and raises a 400 :class:`~convo.sim.errors.ErrorReply` (404 for models) when it
breaks. Messages quoted from real API errors are marked "quoted" (the quotes come from the
fact sheet's "Request rules seen in real 400s" and public issue threads); the others are the
simulator's wording in the same style. Shape rules (fields, block types, roles, tool pairing,
the first turn) live in :mod:`convo.sim.request`; e.g. ``messages: first message must use the
"user" role`` is quoted from a real 400 (github.com/tonyljx/TextWordExplain/issues/2).

=============================  =========================================================  ===============================
rule                           source                                                     models
=============================  =========================================================  ===============================
unknown / retired model: 404   https://platform.claude.com/docs/en/api/errors             all (catalogue ids, aliases,
``model: <name>`` (quoted)                                                                snapshots are known)
max_tokens above the model's   https://platform.claude.com/docs/en/about-claude/models/   all (``max_tokens``;
maximum (quoted)               overview                                                   ``max_tokens_batch`` in batches)
max_tokens 0 (cache warming):  observed behaviour reported in                              all; refused with stream or
empty content, ``max_tokens``  github.com/anthony-chaudhary/fak/issues/718 (not found in  thinking
stop, 0 output tokens          the docs crawl)
prompt longer than the         https://platform.claude.com/docs/en/build-with-claude/     all (``max_input_tokens``)
context window                 context-windows
assistant prefill (quoted)     https://platform.claude.com/docs/en/about-claude/models/   ``prefill`` false
                               migration-guide
final assistant content ends   https://platform.claude.com/docs/en/api/messages           all
in whitespace (quoted)
thinking: a final assistant    https://platform.claude.com/docs/en/build-with-claude/     thinking on
turn must start with thinking  extended-thinking
(so no plain-text prefill)
thinking type per model        https://platform.claude.com/docs/en/build-with-claude/     ``thinking.enabled`` /
(``enabled``, ``adaptive``,    adaptive-thinking                                          ``adaptive`` / ``always_on``
``disabled``)
budget_tokens < max_tokens     extended-thinking page                                     thinking ``enabled``
thinking with forced tool use  extended-thinking page                                     thinking on
temperature only 1, top_k      extended-thinking page (quoted)                            thinking on
unset with thinking
temperature and top_p not      models overview / migration guide (quoted)                 ``sampling`` exclusive
both set
non-default sampling           migration guide (quoted for temperature; top_p / top_k     ``sampling`` default_only
(checked before the thinking   use the same wording); fable-5 in                          (always-on thinking ones too)
sampling rule)                 github.com/The-PR-Agent/pr-agent/issues/2456
effort accepted                https://platform.claude.com/docs/en/build-with-claude/     ``effort`` true
                               effort
structured outputs             https://platform.claude.com/docs/en/build-with-claude/     ``structured_outputs`` true
(``output_config.format``,     structured-outputs (the deprecated ``output_format`` is
deprecated ``output_format``)  still accepted)
images: at most 5 MB (quoted), https://platform.claude.com/docs/en/build-with-claude/     all
bytes match ``media_type``     vision
cache_control on empty text;   https://platform.claude.com/docs/en/build-with-claude/     all
at most 4 breakpoints          prompt-caching
=============================  =========================================================  ===============================
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import invalid
from .request import Request, Turn

__all__ = ["MAX_BREAKPOINTS", "MAX_IMAGE_BYTES", "check", "check_context", "count_breakpoints", "paused_turn"]

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_BREAKPOINTS = 4
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
#: Blocks that make a final assistant turn a paused server-tool turn (sent back to continue),
#: not a prefill.
SERVER_BLOCKS = frozenset(
    {"server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
     "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "mcp_tool_use",
     "mcp_tool_result", "tool_search_tool_result"}
)  # fmt: skip


def check(req: Request, *, batch: bool = False) -> None:
    """Every rule for a Messages request (``batch``: it runs inside a Message Batch)."""
    _max_tokens(req, batch)
    _thinking(req)
    _sampling(req)
    _effort(req)
    _structured(req)
    _final_assistant(req)
    check_content(req)


def check_content(req: Request) -> None:
    """The rules that count_tokens shares: images and cache breakpoints (and thinking types)."""
    for where, block in _blocks(req):
        if block.get("type") == "image":
            _image(block, where)
    n = count_breakpoints(req)
    if n > MAX_BREAKPOINTS:
        raise invalid(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {n}.")


def check_context(req: Request, input_tokens: int) -> None:
    """The prompt must fit the model's context window."""
    if input_tokens > req.model.max_input_tokens:
        raise invalid(f"prompt is too long: {input_tokens} tokens > {req.model.max_input_tokens} maximum")


def paused_turn(turn: Turn) -> bool:
    """A final assistant turn that ended in ``pause_turn`` (it holds server-tool blocks)."""
    return turn.role == "assistant" and any(b.get("type") in SERVER_BLOCKS for b in turn.blocks)


# -- the rules ---------------------------------------------------------------------------------


def _max_tokens(req: Request, batch: bool) -> None:
    top = req.model.max_tokens
    if batch and req.model.max_tokens_batch:
        top = max(top, req.model.max_tokens_batch)
    if req.max_tokens > top:
        raise invalid(
            f"max_tokens: {req.max_tokens} > {top}, which is the maximum allowed number of output tokens for {req.name}"
        )
    if req.max_tokens == 0:
        if req.stream:
            raise invalid("max_tokens: 0 (a cache-warming request) cannot be streamed; send it with stream: false")
        if req.thinking is not None:
            raise invalid("max_tokens: 0 (a cache-warming request) cannot be combined with thinking")


def _thinking(req: Request) -> None:
    m, kind = req.model, req.thinking_type
    if kind == "enabled" and not m.thinking_enabled:
        how = "use thinking.type 'adaptive' with output_config.effort instead" if m.thinking_adaptive else ""
        raise invalid(f"thinking.type: 'enabled' is not supported for {req.name}" + (f"; {how}" if how else ""))
    if kind in ("adaptive", "between_tools") and not m.thinking_adaptive:
        raise invalid(f"thinking.type: '{kind}' is not supported for {req.name}; use 'enabled' with budget_tokens")
    if kind == "disabled" and m.thinking_always_on:
        raise invalid(f"thinking.type: 'disabled' is not supported for {req.name}: its thinking is always on")
    if kind is None and m.thinking_always_on:
        req.thinking = {"type": "adaptive"}  # always-on models think without being asked
    thinking = req.thinking
    if thinking is None:
        return
    if thinking["type"] == "enabled" and req.max_tokens and req.max_tokens <= thinking["budget_tokens"]:
        raise invalid(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation "
            f"at {THINKING_DOCS}#max-tokens-and-context-window-size"
        )
    if req.tool_choice is not None and req.tool_choice.get("type") in ("any", "tool"):
        raise invalid("Thinking may not be enabled when tool_choice forces tool use.")


def _sampling(req: Request) -> None:
    """Sampling parameters. On ``default_only`` models the deprecation is checked first: the
    always-on thinking models answer a non-default temperature with "`temperature` is
    deprecated for this model." (claude-fable-5 in github.com/The-PR-Agent/pr-agent/issues/2456),
    not with the thinking rule, which only models that still take sampling parameters reach."""
    t, p, k = req.temperature, req.top_p, req.top_k
    mode = req.model.sampling
    if mode == "default_only":
        for name, value, default in (("temperature", t, 1), ("top_p", p, 1), ("top_k", k, None)):
            if value is not None and value != default:
                raise invalid(f"`{name}` is deprecated for this model.")
    if req.thinking is not None:
        if t is not None and t != 1:
            raise invalid("`temperature` may only be set to 1 when thinking is enabled")
        if k is not None:
            raise invalid("`top_k` must be unset when thinking is enabled")
    if mode == "exclusive" and t is not None and p is not None:
        raise invalid("`temperature` and `top_p` cannot both be specified for this model")


def _effort(req: Request) -> None:
    config = req.body.get("output_config")
    if not isinstance(config, Mapping) or config.get("effort") is None:
        return
    if not req.model.effort:
        raise invalid(f"output_config.effort: effort is not supported for {req.name}")
    if config["effort"] not in EFFORTS:
        raise invalid(f"output_config.effort: Input should be {', '.join(repr(e) for e in EFFORTS)}")


def _structured(req: Request) -> None:
    if req.output is not None and not req.model.structured_outputs:
        raise invalid(
            f"{req.output_field}: structured outputs are not supported for {req.name}; use a model that supports "
            "them, or ask for the JSON through a forced tool call (tool_choice)"
        )


def _final_assistant(req: Request) -> None:
    last, i = req.messages[-1], len(req.messages) - 1
    if last.role == "assistant" and not paused_turn(last):
        if not req.model.prefill:
            raise invalid(
                "This model does not support assistant message prefill. The conversation must end with a user message."
            )
        texts = last.of_type("text")
        if texts and texts[-1]["text"] != texts[-1]["text"].rstrip():
            raise invalid("messages: final assistant content cannot end with trailing whitespace")
    if req.thinking is None:
        if last.role == "assistant":
            for k, b in enumerate(last.blocks):
                if b.get("type") in ("thinking", "redacted_thinking"):
                    raise invalid(
                        f"messages.{i}.content.{k}: When thinking is disabled, an `assistant` message in the final "
                        "position cannot contain `thinking`. To use thinking blocks, enable `thinking` in your request."
                    )
        return
    at = i if last.role == "assistant" else (i - 1 if last.tool_result_ids() else -1)
    if at < 0 or paused_turn(req.messages[at]) or not req.messages[at].blocks:
        return
    first = req.messages[at].blocks[0].get("type")
    if first not in ("thinking", "redacted_thinking"):
        raise invalid(
            f"messages.{at}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When "
            "`thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the "
            "lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from "
            f"previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at "
            f"{THINKING_DOCS}"
        )


# -- blocks --------------------------------------------------------------------------------------


def _blocks(req: Request) -> Iterator[tuple[str, dict[str, Any]]]:
    for j, b in enumerate(req.system):
        yield f"system.{j}", b
    for i, turn in enumerate(req.messages):
        for j, b in enumerate(turn.blocks):
            yield f"messages.{i}.content.{j}", b
            if b.get("type") == "tool_result" and isinstance(b.get("content"), list):
                for k, inner in enumerate(b["content"]):
                    if isinstance(inner, Mapping):
                        yield f"messages.{i}.content.{j}.content.{k}", dict(inner)


def count_breakpoints(req: Request) -> int:
    """Blocks (and tools) carrying ``cache_control``, the top-level one included."""
    n = sum(1 for _, b in _blocks(req) if b.get("cache_control") is not None)
    n += sum(1 for t in req.tools or () if t.get("cache_control") is not None)
    return n + (req.cache_control is not None)


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff(data: bytes) -> str | None:
    """The image type the bytes are, by their magic number."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _image(block: Mapping[str, Any], where: str) -> None:
    src = block["source"]
    if src.get("type") != "base64":
        return
    media = src["media_type"]
    if media not in IMAGE_TYPES:
        raise invalid(f"{where}.source.base64.media_type: Input should be " + ", ".join(repr(t) for t in IMAGE_TYPES))
    data = src["data"]
    size = len(data) * 3 // 4 - data[-2:].count("=")
    if size > MAX_IMAGE_BYTES:
        raise invalid(f"{where}.source.base64: image exceeds 5 MB maximum: {size} bytes > {MAX_IMAGE_BYTES} bytes")
    try:
        head = base64.b64decode(data[:64], validate=True) if len(data) >= 64 else base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}.source.base64.data: the image data is not valid base64") from None
    actual = sniff(head)
    if actual != media:
        seen = f"a {actual} image" if actual else "not an image the API reads (jpeg, png, gif or webp)"
        raise invalid(
            f"{where}.source.base64.data: The image was specified using the {media} media type, but the image "
            f"appears to be {seen}"
        )
