"""The simulator's model catalogue: read from ``convo/data/models.json`` by path.

The simulator shares the data file with convo but not its loader (``convo.models``), so a
mistake in one reader cannot hide in the other. Every id a model answers to resolves here:
its own id, its aliases and its dated snapshots. Retired models are known but not served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["DATA", "Catalogue", "Model", "catalogue"]

#: A wanted field value, or a test of it (``sampling=lambda s: s != "default_only"``).
Want = Any

DATA = Path(__file__).resolve().parent.parent / "data" / "models.json"


@dataclass(frozen=True)
class Model:
    """What the simulator needs to know about one model (fields as in the file's ``_about``)."""

    id: str
    display_name: str
    family: str
    status: str
    released: str | None
    max_input_tokens: int
    max_tokens: int
    max_tokens_batch: int | None
    thinking_enabled: bool
    thinking_adaptive: bool
    thinking_always_on: bool
    effort: bool
    structured_outputs: bool  # output_config.format and strict tools
    prefill: bool
    sampling: str  # free | exclusive | default_only
    min_cache_tokens: int
    tokenizer: str
    names: tuple[str, ...]  # every id it answers to, its own first

    @property
    def served(self) -> bool:
        return self.status != "retired"

    @property
    def created_at(self) -> str:
        """RFC 3339 release time (the epoch when the file does not know it, as the API allows)."""
        if self.released:
            d = date.fromisoformat(self.released)
            return datetime(d.year, d.month, d.day, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return "1970-01-01T00:00:00Z"

    @classmethod
    def from_entry(cls, mid: str, e: dict[str, Any]) -> Model:
        thinking = e.get("thinking") or {}
        names = (mid, *(e.get("aliases") or ()), *(e.get("snapshots") or ()))
        return cls(
            id=mid, display_name=e.get("display_name") or mid, family=e.get("family") or mid,
            status=e.get("status") or "active", released=e.get("released"),
            max_input_tokens=int(e["max_input_tokens"]), max_tokens=int(e["max_tokens"]),
            max_tokens_batch=e.get("max_tokens_batch"),
            thinking_enabled=bool(thinking.get("enabled")), thinking_adaptive=bool(thinking.get("adaptive")),
            thinking_always_on=bool(thinking.get("always_on")), effort=bool(e.get("effort")),
            structured_outputs=bool(e.get("structured_outputs")), prefill=bool(e.get("prefill")),
            sampling=e.get("sampling") or "free",
            min_cache_tokens=int(e.get("min_cache_tokens") or 1024), tokenizer=e.get("tokenizer") or "",
            names=tuple(dict.fromkeys(names)),
        )  # fmt: skip


class Catalogue:
    """The models of one data file, looked up by any of their ids."""

    def __init__(self, models: list[Model]) -> None:
        self.models = models
        self._by_name = {name: m for m in models for name in m.names}

    @classmethod
    def load(cls, path: Path = DATA) -> Catalogue:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls([Model.from_entry(mid, e) for mid, e in (raw.get("models") or {}).items()])

    def find(self, name: str) -> Model | None:
        """The model ``name`` names (id, alias or snapshot), retired ones included; else None."""
        return self._by_name.get(name)

    def where(self, **want: Want) -> Model | None:
        """The first served model (newest first) whose fields match ``want``; else None.

        Tests pick models by the property they need (``where(thinking_always_on=False,
        prefill=True)``) rather than by position, so a new catalogue entry cannot change what
        they exercise. A callable value is a test of the field; anything else must be equal.
        """
        for m in self.served():
            if all(v(getattr(m, k)) if callable(v) else getattr(m, k) == v for k, v in want.items()):
                return m
        return None

    def served(self) -> list[Model]:
        """The models the Models API lists: not retired, newest release first."""
        live = [m for m in self.models if m.served]
        return sorted(live, key=lambda m: (m.released or "", m.id), reverse=True)


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """The bundled catalogue (read once)."""
    return Catalogue.load()
