"""``GET /v1/models`` and ``GET /v1/models/{model_id}`` from the catalogue, in the API's
``ModelInfo`` shape (id, display_name, created_at, type, lifecycle, max_input_tokens,
max_tokens, capabilities with ``{"supported": bool}`` leaves).

Pagination follows the Models API: newest first, ``limit`` 1-1000 (default 20), ``after_id``
/ ``before_id`` cursors; a page has ``data``, ``first_id``, ``last_id`` and ``has_more``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .catalogue import Model, catalogue
from .errors import ErrorReply, invalid

__all__ = ["model_info", "models_page", "retrieve"]


def _yes(flag: bool) -> dict[str, bool]:
    return {"supported": bool(flag)}


def model_info(m: Model) -> dict[str, Any]:
    """One model as ``ModelInfo``."""
    thinking = m.thinking_enabled or m.thinking_adaptive
    modern = m.family in ("opus", "sonnet", "haiku", "fable") and (m.thinking_adaptive or m.thinking_enabled)
    effort_levels = {level: _yes(m.effort) for level in ("low", "medium", "high", "max")}
    return {
        "type": "model",
        "id": m.id,
        "display_name": m.display_name,
        "created_at": m.created_at,
        "lifecycle": "deprecated" if m.status == "deprecated" else "active",
        "line": m.family if m.family in ("haiku", "sonnet", "opus", "fable", "mythos") else None,
        "max_input_tokens": m.max_input_tokens,
        "max_tokens": m.max_tokens,
        "capabilities": {
            "batch": _yes(True),
            "citations": _yes(True),
            "code_execution": _yes(modern),
            "context_management": {
                "supported": modern,
                "clear_thinking_20251015": _yes(modern and thinking),
                "clear_tool_uses_20250919": _yes(modern),
                "compact_20260112": _yes(modern),
            },
            "effort": {"supported": m.effort, **effort_levels, "xhigh": _yes(m.effort and m.thinking_always_on)},
            "image_input": _yes(True),
            "pdf_input": _yes(True),
            "server_tools": {"supported": True, "code_execution": _yes(True), "web_search": _yes(True)},
            "structured_outputs": _yes(m.structured_outputs),
            "thinking": {
                "supported": thinking,
                "types": {
                    "adaptive": _yes(m.thinking_adaptive),
                    "enabled": _yes(m.thinking_enabled),
                    "disabled": _yes(not m.thinking_always_on),
                    "between_tools": _yes(m.thinking_adaptive),
                },
            },
        },
    }


def retrieve(model_id: str) -> dict[str, Any]:
    """``GET /v1/models/{model_id}``: any id the model answers to (aliases resolve to it)."""
    m = catalogue().find(model_id)
    if m is None or not m.served:
        raise ErrorReply(404, f"model: {model_id}", type="not_found_error")
    return model_info(m)


def models_page(query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /v1/models``: one page of the served models, newest first."""
    raw = query.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        raise invalid(f"limit: Input should be a valid integer, got {raw!r}") from None
    if not 1 <= limit <= 1000:
        raise invalid(f"limit: Input should be between 1 and 1000, got {limit}")
    after, before = query.get("after_id"), query.get("before_id")
    if after and before:
        raise invalid("after_id and before_id cannot both be given")
    ids = [m.id for m in catalogue().served()]
    for cursor in (after, before):
        if cursor and cursor not in ids:
            raise ErrorReply(404, f"model: {cursor}", type="not_found_error")
    if after:
        start = ids.index(after) + 1
        chosen, has_more = ids[start : start + limit], start + limit < len(ids)
    elif before:
        end = ids.index(before)
        chosen, has_more = ids[max(0, end - limit) : end], end - limit > 0
    else:
        chosen, has_more = ids[:limit], limit < len(ids)
    found = catalogue()
    data = [model_info(m) for m in (found.find(i) for i in chosen) if m is not None]
    return {
        "data": data,
        "first_id": chosen[0] if chosen else None,
        "last_id": chosen[-1] if chosen else None,
        "has_more": has_more,
    }
