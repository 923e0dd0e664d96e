"""The model catalogue: what convo knows per Claude model, in one place.

>>> from convo.models import DEFAULT_MODEL, lookup
>>> info = lookup(DEFAULT_MODEL)
>>> info.max_input_tokens, info.max_tokens, info.prefill
(1000000, 128000, False)
>>> lookup("claude-haiku-4-5-20251001").id   # snapshots and aliases resolve to their model
'claude-haiku-4-5'

The bundled data lives in ``convo/data/models.json`` (each entry names the docs page it comes
from). Everything that depends on a model — budgets, reply caps, pre-flight checks, costs, the
stream-resume rule — asks this module, never a hard-coded name. ``Client.models()`` refreshes
the limits and capabilities from ``GET /v1/models`` (:meth:`Catalogue.merged`); prices always
come from the bundle.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

__all__ = ["DEFAULT_MODEL", "Catalogue", "ModelInfo", "Thinking", "lookup"]

#: The model convo uses when none is given: the current Sonnet.
DEFAULT_MODEL = "claude-sonnet-5-5"

Sampling = Literal["free", "exclusive", "default_only"]
Status = Literal["active", "legacy", "deprecated", "retired"]
_SUFFIX = re.compile(r"-(\d{8}|latest)$")
_FAMILIES = ("fable", "mythos", "opus", "sonnet", "haiku")
#: The source named by an entry that only the Models API knows.
API_SOURCE = "GET /v1/models"


@dataclass(frozen=True)
class Thinking:
    """Which thinking modes a model accepts."""

    enabled: bool  # extended thinking: {"type": "enabled", "budget_tokens": N}
    adaptive: bool  # {"type": "adaptive"}
    always_on: bool  # thinking cannot be turned off


@dataclass(frozen=True)
class ModelInfo:
    """One model's limits, rules and prices (see ``convo/data/models.json`` for each field).

    ``price`` is empty for a model only the Models API knows: its cost is unknown, never zero.
    ``capabilities`` is the Models API's capability object when the entry was refreshed from it.
    """

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
    sources: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()
    notes: str | None = None
    capabilities: Mapping[str, Any] | None = field(default=None, compare=False)
    #: ``output_config.format`` (JSON outputs) and ``strict`` tools are accepted.
    structured_outputs: bool = False

    @classmethod
    def from_json(cls, model_id: str, entry: Mapping[str, Any]) -> ModelInfo:
        """One entry of ``models.json`` (its ``models[model_id]`` object), as a ModelInfo."""
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
            sources=tuple(entry.get("sources", ())),
            unverified=tuple(entry.get("unverified", ())),
            notes=entry.get("notes"),
            structured_outputs=bool(entry.get("structured_outputs", False)),
        )

    @property
    def priced(self) -> bool:
        """Whether convo knows this model's prices (a model only the API lists has none)."""
        return bool(self.price)

    def output_cap(self, *, batch: bool = False) -> int:
        """The largest ``max_tokens`` accepted (the Batch API's larger cap, beta, with ``batch``)."""
        if batch and self.max_tokens_batch:
            return max(self.max_tokens_batch, self.max_tokens)
        return self.max_tokens

    @classmethod
    def from_api(cls, api: Mapping[str, Any]) -> ModelInfo:
        """An entry for a model the Models API lists but the bundle lacks: the API's limits and
        capabilities, unknown prices, and permissive rules (the API itself will say no)."""
        mid = str(api["id"])
        fallback = next((f for f in _FAMILIES if f in mid), "unknown")
        blank = cls(
            id=mid,
            display_name=str(api.get("display_name") or mid),
            family=str(api.get("line") or fallback),
            status="active",
            max_input_tokens=0,
            max_tokens=0,
            max_tokens_batch=None,
            thinking=Thinking(True, True, False),
            effort=True,
            prefill=True,
            sampling="free",
            min_cache_tokens=1024,
            tokenizer="unknown",
            price={},
            source=API_SOURCE,
            released=_date(api.get("created_at")),
        )
        return blank.with_api(api)

    def with_api(self, api: Mapping[str, Any]) -> ModelInfo:
        """This entry with the limits, capabilities and lifecycle the Models API reports."""
        changes: dict[str, Any] = {}
        for name in ("max_input_tokens", "max_tokens"):
            value = api.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                changes[name] = value
        caps = api.get("capabilities")
        if isinstance(caps, Mapping):
            changes["capabilities"] = caps
            thinking = _supported(caps, "thinking")
            types = caps.get("thinking", {}).get("types", {}) if isinstance(caps.get("thinking"), Mapping) else {}
            if thinking is False:
                changes["thinking"] = Thinking(False, False, False)
            elif isinstance(types, Mapping) and types:
                enabled, adaptive, disabled = (_supported(types, k) for k in ("enabled", "adaptive", "disabled"))
                t = self.thinking
                changes["thinking"] = Thinking(
                    t.enabled if enabled is None else enabled,
                    t.adaptive if adaptive is None else adaptive,
                    t.always_on if disabled is None else not disabled,
                )
            effort = _supported(caps, "effort")
            if effort is not None:
                changes["effort"] = effort
            structured = _supported(caps, "structured_outputs")
            if structured is not None:
                changes["structured_outputs"] = structured
        lifecycle = api.get("lifecycle")
        if lifecycle in ("deprecated", "retired"):
            changes["status"] = lifecycle
            changes["retires"] = _date(api.get("retires_at")) or self.retires
        if api.get("display_name"):
            changes["display_name"] = str(api["display_name"])
        return dataclasses.replace(self, **changes)


def _supported(caps: Mapping[str, Any], name: str) -> bool | None:
    value = caps.get(name)
    if isinstance(value, Mapping) and isinstance(value.get("supported"), bool):
        return bool(value["supported"])
    return None


def _date(value: Any) -> str | None:
    """An ISO date from an RFC 3339 timestamp or a datetime (None for none or the epoch)."""
    if value is None:
        return None
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    day = text[:10]
    return None if day.startswith("1970-") else day


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
        """A catalogue from data in the shape of ``convo/data/models.json`` (for a custom file)."""
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

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def merged(self, api_models: Iterable[Mapping[str, Any]]) -> Catalogue:
        """This catalogue refreshed with ``GET /v1/models`` entries (API-shaped dicts).

        The API's limits, capabilities and lifecycle override the bundle's; prices and request
        rules stay bundled. A model only the API lists is added with unknown prices.
        """
        models = dict(self.models)
        for api in api_models:
            if not isinstance(api, Mapping) or not isinstance(api.get("id"), str):
                continue
            known = self.get(api["id"])
            if known is not None:
                models[known.id] = models[known.id].with_api(api)
            else:
                models[api["id"]] = ModelInfo.from_api(api)
        return Catalogue(models, batch_discount=self.batch_discount)


def lookup(model: str) -> ModelInfo | None:
    """The bundled catalogue's entry for ``model``, or None for a model convo does not know."""
    return Catalogue.bundled().get(model)
