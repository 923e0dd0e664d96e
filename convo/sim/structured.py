"""Structured outputs: ``output_config.format`` (JSON outputs) and ``tools[].strict``.

A request may ask for its answer as JSON valid for a schema, ``output_config: {"format":
{"type": "json_schema", "schema": {...}}}``; the older top-level ``output_format`` (same
object) is deprecated but still accepted for a transition period, as the docs say
(https://platform.claude.com/docs/en/build-with-claude/structured-outputs). Models the
catalogue does not mark ``structured_outputs`` answer 400 (the simulator's wording).

The offline model's answer is deterministic JSON for the schema, its values drawn from the
conversation where it can: a string property whose name the text mentions takes the words
after it ("name: Ada Lovelace" -> ``"Ada Lovelace"``), a number the number after it, an enum
the value the text mentions; formats (email, date, date-time, uri, uuid) take a match from the
text or a fixed example (a property named ``email``, ``*_date``, ``*_url`` ... too); a
property with a ``default`` the text does not set keeps it; arrays of strings take the text's key words. Objects get every
property, nested schemas, ``$ref`` / ``$defs`` (pydantic's), ``anyOf`` and ``allOf`` are
followed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import invalid
from .text import terms

__all__ = ["answer", "output_schema", "strict_tools"]

_DEPTH = 8
_FORMATS = {
    "email": (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "user@example.com"),
    "date-time": (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?"),
                  "2026-01-01T00:00:00Z"),
    "date": (re.compile(r"\d{4}-\d{2}-\d{2}"), "2026-01-01"),
    "time": (re.compile(r"\b\d{2}:\d{2}(?::\d{2})?\b"), "12:00:00"),
    "uri": (re.compile(r"https?://[^\s\"'<>)]+"), "https://example.com"),
}  # fmt: skip
#: Formats a property's name implies ("email", "contact_email", "start_date", "homepage_url").
_NAMED_FORMATS = {"email": "email", "date": "date", "url": "uri", "uri": "uri", "link": "uri", "time": "time"}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _format_of(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise invalid(f"{where}: Input should be a valid object")
    if raw.get("type") != "json_schema":
        raise invalid(f"{where}.type: Input should be 'json_schema', got {raw.get('type')!r}")
    schema = raw.get("schema")
    if not isinstance(schema, Mapping):
        raise invalid(f"{where}.schema: Field required (a JSON schema object)")
    if "type" not in schema and not any(k in schema for k in ("$ref", "anyOf", "oneOf", "allOf", "enum", "const")):
        raise invalid(f"{where}.schema: Invalid schema: Schema type is missing")
    return dict(schema)


def output_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request's answer must follow (None when it sets no output format);
    400 for a malformed format or both spellings at once."""
    config = body.get("output_config")
    current = config.get("format") if isinstance(config, Mapping) else None
    old = body.get("output_format")
    if current is not None and old is not None:
        raise invalid(
            "output_format: cannot be combined with output_config.format; use output_config.format only "
            "(output_format is deprecated)"
        )
    if current is not None:
        return _format_of(current, "output_config.format")
    if old is not None:
        return _format_of(old, "output_format")
    return None


def strict_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The names of the tools marked ``strict: true``; 400 for a ``strict`` that is not a boolean."""
    names = []
    for k, t in enumerate(tools or ()):
        if "strict" not in t:
            continue
        if not isinstance(t["strict"], bool):
            raise invalid(f"tools.{k}.custom.strict: Input should be a valid boolean, got {t['strict']!r}")
        if t["strict"]:
            names.append(str(t["name"]))
    return names


# -- the answer -------------------------------------------------------------------------------


class _Filler:
    """Values for one schema, from one conversation's text."""

    def __init__(self, root: Mapping[str, Any], text: str) -> None:
        self.root = root
        self.text = text
        self.lower = text.lower()
        self.words = list(dict.fromkeys(terms(text)))

    def resolve(self, schema: Any) -> Any:
        seen = 0
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < _DEPTH:
            ref = schema["$ref"]
            node: Any = self.root
            if ref.startswith("#"):
                for part in ref[1:].strip("/").split("/"):
                    if part:
                        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, Mapping) else None
            else:
                node = None
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**node, **rest} if isinstance(node, Mapping) else rest
            seen += 1
        if isinstance(schema, Mapping) and isinstance(schema.get("allOf"), list):
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part)
                if isinstance(part, Mapping):
                    merged = {**part, **merged}
            schema = merged
        return schema

    def value(self, schema: Any, name: str = "", depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if not isinstance(schema, Mapping) or schema is True:
            return self.string({}, name)
        if "const" in schema:
            return schema["const"]
        if "default" in schema and not self.after(name):
            return schema["default"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.choice(schema["enum"])
        options = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(options, list) and options:
            resolved = [self.resolve(o) for o in options]
            picked = next((o for o in resolved if not (isinstance(o, Mapping) and o.get("type") == "null")), resolved[0])
            return self.value(picked, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind == "object":
            return self.obj(schema, depth)
        if kind == "array":
            return self.array(schema, name, depth)
        if kind in ("integer", "number"):
            return self.number(schema, name, integer=kind == "integer")
        if kind == "boolean":
            return self.boolean(name)
        if kind == "null":
            return None
        return self.string(schema, name)

    def obj(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties") or {}
        required = [k for k in schema.get("required") or () if isinstance(k, str)]
        keys = list(dict.fromkeys([*props, *required])) if depth < _DEPTH else required
        return {k: self.value(props.get(k, {}), k, depth + 1) for k in keys}

    def array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems") or 0)
        high = schema.get("maxItems")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            return [self.value(p, name, depth + 1) for p in prefix]
        items = self.resolve(schema.get("items", {}))
        plain = isinstance(items, Mapping) and (
            not items or (items.get("type") == "string" and not {"enum", "const", "format"} & items.keys())
        )
        if depth >= _DEPTH:
            n = low
        elif plain:
            n = max(low, min(3, len(self.words)) or 1)
        else:
            n = max(low, 1)
        if isinstance(high, int) and not isinstance(high, bool):
            n = min(n, high)
        if plain:
            words = self.words or ["example"]
            out = [words[i % len(words)] for i in range(n)]
            if schema.get("uniqueItems"):
                out = [w if w not in out[:i] else f"{w} {i + 1}" for i, w in enumerate(out)]
            return [self.sized(items, w) for w in out]
        return [self.value(items, name, depth + 1) for _ in range(n)]

    def after(self, name: str) -> str:
        """The words the text puts after a mention of ``name`` ("city: Paris", "city is Paris")."""
        if not name:
            return ""
        spoken = re.escape(name).replace("_", "[ _]").replace(r"\-", "[ -]")
        m = re.search(
            rf"(?<![\w]){spoken}s?(?![\w])\s*(?:[:=]|\bis\b|\bare\b|\bwas\b|：)\s*[\"'“]?([^\n,;.!?\"'”]+)",
            self.text,
            re.IGNORECASE,
        )
        return m.group(1).strip() if m else ""

    def string(self, schema: Mapping[str, Any], name: str) -> str:
        given = schema.get("format")
        fmt = given or _NAMED_FORMATS.get(name.lower().rsplit("_", 1)[-1])
        if fmt == "uuid":
            digest = hashlib.blake2b(f"{name}\x00{self.text}".encode(), digest_size=16).hexdigest()
            return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"
        if fmt in _FORMATS:
            pattern, example = _FORMATS[fmt]
            found = pattern.search(self.after(name)) or pattern.search(self.text)
            value = found.group(0) if found else example
            return value if given else self.sized(schema, value)
        said = self.after(name)
        if not said:
            said = " ".join(self.words[:3]) if self.words else (name or "example")
        return self.sized(schema, said)

    def sized(self, schema: Any, text: str) -> str:
        if not isinstance(schema, Mapping):
            return text
        low, high = schema.get("minLength"), schema.get("maxLength")
        if isinstance(high, int) and len(text) > high:
            text = text[:high]
        if isinstance(low, int) and len(text) < low:
            text = text + "x" * (low - len(text))
        return text

    def number(self, schema: Mapping[str, Any], name: str, *, integer: bool) -> int | float:
        found = _NUMBER.search(self.after(name))
        value: float = float(found.group(0)) if found else 1.0
        low = schema.get("minimum")
        if isinstance(schema.get("exclusiveMinimum"), (int, float)):
            low = max(low if isinstance(low, (int, float)) else float("-inf"), schema["exclusiveMinimum"] + 1)
        high = schema.get("maximum")
        if isinstance(schema.get("exclusiveMaximum"), (int, float)):
            high = min(high if isinstance(high, (int, float)) else float("inf"), schema["exclusiveMaximum"] - 1)
        if isinstance(low, (int, float)) and value < low:
            value = low
        if isinstance(high, (int, float)) and value > high:
            value = high
        return int(value) if integer else value

    def boolean(self, name: str) -> bool:
        said = self.after(name).lower()
        return not said.startswith(("no", "false", "not"))

    def choice(self, options: list[Any]) -> Any:
        for option in options:
            if isinstance(option, str) and re.search(rf"(?<!\w){re.escape(option.lower())}(?!\w)", self.lower):
                return option
        return options[0]


def answer(schema: Mapping[str, Any], text: str) -> str:
    """JSON text valid for ``schema``, its values drawn from ``text`` (the conversation)."""
    value = _Filler(schema, text).value(schema)
    return json.dumps(value, ensure_ascii=False)
