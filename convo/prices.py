"""Model prices and the cost of a response, computed exactly as the API bills it.

>>> from convo.prices import PriceTable
>>> table = PriceTable.default()
>>> round(table.cost({"input_tokens": 1000, "output_tokens": 100}, "claude-sonnet-4-6"), 6)
0.0045

Prices live in ``convo/data/prices.json`` (USD per million tokens); edit that file, or pass
your own ``PriceTable({...})``, when prices change.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ._exceptions import InvalidConfigError

__all__ = ["ModelPrice", "PriceTable", "UnknownModelError"]

_SUFFIX = re.compile(r"-(\d{8}|latest)$")


class UnknownModelError(InvalidConfigError):
    """The price table has no entry for a model, so its cost cannot be computed."""


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float

    @property
    def worst_input(self) -> float:
        """The highest price an input token can cost (a 1-hour cache write)."""
        return max(self.input, self.cache_write_5m, self.cache_write_1h)


_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
           "cache_creation", "service_tier")


def _as_dict(usage: Any) -> Mapping[str, Any]:
    """Usage as a mapping, read once (an SDK Usage object or a dict)."""
    if type(usage) is dict or isinstance(usage, Mapping):
        return usage
    return {name: getattr(usage, name, None) for name in _FIELDS}


def _get(obj: Any, name: str) -> int:
    value = obj.get(name) if type(obj) is dict or isinstance(obj, Mapping) else getattr(obj, name, None)
    return int(value or 0)


class PriceTable:
    """Prices per model, and the cost of a usage block."""

    def __init__(self, models: Mapping[str, Mapping[str, float]], *, batch_discount: float = 0.5) -> None:
        try:
            self.models = {name: ModelPrice(**dict(p)) for name, p in models.items()}
        except (TypeError, ValueError, AttributeError) as exc:  # a missing field, or not a mapping at all
            raise InvalidConfigError(
                f"a price entry needs input, output, cache_write_5m, cache_write_1h, cache_read ({exc})"
            ) from None
        self.batch_discount = batch_discount

    @classmethod
    @functools.cache
    def default(cls) -> PriceTable:
        """The table shipped in ``convo/data/prices.json``."""
        data = json.loads(resources.files("convo").joinpath("data/prices.json").read_text(encoding="utf-8"))
        return cls(data["models"], batch_discount=data.get("batch_discount", 0.5))

    def price(self, model: str) -> ModelPrice:
        found = self.models.get(model)
        if found is None:
            found = self.models.get(_SUFFIX.sub("", model))
        if found is None:
            known = ", ".join(sorted(self.models))
            raise UnknownModelError(
                f"no price for model {model!r}; known: {known}. Add it to convo/data/prices.json "
                "or pass prices=PriceTable({...}) to the client"
            )
        return found

    def cost(self, usage: Any, model: str, *, batch: bool | None = None) -> float:
        """USD for one response's ``usage`` (an SDK Usage object or a dict).

        ``input_tokens`` is what followed the last cache breakpoint; cache writes are billed
        at the 5-minute or 1-hour rate (from ``cache_creation`` when the API breaks them down),
        cache reads at the read rate; batch usage (``service_tier == "batch"``) gets the
        batch discount.
        """
        p = self.price(model)
        usage = _as_dict(usage)
        creation = usage.get("cache_creation")
        written = _get(usage, "cache_creation_input_tokens")
        if creation is not None:
            w5, w1 = _get(creation, "ephemeral_5m_input_tokens"), _get(creation, "ephemeral_1h_input_tokens")
            if w5 + w1 != written:  # no breakdown given: bill all writes at the 5-minute rate
                w5, w1 = written, 0
        else:
            w5, w1 = written, 0
        usd = (
            _get(usage, "input_tokens") * p.input
            + _get(usage, "output_tokens") * p.output
            + w5 * p.cache_write_5m
            + w1 * p.cache_write_1h
            + _get(usage, "cache_read_input_tokens") * p.cache_read
        ) / 1_000_000
        tier = usage.get("service_tier")
        if batch or (batch is None and tier == "batch"):
            usd *= self.batch_discount
        return usd

    def worst_case(self, model: str, input_tokens: float, max_tokens: float) -> float:
        """The most a request can cost: every input token at the highest input rate, plus
        ``max_tokens`` of output."""
        p = self.price(model)
        return (input_tokens * p.worst_input + max_tokens * p.output) / 1_000_000
