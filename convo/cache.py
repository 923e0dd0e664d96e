"""Response caches: the same request, by the same user, answered once.

>>> from convo.cache import MemoryCache, cache_key, is_cacheable
>>> request = {"model": "claude-sonnet-4-6", "max_tokens": 64, "temperature": 0,
...            "messages": [{"role": "user", "content": "Hi"}]}
>>> is_cacheable(request)
True
>>> cache = MemoryCache(max_items=1000, ttl=3600)
>>> cache.set(cache_key(request, "alice"), {"id": "msg_1"})
>>> cache.get(cache_key(request, "bob")) is None    # another user never sees alice's answer
True

**Keys.** :func:`cache_key` hashes everything that changes the answer — model, system,
messages, tools, tool choice, sampling parameters, thinking, and any parameter convo does not
know (an unknown parameter might change the answer, so it counts) — and leaves out what does
not: ``metadata``, ``stream``, ``timeout``, ``extra_headers`` (but for ``anthropic-beta``,
which enables features), ``extra_query`` and ``cache_control`` markers. ``extra_body`` is merged in as if its keys were parameters. The
namespace (the user by default) is part of the hash, so namespaces never share entries.

**What is cacheable.** Only requests whose answer is meant to be repeatable: ``temperature``
present and ``<= 0``. A request without ``temperature`` samples at the API's default of 1.0, so
it is *not* cached; nor is one with thinking, which requires temperature 1. Pass
``allow_sampling=True`` to :func:`is_cacheable` to cache sampled answers anyway (the first
sample is then replayed).

**Values** are JSON dicts: :func:`to_entry` turns a response ``Message`` into one and
:func:`from_entry` turns it back. Every backend stores JSON, so all three behave alike.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

import anthropic
import pydantic

from ._cache_stores import CacheError, MemoryCache, RedisCache, SQLiteCache
from ._exceptions import InvalidInputError

__all__ = [
    "Cache",
    "CacheError",
    "MemoryCache",
    "RedisCache",
    "SQLiteCache",
    "cache_key",
    "from_entry",
    "is_cacheable",
    "to_entry",
]

#: Request fields that never change the answer, so they stay out of the key.
IGNORED = frozenset({"metadata", "stream", "timeout", "extra_headers", "extra_query", "max_retries"})
KEY_VERSION = "convo-cache-1"  # bump when the key recipe changes, so old entries are not reused


@runtime_checkable
class Cache(Protocol):
    """What the client needs from a cache. ``ttl`` is in seconds; None means the cache's default."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The value stored under ``key``, or None when it is absent or expired."""

    def set(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        """Store ``value`` (a JSON dict) under ``key`` for ``ttl`` seconds, replacing what was there."""

    def delete(self, key: str) -> None:
        """Remove ``key``; a key that is not there is no error."""

    def clear(self) -> None:
        """Remove every entry this cache holds."""

    def close(self) -> None:
        """Release what the cache holds open (a connection, a file)."""


# -- keys and entries --------------------------------------------------------------------------


def _blocks(content: Any) -> Any:
    """Content as the API sees it: a string is one text block; ``cache_control`` markers are
    dropped (they change billing, not the answer)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return content
    out = []
    for block in content:
        if isinstance(block, dict):
            block = {k: v for k, v in block.items() if k != "cache_control"}
            if block.get("type") == "tool_result" and "content" in block:
                block["content"] = _blocks(block["content"])
        out.append(block)
    return out


def cache_key(request: dict[str, Any], namespace: str) -> str:
    """A sha256 hex digest of what changes the answer to ``request``, plus ``namespace``.

    Pass the user (``metadata.user_id``) as the namespace, or ``""`` for a cache shared by all.
    """
    if not isinstance(namespace, str):
        raise InvalidInputError(f"namespace must be a str (the user id, or '' for shared), got {namespace!r}")
    fields = {k: v for k, v in request.items() if k not in IGNORED and k != "extra_body"}
    fields.update({k: v for k, v in (request.get("extra_body") or {}).items() if k not in IGNORED})
    if "system" in fields:
        fields["system"] = _blocks(fields["system"])
    if isinstance(fields.get("messages"), list):
        fields["messages"] = [{**m, "content": _blocks(m.get("content"))} if isinstance(m, dict) else m for m in fields["messages"]]
    if isinstance(fields.get("tools"), list):
        fields["tools"] = _blocks(fields["tools"])
    betas = _betas(request.get("extra_headers"))
    if betas:  # a beta changes what the model may do (and so the answer); other headers do not
        fields["anthropic-beta"] = betas
    payload = {"v": KEY_VERSION, "namespace": namespace, "request": fields}
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"cannot build a cache key: the request is not plain JSON ({exc})") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _betas(headers: Any) -> list[str]:
    """The ``anthropic-beta`` values of a request's ``extra_headers``, sorted, without duplicates."""
    if not isinstance(headers, dict):
        return []
    values = [v for k, v in headers.items() if isinstance(k, str) and k.lower() == "anthropic-beta"]
    return sorted({b.strip() for v in values if isinstance(v, str) for b in v.split(",") if b.strip()})


def is_cacheable(request: dict[str, Any], allow_sampling: bool = False) -> bool:
    """Whether a response to ``request`` may be cached (see the module doc for the rule)."""
    if allow_sampling:
        return True
    extra = request.get("extra_body") or {}
    temperature = extra.get("temperature", request.get("temperature"))
    if temperature is None or isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        return False  # absent: the API samples at 1.0
    return temperature <= 0


def to_entry(message: Any) -> dict[str, Any]:
    """A response ``Message`` (or its dict) as a JSON dict for :meth:`Cache.set`."""
    if isinstance(message, dict):
        entry: dict[str, Any] = json.loads(json.dumps(message))
        return entry
    dump = getattr(message, "model_dump", None)
    if dump is None:
        raise InvalidInputError(f"to_entry needs an anthropic Message or a dict, got {type(message).__name__}")
    data: dict[str, Any] = dump(mode="json")
    return data


def from_entry(entry: dict[str, Any]) -> anthropic.types.Message:
    """The ``anthropic.types.Message`` stored by :func:`to_entry`; CacheError if it is not one."""
    try:
        return anthropic.types.Message.model_validate(entry)
    except (pydantic.ValidationError, TypeError) as exc:
        raise CacheError(
            f"a cached entry is not a Message ({type(exc).__name__}); delete it or clear the cache"
        ) from None
