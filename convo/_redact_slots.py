"""Where a request holds text to redact: every (container, key) slot of its messages' content, its
system prompt and the parameters that carry text (stop sequences, tool descriptions and schemas).
The :class:`~convo.redact.Redactor` walks a copy of the request with these, then rewrites the slots."""

from __future__ import annotations

from typing import Any

__all__ = ["collect_content", "collect_params"]


#: Tool input-schema keywords whose values are prose or example data, not structure.
_SCHEMA_TEXT = frozenset({"description", "title", "default", "examples", "enum", "const", "example"})


def collect_params(request: dict[str, Any], slots: list[tuple[Any, Any]]) -> None:
    """The request's parameters that carry text: stop sequences, tool descriptions and schemas."""
    stops = request.get("stop_sequences")
    if isinstance(stops, list):
        slots.extend((stops, i) for i, v in enumerate(stops) if isinstance(v, str))
    for tool in request.get("tools") or ():
        if not isinstance(tool, dict):
            continue
        if isinstance(tool.get("description"), str):
            slots.append((tool, "description"))
        for key in ("input_schema", "output_schema"):
            if isinstance(tool.get(key), (dict, list)):
                _collect_schema(tool[key], slots)


def _collect_schema(schema: Any, slots: list[tuple[Any, Any]]) -> None:
    """The prose and example values inside a JSON schema (never its property names or types)."""
    items = schema.items() if isinstance(schema, dict) else enumerate(schema) if isinstance(schema, list) else ()
    for k, v in items:
        if isinstance(schema, dict) and k in _SCHEMA_TEXT:
            if isinstance(v, str):
                slots.append((schema, k))
            else:
                _collect_strings(v, slots, None)
        elif isinstance(v, (dict, list)):
            _collect_schema(v, slots)


def collect_content(
    container: Any,
    key: Any,
    slots: list[tuple[Any, Any]],
    keyed: list[dict[str, Any]] | None = None,
    thoughts: list[dict[str, Any]] | None = None,
) -> None:
    """Note every (container, key) in a content value that holds text to redact; the dicts whose
    keys hold text (``keyed``) and the thinking blocks (``thoughts``)."""
    value = container[key]
    if isinstance(value, str):
        slots.append((container, key))
        return
    if not isinstance(value, list):
        return
    for block in value:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            slots.append((block, "text"))
            for citation in block.get("citations") or ():
                if isinstance(citation, dict):
                    slots.extend((citation, k) for k in ("cited_text", "document_title", "title")
                                 if isinstance(citation.get(k), str))
        elif kind == "tool_result" and "content" in block:
            collect_content(block, "content", slots, keyed, thoughts)
        elif kind == "tool_use" and "input" in block:
            _collect_strings(block["input"], slots, keyed)
        elif kind == "thinking" and isinstance(block.get("thinking"), str) and thoughts is not None:
            thoughts.append(block)
        elif kind in ("document", "search_result"):
            slots.extend((block, k) for k in ("title", "context") if isinstance(block.get(k), str))
            if kind == "search_result" and "content" in block:
                collect_content(block, "content", slots, keyed, thoughts)
            source = block.get("source")
            if kind == "document" and isinstance(source, dict):
                if source.get("type") == "text" and isinstance(source.get("data"), str):
                    slots.append((source, "data"))
                elif source.get("type") == "content" and "content" in source:
                    collect_content(source, "content", slots, keyed, thoughts)


def _collect_strings(value: Any, slots: list[tuple[Any, Any]], keyed: list[dict[str, Any]] | None) -> None:
    """Every string inside a JSON value (a tool call's input); its dicts, whose keys are text too."""
    if isinstance(value, dict) and keyed is not None and value:
        keyed.append(value)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        if isinstance(v, str):
            slots.append((value, k))
        else:
            _collect_strings(v, slots, keyed)
