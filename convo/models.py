"""The model catalogue: what convo knows per Claude model, in one place.

>>> from convo.models import lookup
>>> info = lookup("claude-sonnet-4-6")
>>> info.max_input_tokens, info.prefill
(1000000, False)

The bundled data lives in ``convo/data/models.json`` (each entry names the docs page it comes
from). Everything that depends on a model — budgets, reply caps, pre-flight checks, costs, the
stream-resume rule — asks this module, never a hard-coded name.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

__all__ = ["DEFAULT_MODEL", "Catalogue", "ModelInfo", "Thinking", "lookup"]

#: The model convo uses when none is given: the current Sonnet.
DEFAULT_MODEL = "claude-sonnet-5-5"

Sampling = Literal["free", "exclusive", "default_only"]
Status = Literal["active", "legacy", "deprecated", "retired"]
_SUFFIX = re.compile(r"-(\d{8}|latest)$")


@dataclass(frozen=True)
class Thinking:
    """Which thinking modes a model accepts."""

    enabled: bool  # extended thinking: {"type": "enabled", "budget_tokens": N}
    adaptive: bool  # {"type": "adaptive"}
    always_on: bool  # thinking cannot be turned off


@dataclass(frozen=True)
class ModelInfo:
    """One model's limits, rules and prices (see ``convo/data/models.json`` for each field)."""

    id: str
    display_name: str
    family: str
    status: Status
    max_input_tokens: int
    max_tokens: int
    max_tokens_batch: int | None
    thinking: Thinking
    effort: bool
    prefill: bool
    sampling: Sampling
    min_cache_tokens: int
    tokenizer: str
    price: Mapping[str, Any]
    source: str
    aliases: tuple[str, ...] = ()
    snapshots: tuple[str, ...] = ()
    released: str | None = None
    retires: str | None = None

    @classmethod
    def from_json(cls, model_id: str, entry: Mapping[str, Any]) -> ModelInfo:
        t = entry["thinking"]
        return cls(
            id=model_id,
            display_name=entry["display_name"],
            family=entry["family"],
            status=entry["status"],
            max_input_tokens=int(entry["max_input_tokens"]),
            max_tokens=int(entry["max_tokens"]),
            max_tokens_batch=entry.get("max_tokens_batch"),
            thinking=Thinking(bool(t["enabled"]), bool(t["adaptive"]), bool(t["always_on"])),
            effort=bool(entry["effort"]),
            prefill=bool(entry["prefill"]),
            sampling=entry["sampling"],
            min_cache_tokens=int(entry["min_cache_tokens"]),
            tokenizer=entry["tokenizer"],
            price=dict(entry["price"]),
            source=entry["source"],
            aliases=tuple(entry.get("aliases", ())),
            snapshots=tuple(entry.get("snapshots", ())),
            released=entry.get("released"),
            retires=entry.get("retires"),
        )


class Catalogue:
    """Models by id, resolving aliases, dated snapshots and ``-latest`` names."""

    def __init__(self, models: Mapping[str, ModelInfo], *, batch_discount: float = 0.5) -> None:
        self.models = dict(models)
        self.batch_discount = batch_discount
        self._names: dict[str, str] = {}
        for info in self.models.values():
            for name in (info.id, *info.aliases, *info.snapshots):
                self._names[name] = info.id

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Catalogue:
        models = {mid: ModelInfo.from_json(mid, entry) for mid, entry in data["models"].items()}
        return cls(models, batch_discount=float(data.get("batch_discount", 0.5)))

    @classmethod
    @functools.cache
    def bundled(cls) -> Catalogue:
        """The catalogue shipped in ``convo/data/models.json``."""
        text = resources.files("convo").joinpath("data/models.json").read_text(encoding="utf-8")
        return cls.from_json(json.loads(text))

    def get(self, model: str) -> ModelInfo | None:
        """The model named ``model`` (an id, alias or snapshot), or None when unknown."""
        mid = self._names.get(model) or self._names.get(_SUFFIX.sub("", model))
        return self.models[mid] if mid is not None else None

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.get(model) is not None

    def __iter__(self) -> Any:
        return iter(self.models.values())


def lookup(model: str) -> ModelInfo | None:
    """The bundled catalogue's entry for ``model``, or None for a model convo does not know."""
    return Catalogue.bundled().get(model)
