"""Client and AsyncClient: the official SDK underneath, convo's retries and streams on top.

>>> from convo import Client
>>> client = Client(base_url="http://127.0.0.1:8080", api_key="test")
>>> client
Client(model='claude-sonnet-5-5', base_url='http://127.0.0.1:8080', max_concurrency=5)

Both are thin shells: every decision lives in the flows of ``_calls`` and ``_resume``, which run
the same way under the sync and the async driver; the settings, live or read-only, and
``with_options`` live in ``_settings``. The API key is read from ``ANTHROPIC_API_KEY`` when not
given and never appears in a repr, a log line or an error. The model defaults to
:data:`convo.models.DEFAULT_MODEL`. Every request is checked against its model's catalogue entry
before it is sent (see ``_preflight``); :meth:`Client.models` refreshes that catalogue from the
Models API.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Self, Unpack, cast

import anthropic
import httpx2
from anthropic.types import Message as SDKMessage

from . import _models_live
from ._calls import call_flow
from ._drivers import AsyncEnv, SyncEnv, drive_async, drive_sync, run_async, run_sync
from ._exceptions import InvalidConfigError
from ._options import AsyncClientOptions, AsyncSDK, ClientOptions, SyncSDK
from ._requests import Base
from ._resume import Restart, stream_flow
from ._settings import Settings
from .budget import Budget
from .cache import Cache
from .models import Catalogue
from .prices import PriceTable
from .ratelimit import RateLimits
from .redact import Redactor
from .retry import RetryPolicy
from .streams import AsyncStream, Stream
from .tokens import TokenCounter

__all__ = ["AsyncClient", "AsyncClientOptions", "AsyncStream", "Client", "ClientOptions", "Stream"]

def _is_async(sdk: Any) -> bool:
    """Whether an SDK client's ``messages.create`` is a coroutine function (an async client)."""
    messages = getattr(sdk, "messages", None)
    create = getattr(messages, "create", None)
    return create is not None and inspect.iscoroutinefunction(inspect.unwrap(create))


def _streamable(max_tokens: object) -> None:
    if max_tokens == 0 and not isinstance(max_tokens, bool):
        raise InvalidConfigError(
            "max_tokens=0 (a cache-warming request: the prompt is cached, nothing is generated) cannot be "
            "streamed; send it with create()"
        )


class Client(Base):
    """Sends requests through the official SDK with convo's retries, fallbacks and streams.

    The connection: ``api_key`` (default ``ANTHROPIC_API_KEY``), ``base_url``,
    ``default_headers`` and ``timeout`` (seconds or an ``httpx2.Timeout``; None: the SDK's
    10 minutes) build an ``anthropic.Anthropic``; or pass ``sdk=`` your own (``Anthropic``,
    ``AnthropicBedrock``, ``AnthropicVertex`` or a compatible object; convo sends through a copy
    with the SDK's retries off, sharing its connections) or ``http_client=`` (an
    ``httpx2.Client``: a proxy, a scripted transport). ``max_concurrency`` bounds requests in
    flight (thread-safe). ``retry`` is a :class:`RetryPolicy`; ``fallback_models`` are tried in
    order after repeated overloaded answers; ``user`` is sent as ``metadata.user_id`` and keys
    the per-user ledger and caps (a call may pass its own ``user=``); ``limits`` are
    :class:`RateLimits`; ``budget`` a :class:`Budget`; ``prices`` a :class:`PriceTable`.
    ``cache`` (a :class:`MemoryCache`, :class:`SQLiteCache` or :class:`RedisCache`) answers
    repeated deterministic requests (temperature 0, or any with ``cache_sampling=True``) without
    calling the API; entries are namespaced by user (``cache_namespace`` overrides). ``redactor``
    (a :class:`Redactor`) removes sensitive data before anything is sent, cached or logged, and
    restores placeholders in replies and streamed text. ``counter`` estimates tokens for limits
    and budgets. ``sleep`` and ``clock`` (monotonic seconds) are the one sleep and clock of
    everything the client times or waits for (latency, time to first token, retry waits and
    ``max_elapsed``, the rate limiter): inject both to run in virtual time. A cache you pass
    times its entries on its own clock (``MemoryCache(clock=...)``).

    Settings are live (assigning ``client.retry = ...`` takes effect on the next call) or
    read-only (the connection, ``max_concurrency``, ``clock``: assigning raises
    :class:`ReadOnlySettingError`); :meth:`with_options` returns a configured copy.
    """

    _env: SyncEnv

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        *,
        sdk: SyncSDK | None = None,
        http_client: httpx2.Client | None = None,
        default_headers: Mapping[str, str] | None = None,
        timeout: float | httpx2.Timeout | None = None,
        max_concurrency: int = 5,
        retry: RetryPolicy | None = None,
        fallback_models: str | Sequence[str] = (),
        user: str | None = None,
        limits: RateLimits | None = None,
        budget: Budget | None = None,
        prices: PriceTable | None = None,
        cache: Cache | None = None,
        cache_ttl: float | None = None,
        cache_sampling: bool = False,
        cache_namespace: str | None = None,
        redactor: Redactor | None = None,
        counter: TokenCounter | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        options: ClientOptions = {
            "api_key": api_key, "base_url": base_url, "model": model, "sdk": sdk, "http_client": http_client,
            "default_headers": default_headers, "timeout": timeout, "max_concurrency": max_concurrency,
            "retry": retry, "fallback_models": fallback_models, "user": user, "limits": limits, "budget": budget,
            "prices": prices, "cache": cache, "cache_ttl": cache_ttl, "cache_sampling": cache_sampling,
            "cache_namespace": cache_namespace, "redactor": redactor, "counter": counter, "sleep": sleep,
            "clock": clock,
        }
        self._setup(options)

    def _connect(self, options: Mapping[str, Any], parent: Settings | None, sdk: Any) -> SyncEnv:
        if sdk is None:
            given = options.get("sdk")
            if given is not None and _is_async(given):
                raise InvalidConfigError(
                    f"sdk= is an async SDK client ({type(given).__name__}); pass it to AsyncClient(sdk=...), "
                    "or give Client a sync one such as anthropic.Anthropic"
                )
            sdk = self._sdk_from(given, options) if given is not None else anthropic.Anthropic(**self._sdk_options(options))
        if parent is not None and isinstance(parent._env, SyncEnv) and parent.max_concurrency == self._max_concurrency:
            return SyncEnv(sdk=sdk, slots=parent._env.slots)  # the copy shares the slots
        return SyncEnv(sdk=sdk, slots=threading.BoundedSemaphore(self._max_concurrency))

    def with_options(self, **changes: Unpack[ClientOptions]) -> Client:
        """A copy of this client with ``changes`` applied (any constructor option), as the SDK's
        ``with_options``: ``client.with_options(timeout=5, model="claude-haiku-4-5").create(...)``.

        The copy shares the HTTP connection pool, ``stats`` and the retry budget, and, unless
        the change is to them, the rate limiter (``limits``) and the concurrency slots
        (``max_concurrency``); with another ``clock`` it keeps its own stats, retry budget and
        limiter. The original owns the connections: closing the copy leaves them open.
        """
        copy: Client = self._copy_with(changes)
        return copy

    def create(
        self,
        messages: Iterable[Any],
        *,
        system: Any = None,
        max_tokens: int = 1024,
        model: str | None = None,
        **params: Any,
    ) -> SDKMessage:
        """``messages.create`` with retries; returns an ``anthropic.types.Message``.

        ``max_tokens=0`` warms the prompt cache: the API writes the request's cache breakpoints
        and generates nothing (not with streaming, thinking or structured outputs).
        """
        request = self._request(messages, system, max_tokens, model, params)
        return cast(SDKMessage, run_sync(call_flow(request, self._ctx), self._env))

    def stream(
        self,
        messages: Iterable[Any],
        *,
        system: Any = None,
        max_tokens: int = 1024,
        model: str | None = None,
        on_restart: Callable[[Restart], Any] | None = None,
        **params: Any,
    ) -> Stream:
        """Stream a reply: ``with client.stream(...) as s: for text in s.text_stream: ...``.

        A failure before any text is retried; after, the stream continues where it stopped.
        If it cannot (a partial tool call or thinking block) it raises StreamRestartedError, or,
        with ``on_restart=callback``, calls ``callback(Restart)`` and starts over.
        """
        _streamable(max_tokens)
        request = self._request(messages, system, max_tokens, model, params)
        flow = stream_flow(request, self._ctx, can_restart=on_restart is not None)
        return Stream(drive_sync(flow, self._env), on_restart)

    def count_tokens(self, messages: Iterable[Any], *, system: Any = None, model: str | None = None, **params: Any) -> int:
        """Exact input tokens from the API's count_tokens endpoint (retried like any call)."""
        request = self._request(messages, system, 1, model, params, method="count_tokens")
        return int(run_sync(call_flow(request, self._ctx, "count_tokens"), self._env).input_tokens)

    def models(self, *, refresh: bool = False, ttl: float = _models_live.MODELS_TTL) -> Catalogue:
        """The model catalogue refreshed from ``GET /v1/models`` (all pages): the API's limits and
        capabilities over the bundled data, bundled prices (a model only the API lists has unknown
        prices). Kept ``ttl`` seconds in this process and on disk (``$CONVO_CACHE_DIR``, default
        ``~/.cache/convo``); ``refresh=True`` asks the API now. Offline or on an error: the bundled
        catalogue, with one warning. Later requests are checked against what this returns.
        """
        hit = self._models_hit(refresh, ttl)
        if hit is not None:
            return hit
        try:
            listed = _models_live.fetch_sync(self.sdk)
        except (anthropic.APIError, httpx2.HTTPError, OSError, ValueError) as exc:  # offline, refused, no endpoint
            self.catalogue = _models_live.failed(self._models_key(), exc)
        else:
            self.catalogue = _models_live.store(self._models_key(), listed)
        return self.catalogue

    def close(self) -> None:
        """Close the SDK's HTTP connections; ``with Client(...) as client:`` does this on exit.

        Only connections this client made: a copy from :meth:`with_options`, and a client given
        ``sdk=`` or ``http_client=``, leave them to their owner.
        """
        if self._owns_connections:
            self.sdk.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(
        self,
        requests: Iterable[Any],
        *,
        concurrency: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        progress: bool = True,
        via: str = "messages",
        on_progress: Callable[[int, int | None], object] | None = None,
        wait: bool = True,
    ) -> Any:
        """Send many requests (dicts of ``create``'s arguments); a ``list[Result]`` in input order.

        ``requests`` may be a generator of any length: it is read as slots free up.
        ``concurrency``: items in flight (default ``max_concurrency``, which still caps calls on
        the wire). ``checkpoint=path``: successes are saved as they arrive and a re-run sends only
        the rest (failed items are sent again). ``via="batches_api"``: use the Message Batches API.
        ``on_progress(done, total)`` is called as items finish (``total`` is None for an
        iterable of unknown length). ``wait=False`` (with ``via="batches_api"``): submit and return
        a :class:`convo.BatchJob` at once (see :mod:`convo.batch_job`). See :mod:`convo.batch`.
        """
        from .batch import batch_flow

        if not wait:
            from .batch_job import submit_flow, wait_check, wrap

            wait_check(via)
            job = run_sync(submit_flow(self._ctx, requests, checkpoint, progress, on_progress), self._env)
            return wrap(self, job, progress, on_progress)
        flow = batch_flow(
            self._ctx, requests, concurrency=self.max_concurrency if concurrency is None else concurrency,
            checkpoint=checkpoint, progress=progress, via=via, on_progress=on_progress,
        )
        results: list[Any] = run_sync(flow, self._env)
        return results


class AsyncClient(Base):
    """The async twin of :class:`Client`: the same arguments, with an async ``sdk``
    (``AsyncAnthropic``, ``AsyncAnthropicBedrock``, ``AsyncAnthropicVertex``), an
    ``httpx2.AsyncClient`` and an async ``sleep``; ``max_concurrency`` applies per event loop.
    """

    _env: AsyncEnv

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        *,
        sdk: AsyncSDK | None = None,
        http_client: httpx2.AsyncClient | None = None,
        default_headers: Mapping[str, str] | None = None,
        timeout: float | httpx2.Timeout | None = None,
        max_concurrency: int = 5,
        retry: RetryPolicy | None = None,
        fallback_models: str | Sequence[str] = (),
        user: str | None = None,
        limits: RateLimits | None = None,
        budget: Budget | None = None,
        prices: PriceTable | None = None,
        cache: Cache | None = None,
        cache_ttl: float | None = None,
        cache_sampling: bool = False,
        cache_namespace: str | None = None,
        redactor: Redactor | None = None,
        counter: TokenCounter | None = None,
        sleep: Callable[[float], Awaitable[object]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        options: AsyncClientOptions = {
            "api_key": api_key, "base_url": base_url, "model": model, "sdk": sdk, "http_client": http_client,
            "default_headers": default_headers, "timeout": timeout, "max_concurrency": max_concurrency,
            "retry": retry, "fallback_models": fallback_models, "user": user, "limits": limits, "budget": budget,
            "prices": prices, "cache": cache, "cache_ttl": cache_ttl, "cache_sampling": cache_sampling,
            "cache_namespace": cache_namespace, "redactor": redactor, "counter": counter, "sleep": sleep,
            "clock": clock,
        }
        self._setup(options)

    def _connect(self, options: Mapping[str, Any], parent: Settings | None, sdk: Any) -> AsyncEnv:
        if sdk is None:
            given = options.get("sdk")
            if given is not None and not _is_async(given):
                raise InvalidConfigError(
                    f"sdk= is a sync SDK client ({type(given).__name__}); pass it to Client(sdk=...), "
                    "or give AsyncClient an async one such as anthropic.AsyncAnthropic"
                )
            sdk = (
                self._sdk_from(given, options) if given is not None
                else anthropic.AsyncAnthropic(**self._sdk_options(options))
            )
        env = AsyncEnv(sdk=sdk, limit=self._max_concurrency)
        if parent is not None and isinstance(parent._env, AsyncEnv) and parent.max_concurrency == self._max_concurrency:
            env.share_slots(parent._env)
        return env

    def with_options(self, **changes: Unpack[AsyncClientOptions]) -> AsyncClient:
        """The async twin of :meth:`Client.with_options`."""
        copy: AsyncClient = self._copy_with(changes)
        return copy

    async def create(
        self,
        messages: Iterable[Any],
        *,
        system: Any = None,
        max_tokens: int = 1024,
        model: str | None = None,
        **params: Any,
    ) -> SDKMessage:
        """The async twin of :meth:`Client.create`: ``messages.create`` with retries; returns an
        ``anthropic.types.Message``.
        """
        request = self._request(messages, system, max_tokens, model, params)
        return cast(SDKMessage, await run_async(call_flow(request, self._ctx), self._env))

    def stream(
        self,
        messages: Iterable[Any],
        *,
        system: Any = None,
        max_tokens: int = 1024,
        model: str | None = None,
        on_restart: Callable[[Restart], Any] | None = None,
        **params: Any,
    ) -> AsyncStream:
        """The async twin of :meth:`Client.stream`:
        ``async with client.stream(...) as s: async for text in s.text_stream: ...``.

        ``on_restart`` may be a coroutine function; it is awaited.
        """
        _streamable(max_tokens)
        request = self._request(messages, system, max_tokens, model, params)
        flow = stream_flow(request, self._ctx, can_restart=on_restart is not None)
        return AsyncStream(drive_async(flow, self._env), on_restart)

    async def count_tokens(
        self, messages: Iterable[Any], *, system: Any = None, model: str | None = None, **params: Any
    ) -> int:
        """The async twin of :meth:`Client.count_tokens`: exact input tokens from the API's
        count_tokens endpoint.
        """
        request = self._request(messages, system, 1, model, params, method="count_tokens")
        return int((await run_async(call_flow(request, self._ctx, "count_tokens"), self._env)).input_tokens)

    async def models(self, *, refresh: bool = False, ttl: float = _models_live.MODELS_TTL) -> Catalogue:
        """The async twin of :meth:`Client.models`."""
        hit = self._models_hit(refresh, ttl)
        if hit is not None:
            return hit
        try:
            listed = await _models_live.fetch_async(self.sdk)
        except (anthropic.APIError, httpx2.HTTPError, OSError, ValueError) as exc:  # offline, refused, no endpoint
            self.catalogue = _models_live.failed(self._models_key(), exc)
        else:
            self.catalogue = _models_live.store(self._models_key(), listed)
        return self.catalogue

    async def close(self) -> None:
        """The async twin of :meth:`Client.close`;
        ``async with AsyncClient(...) as client:`` does this on exit.
        """
        if self._owns_connections:
            await self.sdk.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def batch(
        self,
        requests: Iterable[Any],
        *,
        concurrency: int | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        progress: bool = True,
        via: str = "messages",
        on_progress: Callable[[int, int | None], object] | None = None,
        wait: bool = True,
    ) -> Any:
        """The async twin of :meth:`Client.batch` (``concurrency`` tasks on this event loop);
        ``wait=False`` returns a :class:`convo.AsyncBatchJob`."""
        from .batch import batch_flow

        if not wait:
            from .batch_job import submit_flow, wait_check, wrap

            wait_check(via)
            job = await run_async(submit_flow(self._ctx, requests, checkpoint, progress, on_progress), self._env)
            return wrap(self, job, progress, on_progress)
        flow = batch_flow(
            self._ctx, requests, concurrency=self.max_concurrency if concurrency is None else concurrency,
            checkpoint=checkpoint, progress=progress, via=via, on_progress=on_progress,
        )
        results: list[Any] = await run_async(flow, self._env)
        return results
