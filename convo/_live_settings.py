"""A client's live settings: each a property whose setter checks the value, so a setting is
validated the same way at construction and on assignment, and takes effect on the next call.

:class:`~convo._settings.Settings` builds on these (construction, the read-only settings and
``with_options``); see its module doc for which settings are live.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anthropic
import httpx2

from ._context import CallContext
from ._exceptions import InvalidConfigError
from ._numbers import number
from .budget import Budget
from .cache import Cache
from .models import DEFAULT_MODEL
from .prices import PriceTable
from .ratelimit import RateLimiter, RateLimits
from .redact import Redactor
from .retry import RetryPolicy
from .tokens import TokenCounter, default_counter

if TYPE_CHECKING:
    from ._drivers import AsyncEnv, SyncEnv

__all__ = ["LiveSettings", "sdk_timeout"]


def check_timeout(timeout: object) -> None:
    """A timeout is None, an ``httpx2.Timeout`` or a positive, finite number of seconds."""
    if timeout is not None and not isinstance(timeout, httpx2.Timeout):
        number("timeout", timeout, positive=True, hint=" (seconds per HTTP request, an httpx2.Timeout, or None)")


def sdk_timeout(timeout: float | httpx2.Timeout | None) -> float | httpx2.Timeout:
    """The timeout to hand the SDK: convo's None means the SDK's default (10 minutes)."""
    return anthropic.DEFAULT_TIMEOUT if timeout is None else timeout


class LiveSettings:
    """The settings a client may change while it runs (see the module doc)."""

    _ctx: CallContext
    _env: SyncEnv | AsyncEnv
    _clock: Callable[[], float]
    _limits: RateLimits | None
    _model: str
    _user: str | None
    _timeout: float | httpx2.Timeout | None
    _sleep: Any

    @property
    def model(self) -> str:
        """The model of requests that do not name one."""
        return self._model

    @model.setter
    def model(self, value: str | None) -> None:
        model = DEFAULT_MODEL if value is None else value
        if not isinstance(model, str) or not model.strip():
            raise InvalidConfigError(f"model must be a model name such as {DEFAULT_MODEL!r}, got {value!r}")
        if self._ctx.spend is not None and self._ctx.prices is not None:
            self._ctx.prices.price(model)  # an unknown model cannot be budgeted: say so now
        self._model = model

    @property
    def user(self) -> str | None:
        """Sent as ``metadata.user_id``; keys the per-user ledger and caps (a call may pass ``user=``)."""
        return self._user

    @user.setter
    def user(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise InvalidConfigError(f"user must be a str or None, got {type(value).__name__}")
        self._user = value

    @property
    def retry(self) -> RetryPolicy:
        """The :class:`RetryPolicy`; a new one with another ``budget`` size starts a new retry budget."""
        return self._ctx.policy

    @retry.setter
    def retry(self, value: RetryPolicy | None) -> None:
        policy = RetryPolicy() if value is None else value
        if not isinstance(policy, RetryPolicy):
            raise InvalidConfigError(f"retry must be a RetryPolicy(...), got {type(value).__name__}")
        budget = self._ctx.budget
        if budget is None or budget.capacity != policy.budget:
            self._ctx.budget = policy.new_budget()
        self._ctx.policy = policy

    @property
    def fallback_models(self) -> tuple[str, ...]:
        """Models tried in order after repeated overloaded answers."""
        return self._ctx.fallback_models

    @fallback_models.setter
    def fallback_models(self, value: str | Sequence[str]) -> None:
        models = (value,) if isinstance(value, str) else tuple(value)
        if not all(isinstance(m, str) and m.strip() for m in models):
            raise InvalidConfigError(f"fallback_models must be model names, got {value!r}")
        self._ctx.fallback_models = models

    @property
    def timeout(self) -> float | httpx2.Timeout | None:
        """Seconds (or an ``httpx2.Timeout``) per HTTP request; None: the SDK's default."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | httpx2.Timeout | None) -> None:
        check_timeout(value)
        sdk = self._env.sdk
        if not hasattr(sdk, "with_options"):
            raise InvalidConfigError(f"the sdk= client ({type(sdk).__name__}) has no with_options(), so its timeout is fixed")
        self._env.sdk = sdk.with_options(timeout=sdk_timeout(value))  # shares the connections
        self._timeout = value

    @property
    def limits(self) -> RateLimits | None:
        """Client-side :class:`RateLimits`; assigning starts a new limiter (None: no limits)."""
        return self._limits

    @limits.setter
    def limits(self, value: RateLimits | None) -> None:
        if value is not None and not isinstance(value, RateLimits):
            raise InvalidConfigError(f"limits must be a RateLimits(...), got {type(value).__name__}")
        self._limits = value
        self._ctx.limiter = RateLimiter(value, self._clock) if value is not None else None

    @property
    def budget(self) -> Budget | None:
        """The spending :class:`Budget` requests reserve their worst-case cost from."""
        return self._ctx.spend

    @budget.setter
    def budget(self, value: Budget | None) -> None:
        if value is not None:
            if not isinstance(value, Budget):
                raise InvalidConfigError(f"budget must be a Budget(usd=...), got {type(value).__name__}")
            assert self._ctx.prices is not None  # set first, in _setup
            self._ctx.prices.price(self._model)  # an unknown model cannot be budgeted: say so now
        self._ctx.spend = value

    @property
    def prices(self) -> PriceTable:
        """The :class:`PriceTable` costs and budgets use."""
        assert self._ctx.prices is not None
        return self._ctx.prices

    @prices.setter
    def prices(self, value: PriceTable | None) -> None:
        if value is not None and not isinstance(value, PriceTable):
            raise InvalidConfigError(f"prices must be a PriceTable, got {type(value).__name__}")
        self._ctx.prices = value if value is not None else PriceTable.default()

    @property
    def counter(self) -> TokenCounter:
        """The token counter estimates use (rate limits, budgets)."""
        return self._ctx.counter

    @counter.setter
    def counter(self, value: TokenCounter | None) -> None:
        self._ctx.counter = value if value is not None else default_counter()
        self._ctx._estimates.clear()  # counted by the previous counter

    @property
    def cache(self) -> Cache | None:
        """The response cache (None: no caching)."""
        return self._ctx.cache

    @cache.setter
    def cache(self, value: Cache | None) -> None:
        if value is not None and not all(callable(getattr(value, m, None)) for m in ("get", "set")):
            raise InvalidConfigError(f"cache must be a MemoryCache, SQLiteCache or RedisCache, got {type(value).__name__}")
        self._ctx.cache = value

    @property
    def cache_ttl(self) -> float | None:
        """Seconds a cached reply is kept (None: the cache's own default)."""
        return self._ctx.cache_ttl

    @cache_ttl.setter
    def cache_ttl(self, value: float | None) -> None:
        if value is not None:
            number("cache_ttl", value, positive=True, hint=" (seconds a cached reply is kept, or None)")
        self._ctx.cache_ttl = value

    @property
    def cache_sampling(self) -> bool:
        """Cache requests that sample (temperature above 0) too."""
        return self._ctx.cache_sampling

    @cache_sampling.setter
    def cache_sampling(self, value: bool) -> None:
        self._ctx.cache_sampling = bool(value)

    @property
    def cache_namespace(self) -> str | None:
        """The cache namespace (None: each user's own)."""
        return self._ctx.cache_namespace

    @cache_namespace.setter
    def cache_namespace(self, value: str | None) -> None:
        self._ctx.cache_namespace = value

    @property
    def redactor(self) -> Redactor | None:
        """The :class:`Redactor` applied before anything is sent, cached or logged."""
        return self._ctx.redactor

    @redactor.setter
    def redactor(self, value: Redactor | None) -> None:
        if value is not None and not isinstance(value, Redactor):
            raise InvalidConfigError(f"redactor must be a Redactor(...), got {type(value).__name__}")
        self._ctx.redactor = value

    @property
    def sleep(self) -> Any:
        """How the client waits (between retries, for the rate limiter); None: the real sleep."""
        return self._sleep

    @sleep.setter
    def sleep(self, value: Any) -> None:
        if value is not None and not callable(value):
            raise InvalidConfigError(f"sleep must be a function of seconds, got {type(value).__name__}")
        self._sleep = value
        self._env.sleep = value if value is not None else type(self._env).sleep
