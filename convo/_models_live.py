"""The live model catalogue: ``GET /v1/models`` through the SDK, cached per process and on disk.

The Models API knows each model's current limits and capabilities (not its prices). A refresh
is kept for ``MODELS_TTL`` seconds in this process and in ``$CONVO_CACHE_DIR/models.json``
(default ``~/.cache/convo``; the file is private, mode 0600, and replaced atomically), keyed
by the base URL and a digest of the API key, never the key itself. Offline, or on any error,
the bundled catalogue is used and one warning is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ._files import write_private
from .models import Catalogue

__all__ = ["MODELS_TTL", "cache_file", "cache_key", "cached", "clear_memory", "failed", "fetch_async",
           "fetch_sync", "store"]

log = logging.getLogger("convo")

#: How long a refreshed catalogue is trusted, in seconds (one day).
MODELS_TTL = 24 * 3600.0
DEFAULT_BASE_URL = "https://api.anthropic.com"
PAGE_SIZE = 1000
_FORMAT = "convo.models"

_lock = threading.Lock()
_memory: dict[str, tuple[float, Catalogue]] = {}
_warned: set[str] = set()


def cache_file() -> Path:
    """Where refreshes are kept: ``$CONVO_CACHE_DIR``, else ``$XDG_CACHE_HOME/convo``, else ``~/.cache/convo``."""
    root = os.environ.get("CONVO_CACHE_DIR")
    if root:
        return Path(root) / "models.json"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "convo" / "models.json"


def cache_key(base_url: str | None, api_key: str | None) -> str:
    """The cache's key for one account at one server (the key is only ever digested)."""
    digest = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
    return f"{(base_url or DEFAULT_BASE_URL).rstrip('/')}#{digest}"


def clear_memory() -> None:
    """Forget the refreshes held in this process (the disk cache stays)."""
    with _lock:
        _memory.clear()
        _warned.clear()


def _read_disk() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("entries"), dict):
        return {}
    entries: dict[str, Any] = data["entries"]
    return entries


def cached(key: str, ttl: float = MODELS_TTL, now: float | None = None) -> Catalogue | None:
    """The refreshed catalogue for ``key`` if one younger than ``ttl`` seconds is held in this
    process or on disk, else None."""
    now = time.time() if now is None else now
    with _lock:
        hit = _memory.get(key)
        if hit is not None and 0 <= now - hit[0] < ttl:
            return hit[1]
        entry = _read_disk().get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("fetched_at"), (int, float)):
            return None
        if not 0 <= now - entry["fetched_at"] < ttl or not isinstance(entry.get("models"), list):
            return None
        catalogue = Catalogue.bundled().merged(entry["models"])
        _memory[key] = (float(entry["fetched_at"]), catalogue)
        return catalogue


def store(key: str, api_models: list[dict[str, Any]], now: float | None = None) -> Catalogue:
    """Merge a fresh model list into the bundle, keep it in memory and on disk, and return it."""
    now = time.time() if now is None else now
    catalogue = Catalogue.bundled().merged(api_models)
    with _lock:
        _memory[key] = (now, catalogue)
        _warned.discard(key)
        entries = _read_disk()
        entries[key] = {"fetched_at": now, "models": api_models}
        try:
            _write_private(cache_file(), json.dumps({"format": _FORMAT, "version": 1, "entries": entries}))
        except OSError as exc:  # a read-only home: the process cache still works
            log.warning("convo: could not save the model list to %s (%s); it is kept in memory only",
                        cache_file(), exc)
    return catalogue


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only, in a private folder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(path, text)


def failed(key: str, exc: BaseException) -> Catalogue:
    """The bundled catalogue, after a refresh failed; warns once per server and key."""
    with _lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        where = key.split("#", 1)[0]
        log.warning(
            "convo: could not list models at %s (%s: %s); using the bundled catalogue (convo/data/models.json)",
            where, type(exc).__name__, exc,
        )
    return Catalogue.bundled()


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(mode="json") if hasattr(model, "model_dump") else dict(model)
    return dumped


def fetch_sync(sdk: Any, page_size: int = PAGE_SIZE) -> list[dict[str, Any]]:
    """Every model ``GET /v1/models`` lists (all pages), as API-shaped dicts."""
    return [_dump(m) for m in sdk.models.list(limit=page_size)]


async def fetch_async(sdk: Any, page_size: int = PAGE_SIZE) -> list[dict[str, Any]]:
    """The async twin of :func:`fetch_sync`."""
    return [_dump(m) async for m in sdk.models.list(limit=page_size)]
