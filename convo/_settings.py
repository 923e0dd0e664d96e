"""A client's settings: one typed list of options, each live or read-only, and ``with_options``.

Live settings take effect on the next call when assigned (an attempt under way settles with the
limiter and budget it reserved from): ``model``, ``user``, ``retry``, ``fallback_models``, ``timeout``, ``limits``,
``budget``, ``prices``, ``cache``, ``cache_ttl``, ``cache_sampling``, ``cache_namespace``,
``redactor``, ``counter``, ``sleep`` and ``catalogue``.

Read-only settings are fixed at construction because something is built from them: the
connection (``api_key``, ``base_url``, ``sdk``, ``http_client``, ``default_headers``), the
concurrency slots (``max_concurrency``) and the clock (``clock``); so is what the client
accumulates (``stats``, ``retry_budget``, ``limiter``). Assigning one raises
:class:`~convo.ReadOnlySettingError`; ``client.with_options(name=value)`` returns a copy with it
changed. Assigning a name that is no setting at all (a typo such as ``client.retries = ...``)
raises ``AttributeError`` instead of being silently ignored.

``with_options`` shares with the original what belongs to the account and the endpoint: the
HTTP connection pool (the SDK's own ``with_options`` when a connection setting changes),
``stats``, the retry budget (unless ``retry`` changes its size), the rate limiter (unless
``limits`` changes) and the concurrency slots (unless ``max_concurrency`` changes). A copy with
another ``clock`` gets its own stats, retry budget and limiter: figures taken on two clocks do
not mix. The connections belong to the original: closing a copy leaves them open. A client
given ``sdk=`` or ``http_client=`` leaves those open too (whoever made them closes them).

The live settings' properties are in :mod:`convo._live_settings`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._context import CallContext
from ._exceptions import InvalidConfigError, ReadOnlySettingError
from ._live_settings import LiveSettings, check_timeout, sdk_timeout
from ._options import CONNECTION, OPTION_NAMES, READ_ONLY
from .models import Catalogue
from .ratelimit import RateLimiter
from .retry import RetryBudget, RetryPolicy
from .usage import Stats

if TYPE_CHECKING:
    from ._drivers import AsyncEnv, SyncEnv

__all__ = ["Settings"]

class Settings(LiveSettings):
    """The settings shared by :class:`~convo.Client` and :class:`~convo.AsyncClient` (see the module doc)."""

    #: The catalogue requests are checked against: the bundled one until ``models()`` refreshes it.
    catalogue: Catalogue

    def _request(
        self, messages: Any, system: Any, max_tokens: int, model: str | None, params: dict[str, Any], *,
        method: str = "create", batch: bool = False,
    ) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover -- the request builder is _requests.Base's

    # -- construction -----------------------------------------------------------------------

    def _setup(self, options: Mapping[str, Any], parent: Settings | None = None, sdk: Any = None) -> None:
        """Build the client from its options; ``parent`` and ``sdk``: a copy made by with_options."""
        clock: Callable[[], float] = options.get("clock") or time.monotonic
        share = parent is not None and parent._clock is clock
        given_sdk = options.get("sdk")
        key = options.get("api_key")
        if key is None:  # the SDK client's own key (keys the Models API cache), else the environment's
            key = getattr(given_sdk, "api_key", None) if given_sdk is not None else os.environ.get("ANTHROPIC_API_KEY")
        if not key and given_sdk is None and sdk is None:
            raise InvalidConfigError(
                "no API key: pass Client(api_key=...) or set ANTHROPIC_API_KEY, or pass sdk= an SDK "
                "client (for the embedded simulator any non-empty key works)"
            )
        concurrency = options.get("max_concurrency", 5)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidConfigError(f"max_concurrency must be a positive int, got {concurrency!r}")
        self._api_key: str | None = key or None
        self._base_url: str | None = options.get("base_url")
        self._default_headers: Mapping[str, str] | None = options.get("default_headers")
        self._max_concurrency = concurrency
        self._clock = clock
        self._sleep = options.get("sleep")
        self._owns_connections = parent is None and given_sdk is None and options.get("http_client") is None
        self.catalogue = parent.catalogue if parent is not None else Catalogue.bundled()
        self._ctx = CallContext(
            policy=RetryPolicy(),
            budget=parent._ctx.budget if share and parent is not None else None,
            stats=parent._ctx.stats if share and parent is not None else Stats(clock),
            clock=clock,
            build=self._request,
        )
        check_timeout(options.get("timeout"))
        self._timeout = options.get("timeout")
        self._env = self._connect(options, parent, sdk)
        self._env.clock = clock
        if self._sleep is not None:
            self._env.sleep = self._sleep
        if self._base_url is None and given_sdk is not None:
            self._base_url = str(getattr(given_sdk, "base_url", "")) or None
        # The live settings, through their setters: one validation for construction and assignment.
        self.prices = options.get("prices")
        self.model = options.get("model")
        self.retry = options.get("retry")
        self.fallback_models = options.get("fallback_models", ())
        self.user = options.get("user")
        limits = options.get("limits")
        if share and parent is not None and limits is parent._limits:
            self._limits = limits
            self._ctx.limiter = parent._ctx.limiter
        else:
            self.limits = limits
        self.budget = options.get("budget")
        self.counter = options.get("counter")
        self.cache = options.get("cache")
        self.cache_ttl = options.get("cache_ttl")
        self.cache_sampling = options.get("cache_sampling", False)
        self.cache_namespace = options.get("cache_namespace")
        self.redactor = options.get("redactor")

    def _connect(self, options: Mapping[str, Any], parent: Settings | None, sdk: Any) -> SyncEnv | AsyncEnv:
        raise NotImplementedError  # pragma: no cover -- each client builds its own SDK and driver

    def _sdk_from(self, given: Any, options: Mapping[str, Any]) -> Any:
        """The SDK client to send through when the caller passed one: a copy with the SDK's retries
        off (convo retries) and any timeout or headers given here, sharing its connections."""
        changes: dict[str, Any] = {}
        if getattr(given, "max_retries", 0) != 0:
            changes["max_retries"] = 0
        for name in ("timeout", "default_headers", "http_client"):
            if options.get(name) is not None:
                changes[name] = options[name]
        if not changes:
            return given
        if not hasattr(given, "with_options"):
            raise InvalidConfigError(
                f"the sdk= client ({type(given).__name__}) has no with_options(), so convo cannot turn its "
                f"retries off or apply {', '.join(sorted(changes))}: build it with max_retries=0 and those settings"
            )
        return given.with_options(**changes)

    def _sdk_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for a new SDK client (retries off: convo retries)."""
        kwargs: dict[str, Any] = {"api_key": self._api_key, "base_url": self._base_url, "max_retries": 0}
        for name in ("timeout", "default_headers", "http_client"):
            if options.get(name) is not None:
                kwargs[name] = options[name]
        return kwargs

    def _current(self) -> dict[str, Any]:
        """Every option as it is now (the connection as given at construction)."""
        ctx = self._ctx
        return {
            "api_key": self._api_key, "base_url": self._base_url, "model": self._model,
            "default_headers": self._default_headers, "timeout": self._timeout,
            "max_concurrency": self._max_concurrency, "retry": ctx.policy, "fallback_models": ctx.fallback_models,
            "user": self._user, "limits": self._limits, "budget": ctx.spend, "prices": ctx.prices,
            "cache": ctx.cache, "cache_ttl": ctx.cache_ttl, "cache_sampling": ctx.cache_sampling,
            "cache_namespace": ctx.cache_namespace, "redactor": ctx.redactor, "counter": ctx.counter,
            "sleep": self._sleep, "clock": self._clock,
        }

    def _copy_with(self, changes: Mapping[str, Any]) -> Any:
        """A copy of this client with ``changes`` (see the module doc for what it shares)."""
        unknown = sorted(set(changes) - OPTION_NAMES)
        if unknown:
            raise InvalidConfigError(
                f"with_options() got unknown option(s) {', '.join(unknown)}; the options are {', '.join(sorted(OPTION_NAMES))}"
            )
        sdk = None
        if changes.get("sdk") is None:
            connection = {name: changes[name] for name in CONNECTION if name in changes}
            if "timeout" in connection:
                connection["timeout"] = sdk_timeout(connection["timeout"])
            if connection and not hasattr(self.sdk, "with_options"):
                raise InvalidConfigError(
                    f"the sdk= client ({type(self.sdk).__name__}) has no with_options(), so convo cannot change "
                    f"{', '.join(sorted(connection))}: pass with_options(sdk=...) a client built with them"
                )
            sdk = self.sdk.with_options(**connection) if connection else self.sdk
        copy = object.__new__(type(self))
        copy._setup({**self._current(), **changes}, parent=self, sdk=sdk)
        return copy

    def __setattr__(self, name: str, value: object) -> None:
        if name in READ_ONLY:
            raise ReadOnlySettingError(
                f"{type(self).__name__}.{name} is fixed when the client is made; use "
                f"client.with_options({name}=...) for a copy with it changed",
                setting=name,
            )
        strict = type(self).__module__ == "convo.client"  # a user's subclass may add attributes
        if strict and name[0] != "_" and name != "catalogue" and not hasattr(type(self), name):
            raise AttributeError(
                f"{type(self).__name__} has no setting {name!r}; the live settings are model, user, retry, "
                "fallback_models, timeout, limits, budget, prices, cache, cache_ttl, cache_sampling, "
                "cache_namespace, redactor, counter, sleep and catalogue"
            )
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={getattr(self, '_model', None)!r}, base_url={getattr(self, '_base_url', None)!r}, "
            f"max_concurrency={getattr(self, '_max_concurrency', None)})"
        )

    # -- read-only --------------------------------------------------------------------------

    @property
    def sdk(self) -> Any:
        """The SDK client requests go through (convo's copy of one given as ``sdk=``)."""
        return self._env.sdk

    @property
    def base_url(self) -> str | None:
        """The API's address as given (None: the SDK's default)."""
        return self._base_url

    @property
    def default_headers(self) -> Mapping[str, str] | None:
        """Headers sent with every request, as given."""
        return self._default_headers

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at most (shared with copies that keep it)."""
        return self._max_concurrency

    @property
    def clock(self) -> Callable[[], float]:
        """The one clock of this client: latency, time to first token, retry deadlines, limits."""
        return self._clock

    @property
    def stats(self) -> Stats:
        """What this client (and its copies on the same clock) has done: see :class:`~convo.usage.Stats`."""
        return self._ctx.stats

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The retry quota shared by this client's calls (None when ``retry.budget`` is 0)."""
        return self._ctx.budget

    @property
    def limiter(self) -> RateLimiter | None:
        """The rate limiter built from ``limits`` (None without limits)."""
        return self._ctx.limiter
