"""The options of a client, as one typed list: ``ClientOptions`` and ``AsyncClientOptions``.

The constructors of :class:`~convo.Client` and :class:`~convo.AsyncClient` list each option as
a keyword parameter (so ``help()``, IDEs and type checkers see them); these TypedDicts type the
same options for ``with_options(**changes)``. ``tests/test_parity.py`` checks that the two lists
agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypedDict

import anthropic
import httpx2

from .budget import Budget
from .cache import Cache
from .prices import PriceTable
from .ratelimit import RateLimits
from .redact import Redactor
from .retry import RetryPolicy
from .tokens import TokenCounter

__all__ = ["CONNECTION", "OPTION_NAMES", "READ_ONLY", "AsyncClientOptions", "AsyncSDK", "ClientOptions", "SyncSDK"]

#: An SDK client convo can send through (``Client(sdk=...)``); any object with the same
#: ``messages`` (``create``, ``stream``, ``count_tokens``) and ``models.list`` works at run time.
SyncSDK = anthropic.Anthropic | anthropic.AnthropicBedrock | anthropic.AnthropicVertex
#: The async twin of :data:`SyncSDK` (``AsyncClient(sdk=...)``).
AsyncSDK = anthropic.AsyncAnthropic | anthropic.AsyncAnthropicBedrock | anthropic.AsyncAnthropicVertex


class _Options(TypedDict, total=False):
    api_key: str | None
    base_url: str | None
    model: str | None
    default_headers: Mapping[str, str] | None
    timeout: float | httpx2.Timeout | None
    max_concurrency: int
    retry: RetryPolicy | None
    fallback_models: str | Sequence[str]
    user: str | None
    limits: RateLimits | None
    budget: Budget | None
    prices: PriceTable | None
    cache: Cache | None
    cache_ttl: float | None
    cache_sampling: bool
    cache_namespace: str | None
    redactor: Redactor | None
    counter: TokenCounter | None
    clock: Callable[[], float] | None


class ClientOptions(_Options, total=False):
    """The keyword arguments of :class:`~convo.Client` (and of its ``with_options``)."""

    sdk: SyncSDK | None
    http_client: httpx2.Client | None
    sleep: Callable[[float], object] | None


class AsyncClientOptions(_Options, total=False):
    """The keyword arguments of :class:`~convo.AsyncClient` (and of its ``with_options``)."""

    sdk: AsyncSDK | None
    http_client: httpx2.AsyncClient | None
    sleep: Callable[[float], Awaitable[object]] | None


OPTION_NAMES = frozenset(ClientOptions.__annotations__) | frozenset(_Options.__annotations__)
#: Settings that are fixed at construction: assigning one raises ReadOnlySettingError.
READ_ONLY = frozenset(
    {"api_key", "base_url", "sdk", "http_client", "default_headers", "max_concurrency", "clock", "stats",
     "retry_budget", "limiter"}
)
#: The options that make a copy's SDK client differ from the original's.
CONNECTION = ("api_key", "base_url", "timeout", "default_headers", "http_client")


