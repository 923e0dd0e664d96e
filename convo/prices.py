"""Model prices and the cost of a response, computed exactly as the API bills it.

>>> from convo.prices import PriceTable
>>> table = PriceTable.default()
>>> round(table.cost({"input_tokens": 1000, "output_tokens": 100}, "claude-sonnet-5-5"), 6)
0.003

Prices live in the model catalogue, ``convo/data/models.json`` (USD per million tokens, each
model's ``price``); edit that file, or pass your own ``PriceTable({...})``, when prices change.
A model with a long-context tier (``price.long_context``) is billed at that tier's rates for a
whole request whose input is above the tier's threshold.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._exceptions import InvalidConfigError

__all__ = ["ModelPrice", "PriceTable", "UnknownModelError"]

_SUFFIX = re.compile(r"-(\d{8}|latest)$")
_RATES = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


class UnknownModelError(InvalidConfigError):
    """The price table has no entry for a model, so its cost cannot be computed."""


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens; ``long_context`` holds the rates for requests whose input is above
    ``above_input_tokens`` (None when the model has one price)."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    long_context: ModelPrice | None = None
    above_input_tokens: int | None = None

    @property
    def worst_input(self) -> float:
        """The highest price an input token can cost (a 1-hour cache write, at any tier)."""
        rates = [self.input, self.cache_write_5m, self.cache_write_1h]
        if self.long_context is not None:
            rates.append(self.long_context.worst_input)
        return max(rates)

    def tier(self, input_tokens: float) -> ModelPrice:
        """The rates that apply to a request with ``input_tokens`` of input in all."""
        if self.long_context is not None and self.above_input_tokens is not None and input_tokens > self.above_input_tokens:
            return self.long_context
        return self


def _model_price(entry: Mapping[str, Any]) -> ModelPrice:
    """A price from a catalogue or table entry (extra keys such as notes are ignored)."""
    def rates(e: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
        i, o, w5, w1, r = (float(e[name]) for name in _RATES)
        return i, o, w5, w1, r

    long = entry.get("long_context")
    if long is None:
        return ModelPrice(*rates(entry))
    if not isinstance(long, Mapping):
        raise TypeError("long_context must be a mapping or null")
    above = long["above_input_tokens"]
    if isinstance(above, bool) or not isinstance(above, int) or above < 1:
        raise ValueError(f"long_context.above_input_tokens must be a positive int, got {above!r}")
    return ModelPrice(*rates(entry), long_context=ModelPrice(*rates(long)), above_input_tokens=above)


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
    """Prices per model, and the cost of a usage block.

    ``PriceTable({"my-model": {"input": 3, "output": 15, "cache_write_5m": 3.75,
    "cache_write_1h": 6, "cache_read": 0.3}})`` makes a custom table (``long_context`` optional,
    in the catalogue's shape).
    """

    def __init__(self, models: Mapping[str, Mapping[str, Any]], *, batch_discount: float = 0.5) -> None:
        try:
            self.models = {name: _model_price(p) for name, p in models.items()}
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a missing field, or not a mapping at all
            raise InvalidConfigError(
                f"a price entry needs input, output, cache_write_5m, cache_write_1h, cache_read ({exc!r})"
            ) from None
        self.batch_discount = batch_discount

    @classmethod
    @functools.cache
    def default(cls) -> PriceTable:
        """The prices in the bundled model catalogue (``convo/data/models.json``), under every
        id, alias and snapshot name; models without prices are left out."""
        from .models import Catalogue  # the catalogue imports nothing from here; keep it that way

        catalogue = Catalogue.bundled()
        models = {
            name: info.price for info in catalogue if info.priced for name in (info.id, *info.aliases, *info.snapshots)
        }
        return cls(models, batch_discount=catalogue.batch_discount)

    def price(self, model: str) -> ModelPrice:
        """The rates for ``model``; a dated (``-YYYYMMDD``) or ``-latest`` name falls
        back to its base name.

        UnknownModelError, listing the known models, when the table has neither.
        """
        found = self.models.get(model)
        if found is None:
            found = self.models.get(_SUFFIX.sub("", model))
        if found is None:
            known = ", ".join(sorted(self.models))
            raise UnknownModelError(
                f"no price for model {model!r}, so its cost cannot be computed or budgeted; known: {known}. "
                "Add the model with its price to convo/data/models.json, or pass "
                "prices=PriceTable({model: {'input': ..., 'output': ..., 'cache_write_5m': ..., "
                "'cache_write_1h': ..., 'cache_read': ...}}) to the client (USD per million tokens)"
            )
        return found

    def cost(self, usage: Any, model: str, *, batch: bool | None = None) -> float:
        """USD for one response's ``usage`` (an SDK Usage object or a dict).

        ``input_tokens`` is what followed the last cache breakpoint; cache writes are billed
        at the 5-minute or 1-hour rate (from ``cache_creation`` when the API breaks them down),
        cache reads at the read rate; when the model has a long-context tier and the request's
        whole input (those three added) is above its threshold, every token is billed at that
        tier; batch usage (``service_tier == "batch"``) gets the batch discount.
        """
        usage = _as_dict(usage)
        creation = usage.get("cache_creation")
        written = _get(usage, "cache_creation_input_tokens")
        if creation is not None:
            w5, w1 = _get(creation, "ephemeral_5m_input_tokens"), _get(creation, "ephemeral_1h_input_tokens")
            if w5 + w1 != written:  # no breakdown given: bill all writes at the 5-minute rate
                w5, w1 = written, 0
        else:
            w5, w1 = written, 0
        fresh, read = _get(usage, "input_tokens"), _get(usage, "cache_read_input_tokens")
        p = self.price(model).tier(fresh + written + read)
        usd = (
            fresh * p.input
            + _get(usage, "output_tokens") * p.output
            + w5 * p.cache_write_5m
            + w1 * p.cache_write_1h
            + read * p.cache_read
        ) / 1_000_000
        tier = usage.get("service_tier")
        if batch or (batch is None and tier == "batch"):
            usd *= self.batch_discount
        return usd

    def worst_case(self, model: str, input_tokens: float, max_tokens: float) -> float:
        """The most a request can cost: every input token at the highest input rate of its tier,
        plus ``max_tokens`` of output."""
        p = self.price(model).tier(input_tokens)
        return (input_tokens * max(p.input, p.cache_write_5m, p.cache_write_1h) + max_tokens * p.output) / 1_000_000
