"""OpenTelemetry spans and metrics for convo's calls, as two guards of the pipeline.

One span per logical operation, after the GenAI semantic conventions: a call (``chat {model}``,
kind CLIENT) from the ``Tracing`` guard, first in the guard order (``_guards``), so it covers
redaction, the cache, the budget, the rate limiter and every attempt; each attempt a child span
from the ``AttemptSpans`` guard, last in the order, so it covers exactly what was sent; its error
and why it will be retried are on it. The SDK's own span of the HTTP call nests under the attempt (the
attempt's span is the current one while the SDK is called), so a call with retries is one trace
with one root. A Conversation turn, a batch and a map-reduce are parent spans (:func:`span`).

The duration and token-usage histograms of the conventions (``gen_ai.client.operation.duration``,
``gen_ai.client.token.usage``) are recorded as each call ends. DEBUG lines go to the named loggers
(``convo.client``, ``convo.retry``) whether or not OpenTelemetry is installed.

Without ``opentelemetry-api`` (``pip install 'convo[otel]'``), or with no tracer or meter
provider set up, the guards only check that at the call's start and step aside. Message content is
recorded only after ``convo.telemetry.configure(capture_content=True)``, and then as the API saw
it: through the client's redactor.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from . import __version__
from ._flow import Flow
from ._tally import TALLY, Tally

# The optional extra (convo[otel]), imported at the first call that could be traced, so that
# importing convo does not load it.
otel_context: Any = None
otel_metrics: Any = None
otel_trace: Any = None
SpanKind: Any = None
StatusCode: Any = None
_loaded = False
_metrics_state: Any = None  # the module that holds the API's global meter provider
_from_env = False  # a provider named by OTEL_PYTHON_*_PROVIDER: the API loads it on first use


def load_api() -> bool:
    """Import OpenTelemetry's API once; False when it is not installed."""
    global otel_context, otel_metrics, otel_trace, SpanKind, StatusCode, _loaded, _metrics_state, _from_env
    if not _loaded:
        _loaded = True
        try:
            from opentelemetry import context, metrics, trace
            from opentelemetry.metrics import _internal
        except ImportError:
            return False
        otel_context, otel_metrics, otel_trace, _metrics_state = context, metrics, trace, _internal
        SpanKind, StatusCode = trace.SpanKind, trace.StatusCode
        _from_env = any(k in os.environ for k in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"))
    return otel_trace is not None


def idle() -> bool:
    """Whether nothing at all would record a call (the hot path's test when tracing is off):
    no providers configured here or globally, nor DEBUG logging. Reads the API's globals
    directly, as ``get_tracer_provider`` costs an environment lookup per call; should they move
    in a later API, this answers False and the full check runs."""
    if not SETTINGS.enabled:
        return True
    if SETTINGS.tracer_provider is not None or SETTINGS.meter_provider is not None or log.isEnabledFor(logging.DEBUG):
        return False
    if not (_loaded or load_api()) or otel_trace is None:
        return True
    return (not _from_env and getattr(otel_trace, "_TRACER_PROVIDER", 0) is None
            and getattr(_metrics_state, "_METER_PROVIDER", 0) is None)

__all__ = [
    "CONVERSATION", "PARENT", "PROVIDER", "SETTINGS", "Settings", "attach", "carry", "conversation_id", "detach", "idle",
    "instruments", "load_api", "observe_stats", "span", "traced_turn", "tracer", "turn",
]

log = logging.getLogger("convo.client")
retry_log = logging.getLogger("convo.retry")

SCOPE = "convo"
PROVIDER = "anthropic"
#: The bucket boundaries the GenAI metric conventions give.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


@dataclass
class Settings:
    """What :func:`convo.telemetry.configure` set."""

    enabled: bool = True
    capture_content: bool = False
    tracer_provider: Any = None
    meter_provider: Any = None


SETTINGS = Settings()

#: The span a call should start under when the current context cannot carry it (a batch item
#: run in a worker thread): set by :func:`carry` around each step of the item's flow.
PARENT: ContextVar[Any] = ContextVar("convo_otel_parent", default=None)
#: The conversation whose turn is running, for ``gen_ai.conversation.id`` on its calls.
CONVERSATION: ContextVar[str | None] = ContextVar("convo_conversation_id", default=None)


_tracers: dict[int, tuple[Any, Any]] = {}
_meters: dict[int, tuple[Any, Any, Any]] = {}


def _no_provider(provider: Any) -> bool:
    name = type(provider).__name__
    return name in ("ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider")


def tracer() -> Any:
    """The tracer convo's spans come from, or None when nothing would record them."""
    if not SETTINGS.enabled or not (_loaded or load_api()) or otel_trace is None:
        return None
    provider = SETTINGS.tracer_provider or otel_trace.get_tracer_provider()
    got = _tracers.get(id(provider))
    if got is None or got[0] is not provider:
        got = _tracers[id(provider)] = (provider, None if _no_provider(provider) else provider.get_tracer(SCOPE, __version__))
    return got[1]


def instruments() -> tuple[Any, Any] | None:
    """The (duration, token usage) histograms, or None when no meter provider is set up."""
    if not SETTINGS.enabled or not (_loaded or load_api()) or otel_metrics is None:
        return None
    provider = SETTINGS.meter_provider or otel_metrics.get_meter_provider()
    got = _meters.get(id(provider))
    if got is None or got[0] is not provider:
        if _no_provider(provider):
            got = (provider, None, None)
        else:
            meter = provider.get_meter(SCOPE, __version__)
            duration = meter.create_histogram(
                "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
            )
            tokens = meter.create_histogram(
                "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
            )
            got = (provider, duration, tokens)
        _meters[id(provider)] = got
    return None if got[1] is None else (got[1], got[2])


def observe_stats(stats: Any, attributes: dict[str, Any] | None = None) -> bool:
    """Export a client's :class:`~convo.Stats` as observable counters, read at each collection:
    ``convo.client.requests`` (by ``convo.outcome``: ``success`` or the error type),
    ``convo.client.retries``, ``convo.client.cost`` (USD), ``convo.client.tokens`` (by
    ``gen_ai.token.type``) and ``convo.client.cache`` (by ``convo.cache.result``). False when no
    meter provider is set up."""
    if not SETTINGS.enabled or not (_loaded or load_api()) or otel_metrics is None:
        return False
    provider = SETTINGS.meter_provider or otel_metrics.get_meter_provider()
    if _no_provider(provider):
        return False
    import weakref

    ref = weakref.ref(stats)
    base = dict(attributes or {})
    observation = otel_metrics.Observation

    def read(pick: Callable[[dict[str, Any]], list[tuple[float, dict[str, Any]]]]) -> Callable[[Any], Any]:
        def callback(options: Any) -> Any:
            current = ref()
            if current is None:
                return []
            return [observation(value, {**base, **extra}) for value, extra in pick(current.as_dict())]
        return callback

    meter = provider.get_meter(SCOPE, __version__)
    meter.create_observable_counter("convo.client.requests", [read(lambda d: [
        (d["successes"], {"convo.outcome": "success"}), *((n, {"convo.outcome": k}) for k, n in d["failures"].items())
    ])], unit="{request}", description="Calls a client finished, by outcome.")
    meter.create_observable_counter("convo.client.retries", [read(lambda d: [(d["retries"], {})])], unit="{retry}",
                                    description="Attempts sent again after a failure.")
    meter.create_observable_counter("convo.client.cost", [read(lambda d: [(d["cost_usd"], {})])], unit="USD",
                                    description="What a client's requests cost.")
    meter.create_observable_counter("convo.client.tokens", [read(lambda d: [
        (d["input_tokens"], {"gen_ai.token.type": "input"}), (d["output_tokens"], {"gen_ai.token.type": "output"}),
        (d["cache_read_tokens"], {"gen_ai.token.type": "cache_read"}),
        (d["cache_write_tokens"], {"gen_ai.token.type": "cache_creation"}),
    ])], unit="{token}", description="Tokens of a client's requests, by type.")
    meter.create_observable_counter("convo.client.cache", [read(lambda d: [
        (d["cache_hits"], {"convo.cache.result": "hit"}), (d["cache_misses"], {"convo.cache.result": "miss"}),
    ])], unit="{request}", description="Response-cache lookups, by result.")
    return True


# -- parent spans ---------------------------------------------------------------------------------


def attach(span_: Any) -> tuple[Any, Any]:
    ctx = otel_trace.set_span_in_context(span_)
    return otel_context.attach(ctx), ctx


def detach(token: Any, ctx: Any) -> None:
    """Undo :func:`attach`, only where it is still in force (a generator closed elsewhere, e.g.
    by the garbage collector, must not reset another context)."""
    if otel_context.get_current() is ctx:
        otel_context.detach(token)


@contextmanager
def span(
    name: str, attributes: dict[str, Any] | None = None, *, conversation: str | None = None, answer: bool = False
) -> Iterator[Any]:
    """A parent span (a turn, a batch, a map-reduce), current while the block runs; yields it
    (None when tracing is off). ``conversation``: the id the calls inside are tagged with. When it
    ends it gets its calls' summed usage and cost (see :class:`Tally`; ``answer`` as there)."""
    tracer_ = None if idle() else tracer()
    marker = CONVERSATION.set(conversation) if conversation is not None else None
    if tracer_ is None:
        try:
            yield None
        finally:
            if marker is not None:
                CONVERSATION.reset(marker)
        return
    parent = PARENT.get()
    current = tracer_.start_span(name, context=parent, kind=SpanKind.INTERNAL, attributes=attributes or {})
    token, ctx = attach(current)
    tally = Tally(parent=TALLY.get())
    counting = TALLY.set(tally)
    try:
        yield current
    except BaseException as exc:  # a stream closed early (GeneratorExit) or a task cancelled: "Cancelled", as its call
        cancelled = isinstance(exc, (GeneratorExit, asyncio.CancelledError))
        current.set_attribute("error.type", "Cancelled" if cancelled else type(exc).__name__)
        current.set_status(StatusCode.ERROR, "cancelled before it finished" if cancelled else str(exc)[:200])
        raise
    finally:
        detach(token, ctx)
        _reset(TALLY, counting)
        if marker is not None:
            _reset(CONVERSATION, marker)
        current.set_attributes(tally.attributes(answer=answer))
        current.end()


def _reset(var: ContextVar[Any], mark: Any) -> None:
    try:
        var.reset(mark)
    except ValueError:  # set in another context (a generator closed elsewhere)
        pass


def carry(flow: Flow) -> Flow:
    """``flow`` with the current span as the parent of the calls it starts, wherever it runs
    (a batch's worker threads do not inherit the context)."""
    if idle() or tracer() is None:
        return flow
    return _carried(flow, otel_context.get_current(), CONVERSATION.get(), TALLY.get())


def _carried(flow: Flow, parent: Any, conversation: str | None, tally: Tally | None) -> Flow:
    send: Any = None
    error: BaseException | None = None
    while True:
        marks = PARENT.set(parent), CONVERSATION.set(conversation), TALLY.set(tally)
        try:
            effect = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration as stop:
            return stop.value
        finally:
            PARENT.reset(marks[0])
            CONVERSATION.reset(marks[1])
            TALLY.reset(marks[2])
        try:
            send, error = (yield effect), None
        except GeneratorExit:
            flow.close()
            raise
        except BaseException as exc:  # noqa: BLE001 -- handed to the inner flow, as the driver would
            send, error = None, exc


def conversation_id(conv: Any) -> str:
    """The id of a conversation for ``gen_ai.conversation.id``: its own ``id`` when it has one,
    else one made for this object (stable while it lives)."""
    own = getattr(conv, "id", None)
    if isinstance(own, str) and own:
        return own
    made = getattr(conv, "_telemetry_id", None)
    if made is None:
        import uuid

        made = f"conv_{uuid.uuid4().hex}"
        try:
            conv._telemetry_id = made
        except AttributeError:  # pragma: no cover - a conversation without a __dict__
            pass
    return str(made)


@contextmanager
def turn(conv: Any) -> Iterator[Any]:
    """A Conversation turn as a span (``chat {model}``, with ``gen_ai.conversation.id``); the
    calls it makes (the reply, tool steps, a summary) are its children. When it ends, the span
    gets what the turn trimmed to fit (from the receipts it added), its calls' summed token usage
    (cached answers not counted) and the last call's response model and finish reason."""
    if idle() or tracer() is None:
        yield None
        return
    model = str(getattr(conv, "model", ""))
    cid = conversation_id(conv)
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": PROVIDER, "gen_ai.request.model": model,
                  "gen_ai.conversation.id": cid}
    receipts = getattr(conv, "receipts", [])
    before = len(receipts)
    with span(f"chat {model}".strip(), attributes, conversation=cid, answer=True) as current:
        yield current
        new = receipts[before:]
        if current is not None and new:
            current.set_attributes({
                "convo.trimmed_tokens": sum(r.dropped_tokens for r in new),
                "convo.trimmed_messages": sum(r.dropped_messages for r in new),
                "convo.summarized_messages": sum(r.summarized_messages for r in new),
            })  # its cost, like its usage, is its calls' (a summary's too): see span()


F = TypeVar("F", bound=Callable[..., Any])


def traced_turn(fn: F) -> F:
    """Run a Conversation method (a function, coroutine, generator or async generator) inside
    :func:`turn`; without a tracer it is called as it is."""
    if inspect.isasyncgenfunction(fn):

        async def agen(self: Any, *args: Any, **kwargs: Any) -> Any:
            with turn(self):
                async for item in fn(self, *args, **kwargs):
                    yield item

        @functools.wraps(fn)
        def async_stream(self: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(self, *args, **kwargs) if idle() or tracer() is None else agen(self, *args, **kwargs)

        return cast(F, async_stream)
    if inspect.isgeneratorfunction(fn):

        def gen(self: Any, *args: Any, **kwargs: Any) -> Any:
            with turn(self):
                return (yield from fn(self, *args, **kwargs))

        @functools.wraps(fn)
        def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(self, *args, **kwargs) if idle() or tracer() is None else gen(self, *args, **kwargs)

        return cast(F, stream)
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coroutine(self: Any, *args: Any, **kwargs: Any) -> Any:
            with turn(self):
                return await fn(self, *args, **kwargs)

        return cast(F, coroutine)

    @functools.wraps(fn)
    def plain(self: Any, *args: Any, **kwargs: Any) -> Any:
        with turn(self):
            return fn(self, *args, **kwargs)

    return cast(F, plain)
