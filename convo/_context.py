"""A client's state, in one place: what every request of the pipeline reads when it runs.

The client's live settings (``retry``, ``cache``, ``budget``, ``redactor``...) read and write
these fields, and every flow reads them when it runs, so an assignment takes effect on the next
call. ``clock`` is the one clock of the client (latency, time to first token, retry deadlines,
the rate limiter). ``build`` is the client's request builder (defaults, normalization and the
model's pre-flight rules), so flows that take raw items (a batch) build them as ``create`` does.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .budget import Budget
from .cache import Cache
from .messages import to_message, to_system
from .prices import PriceTable, UnknownModelError
from .ratelimit import RateLimiter
from .redact import Redactor
from .retry import RetryBudget, RetryPolicy
from .tokens import TokenCounter, default_counter, digest, fixed_tokens
from .usage import Stats

__all__ = ["CallContext", "headers_of", "user_of"]


def _no_builder(*args: Any, **kwargs: Any) -> dict[str, Any]:
    raise RuntimeError("this context has no request builder")  # pragma: no cover -- clients set one


@dataclass
class CallContext:
    """Everything a flow needs from its client (see the module doc)."""

    policy: RetryPolicy
    budget: RetryBudget | None
    stats: Stats
    fallback_models: tuple[str, ...] = ()
    counter: TokenCounter = field(default_factory=default_counter)
    limiter: RateLimiter | None = None
    spend: Budget | None = None
    prices: PriceTable | None = None
    cache: Cache | None = None
    cache_ttl: float | None = None
    cache_sampling: bool = False
    cache_namespace: str | None = None
    redactor: Redactor | None = None
    clock: Callable[[], float] = time.monotonic
    #: ``build(messages, system, max_tokens, model, params, batch=...)``: the client's request.
    build: Callable[..., dict[str, Any]] = _no_builder
    _estimates: OrderedDict[bytes, int] = field(default_factory=OrderedDict)

    def estimate_input(self, request: dict[str, Any]) -> int:
        """convo's estimate of a request's input tokens, remembering each message's count."""
        total = fixed_tokens(self.counter, to_system(request.get("system")), request.get("tools"))
        for m in request["messages"]:
            key = digest(json.dumps(m, sort_keys=True, ensure_ascii=False))
            n = self._estimates.get(key)
            if n is None:
                n = self._estimates[key] = self.counter.count_message(to_message(m))
                if len(self._estimates) > 50_000:
                    self._estimates.popitem(last=False)
            total += n
        return total

    def price_table(self) -> PriceTable:
        """The client's prices, or the bundled catalogue's."""
        return self.prices if self.prices is not None else PriceTable.default()

    def cost(self, usage: Any, model: str, *, batch: bool = False) -> float | None:
        """USD for ``usage`` on ``model`` (``batch``: at Batch API prices); None when unpriced."""
        if usage is None:
            return None
        try:
            return self.price_table().cost(usage, model, batch=batch)
        except UnknownModelError:
            return None


def user_of(request: dict[str, Any]) -> str | None:
    """The end user a request is for (``metadata.user_id``), for budgets and the ledger."""
    metadata = request.get("metadata")
    return metadata.get("user_id") if isinstance(metadata, dict) else None


def headers_of(exc: BaseException) -> Any:
    """The response headers an API error carries (None for a transport failure)."""
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)
