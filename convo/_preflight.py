"""Pre-flight checks: refuse, before sending, a request its model's rules would make the API refuse.

A 400 costs a round trip (and, for a Budget, a held reservation); worse, it arrives after the
retry machinery has started. :func:`check_request` reads the catalogue entry of the request's
model and raises :class:`ModelRuleError` naming the rule, the numbers and the change to make.
It only refuses what the catalogue says the API refuses: anything it does not know, it lets
through. A model convo does not know is sent unchecked, with one warning per model name per
process on the ``convo`` logger.

>>> from convo.models import lookup
>>> check_request({"model": "claude-haiku-4-5", "max_tokens": 100_000, "messages": []},
...               lookup("claude-haiku-4-5"))
Traceback (most recent call last):
...
convo._exceptions.ModelRuleError: max_tokens=100000 is above the maximum of claude-haiku-4-5 (64000 output tokens); lower max_tokens to 64000 or less
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Mapping
from typing import Any

from ._exceptions import InvalidInputError, InvalidMessageError, ModelRuleError
from .models import ModelInfo

__all__ = ["check_json", "check_request", "fit_final_turn", "warn_unknown"]

#: Request options that are not part of the JSON body (the SDK reads them itself).
_NOT_BODY = frozenset({"timeout", "extra_headers", "extra_query"})
#: Deeper than this, a request is a mistake (or a file built to crash the parser), not a conversation.
MAX_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")

log = logging.getLogger("convo")

_warned: set[str] = set()
_lock = threading.Lock()


def warn_unknown(model: str) -> None:
    """Log, once per model name per process, that ``model`` is not in the catalogue."""
    with _lock:
        if model in _warned:
            return
        _warned.add(model)
    log.warning(
        "convo: model %r is not in convo's catalogue (convo/data/models.json): sent without pre-flight checks, "
        "and its cost is reported as unknown",
        model,
    )


def _is_set(value: Any) -> bool:
    return value is not None


def check_request(
    request: Mapping[str, Any], info: ModelInfo | None, *, method: str = "create", batch: bool = False
) -> None:
    """Raise :class:`ModelRuleError` if ``request`` breaks a rule of its model (``info``).

    ``method`` is ``"create"`` (also streams) or ``"count_tokens"`` (no reply, so no reply-length,
    sampling or prefill rules), or ``"params"`` (only that the values can be sent: JSON, typed); ``batch`` checks ``max_tokens`` against the Batch API's cap.
    ``info`` None (an unknown model) checks nothing and warns once.
    """
    check_json({k: v for k, v in request.items() if k not in _NOT_BODY}, "the request")
    tools = request.get("tools")
    if tools is not None and (not isinstance(tools, (list, tuple)) or not all(isinstance(t, Mapping) for t in tools)):
        raise InvalidInputError(
            f"tools must be a list of tool definitions (dicts with a name and an input_schema), got {tools!r:.80}"
        )
    if method == "params":
        return  # only the shape of the parameters (a Conversation checks them before counting)
    model = str(request.get("model"))
    if method != "count_tokens":
        _check_final_turn(request, info)
    if info is None:
        warn_unknown(model)
        return
    name = info.id if model == info.id else f"{model} ({info.id})"
    _check_thinking_mode(request, info, name)
    if method == "count_tokens":
        return
    max_tokens = request.get("max_tokens")
    if isinstance(max_tokens, int) and info.max_tokens > 0:
        _check_max_tokens(max_tokens, info, name, batch)
    _check_budget(request, max_tokens, info, name)
    _check_sampling(request, info, name)
    _check_prefill(request, info, name)


def _fail(rule: str, info: ModelInfo, message: str) -> ModelRuleError:
    return ModelRuleError(message, rule=rule, model=info.id)


def _check_max_tokens(max_tokens: int, info: ModelInfo, name: str, batch: bool) -> None:
    cap = info.output_cap(batch=batch)
    if max_tokens <= cap:
        return
    where = "on the Batch API (beta)" if batch and cap != info.max_tokens else ""
    more = ""
    if not batch and info.max_tokens_batch and info.max_tokens_batch > info.max_tokens:
        more = f" (the Batch API, beta, allows up to {info.max_tokens_batch})"
    raise _fail(
        "max_tokens",
        info,
        f"max_tokens={max_tokens} is above the maximum of {name}{' ' + where if where else ''} "
        f"({cap} output tokens){more}; lower max_tokens to {cap} or less",
    )


def _thinking_type(request: Mapping[str, Any]) -> str | None:
    thinking = request.get("thinking")
    if isinstance(thinking, Mapping):
        kind = thinking.get("type")
        return kind if isinstance(kind, str) else None
    return None


def _check_thinking_mode(request: Mapping[str, Any], info: ModelInfo, name: str) -> None:
    kind = _thinking_type(request)
    t = info.thinking
    if kind == "enabled" and not t.enabled:
        instead = "use thinking={'type': 'adaptive'} (the depth is set by output_config.effort)" if t.adaptive else (
            "remove thinking"
        )
        raise _fail("thinking", info, f"{name} does not accept extended thinking "
                    f"(thinking type 'enabled' with budget_tokens); {instead}")
    if kind == "adaptive" and not t.adaptive:
        instead = "use thinking={'type': 'enabled', 'budget_tokens': N}" if t.enabled else "remove thinking"
        raise _fail("thinking", info, f"{name} does not accept adaptive thinking; {instead}")
    if kind == "disabled" and t.always_on:
        raise _fail("thinking", info, f"thinking cannot be turned off on {name} (it is always on); "
                    "remove thinking={'type': 'disabled'} and lower output_config.effort to spend less")


def _check_budget(request: Mapping[str, Any], max_tokens: Any, info: ModelInfo, name: str) -> None:
    thinking = request.get("thinking")
    if _thinking_type(request) != "enabled" or not isinstance(thinking, Mapping):
        return
    budget = thinking.get("budget_tokens")
    if isinstance(budget, int) and isinstance(max_tokens, int) and budget >= max_tokens:
        raise _fail("budget_tokens", info, f"thinking.budget_tokens={budget} must be less than "
                    f"max_tokens={max_tokens} on {name}; raise max_tokens above {budget} or lower budget_tokens "
                    f"below {max_tokens}")


def _check_sampling(request: Mapping[str, Any], info: ModelInfo, name: str) -> None:
    temperature, top_p, top_k = (request.get(k) for k in ("temperature", "top_p", "top_k"))
    if info.sampling == "default_only":
        changed = [
            f"{key}={value!r}"
            for key, value, default in (("temperature", temperature, 1), ("top_p", top_p, 1), ("top_k", top_k, None))
            if _is_set(value) and value != default
        ]
        if changed:
            raise _fail("sampling", info, f"{name} refuses non-default sampling parameters ({', '.join(changed)}); "
                        "remove temperature, top_p and top_k (steer the model with the prompt and "
                        "output_config.effort instead)")
        return
    thinking_on = _thinking_type(request) in ("enabled", "adaptive") or info.thinking.always_on
    if thinking_on and _is_set(temperature) and temperature != 1:
        raise _fail("sampling", info, f"temperature={temperature!r} with thinking on {name}: temperature may only "
                    "be 1 when thinking is on; remove temperature or turn thinking off")
    if thinking_on and _is_set(top_k):
        raise _fail("sampling", info, f"top_k={top_k!r} with thinking on {name}: top_k must be unset when "
                    "thinking is on; remove top_k")
    if info.sampling == "exclusive" and _is_set(temperature) and _is_set(top_p):
        raise _fail("sampling", info, f"{name} accepts temperature or top_p, not both "
                    f"(temperature={temperature!r}, top_p={top_p!r}); remove one of them")


def _check_prefill(request: Mapping[str, Any], info: ModelInfo, name: str) -> None:
    if info.prefill:
        return
    messages: Any = request.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, Mapping) and last.get("role") == "assistant" and not _paused(last):
        raise _fail("prefill", info, f"{name} does not accept an assistant prefill: the conversation must end "
                    "with a user message; drop the final assistant turn (ask for the format in the prompt "
                    "or use structured outputs instead)")


def _paused(message: Mapping[str, Any]) -> bool:
    """A turn paused by the API (``pause_turn``: it holds server-tool blocks) is sent back to go
    on, which is not a prefill."""
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    return any(isinstance(b, Mapping) and str(b.get("type", "")).startswith(("server_tool_use", "mcp_tool_use"))
               for b in blocks)  # fmt: skip


def _sdk_json(value: Any) -> Any:
    if callable(getattr(value, "model_dump", None)):
        return None  # an SDK (pydantic) object: the SDK serializes it
    raise TypeError(type(value).__name__)


def check_json(value: Any, where: str = "the request", depth: int = 0) -> None:
    """Raise :class:`InvalidInputError` unless ``value`` can be sent as JSON: dicts with str keys,
    lists, str without lone surrogates (UTF-8 cannot encode them), finite numbers, bools, None
    (and pydantic models, which the SDK serializes). Says where the bad value is.

    The common case (it can) is one C-speed serialization; only a failure walks the value to
    say where the bad part is."""
    if depth == 0 and not _has_odd_keys(value):
        try:
            json.dumps(value, allow_nan=False, ensure_ascii=False, default=_sdk_json).encode("utf-8")
        except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
            pass  # find and describe it below
        else:
            return
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"{where} is nested more than {MAX_DEPTH} levels deep; a request is not that deep")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            at = _SURROGATE.search(value)
            assert at is not None
            raise InvalidInputError(
                f"{where} holds a lone surrogate ({at.group()!a} at {at.start()}), which UTF-8 cannot encode; "
                "decode the text with errors='replace' or remove it"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{where} is {value!r}; JSON has no NaN or infinity, give a finite number")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{where} has a key {key!r} of type {type(key).__name__}; JSON keys are str")
            check_json(key, f"a key of {where}", depth + 1)
            check_json(item, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_json(item, f"{where}[{i}]", depth + 1)
        return
    if callable(getattr(value, "model_dump", None)):
        return  # an SDK (pydantic) object: the SDK serializes it
    hint = "; use a list" if isinstance(value, (set, frozenset)) else ""
    raise InvalidInputError(f"{where} is a {type(value).__name__}, which cannot be sent as JSON{hint}")


def _has_odd_keys(value: Any) -> bool:
    """Whether a request's top level or a message has a non-str key (JSON would turn it into a
    string silently; the walk below refuses it). Deeper levels are left to the walk's callers."""
    if not isinstance(value, Mapping):
        return False
    if any(type(k) is not str for k in value):
        return True
    messages = value.get("messages")
    return isinstance(messages, list) and any(
        isinstance(m, Mapping) and any(type(k) is not str for k in m) for m in messages
    )


def _final_text(last: Mapping[str, Any]) -> str | None:
    content = last.get("content")
    if isinstance(content, str):
        return content
    texts = [b.get("text") for b in content or () if isinstance(b, Mapping) and b.get("type") == "text"]
    return texts[-1] if texts and isinstance(texts[-1], str) else None


def fit_final_turn(request: dict[str, Any], info: ModelInfo | None) -> None:
    """A built request's final assistant turn made acceptable, in place: trailing whitespace
    (which the API refuses) is cut from its last text; InvalidMessageError when it holds thinking
    blocks while thinking is off. For requests convo assembles from a stored history (a
    Conversation), where the stored turn is kept as it was."""
    messages: Any = request.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        content = last.get("content")
        if isinstance(content, str) and content != content.rstrip():
            messages[-1] = {**last, "content": content.rstrip()}
        elif isinstance(content, list):
            texts = [i for i, b in enumerate(content) if isinstance(b, Mapping) and b.get("type") == "text"]
            if texts and isinstance(content[texts[-1]].get("text"), str):
                block = content[texts[-1]]
                if block["text"] != block["text"].rstrip() and block["text"].strip():
                    content = list(content)
                    content[texts[-1]] = {**block, "text": block["text"].rstrip()}
                    messages[-1] = {**last, "content": content}
    _check_final_turn(request, info)


def _check_final_turn(request: Mapping[str, Any], info: ModelInfo | None) -> None:
    """A final assistant turn (a prefill) must not end in whitespace, and may hold thinking
    blocks only when thinking is on: the API refuses both."""
    messages: Any = request.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if not isinstance(last, Mapping) or last.get("role") != "assistant":
        return
    content = last.get("content")
    blocks = [b for b in content if isinstance(b, Mapping)] if isinstance(content, list) else []
    if _paused(last):
        return  # a paused server-tool turn, sent back to continue: not a prefill
    tail = _final_text(last)
    if tail is not None and tail != tail.rstrip():
        raise InvalidMessageError(
            f"message {len(messages) - 1}: the final assistant turn ends in whitespace ({tail[len(tail.rstrip()):]!r}), "
            "which the API refuses (final assistant content cannot end with trailing whitespace); strip it"
        )
    thinking_on = _thinking_type(request) not in (None, "disabled") or (info is not None and info.thinking.always_on)
    if not thinking_on and any(b.get("type") in ("thinking", "redacted_thinking") for b in blocks):
        raise InvalidMessageError(
            f"message {len(messages) - 1}: the final assistant turn holds a thinking block but thinking is off, which "
            "the API refuses; turn thinking on for this request, or drop the thinking blocks from that turn"
        )
