"""OpenTelemetry for convo: spans after the GenAI semantic conventions, and their metrics.

>>> from convo import telemetry
>>> telemetry.configure(capture_content=False)

With ``pip install 'convo[otel]'`` and a tracer provider set up (``opentelemetry-sdk``, or any
distribution), every call of a :class:`~convo.Client` is one span ``chat {model}`` (kind CLIENT)
with its attempts as child spans (``attempt 1``, ``attempt 2`` ... with ``error.type`` and
``convo.retry_reason``), and the SDK's span of each HTTP request under its attempt; a
:class:`~convo.Conversation` turn, a ``client.batch`` and a ``map_reduce`` are parent spans
(``chat {model}`` with ``gen_ai.conversation.id``; ``batch``; ``map_reduce``). A call's span has
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.response.id``, ``gen_ai.response.finish_reasons``,
``gen_ai.usage.input_tokens`` (cached input included, as the conventions count it),
``gen_ai.usage.output_tokens``, ``gen_ai.usage.cache_read.input_tokens``,
``gen_ai.usage.cache_creation.input_tokens``, ``error.type`` on failure, and ``convo.cost_usd``,
``convo.attempts``, ``convo.retries`` and ``convo.cache_hit``. A turn's span has the token usage
of all its calls summed (tool steps and a summary included, cached answers not), the last call's
response model and finish reason, ``convo.calls``, ``convo.cost_usd`` (its calls' cost), and
``convo.trimmed_tokens``, ``convo.trimmed_messages`` and ``convo.summarized_messages``; a
``batch`` or ``map_reduce`` span sums its calls the same way. With a meter provider, the
``gen_ai.client.operation.duration`` (s) and ``gen_ai.client.token.usage`` histograms are
recorded per call.

Nothing is recorded without the extra or without a provider: the guards step aside. Message
content (``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.system_instructions``)
is off by default; ``configure(capture_content=True)`` records it as the API saw it, through
the client's :class:`~convo.Redactor`.
"""

from __future__ import annotations

from typing import Any

from ._telemetry import SETTINGS

__all__ = ["configure", "observe", "settings"]

_UNSET: Any = object()


def configure(
    *,
    enabled: bool | None = None,
    capture_content: bool | None = None,
    tracer_provider: Any = _UNSET,
    meter_provider: Any = _UNSET,
) -> None:
    """Change how convo records telemetry (each argument left out stays as it is).

    ``enabled=False`` turns every span and metric off; ``capture_content`` records message
    content (redacted); ``tracer_provider`` / ``meter_provider`` use these providers instead of
    the global ones OpenTelemetry's API hands out (None: back to the global ones).
    """
    if enabled is not None:
        SETTINGS.enabled = bool(enabled)
    if capture_content is not None:
        SETTINGS.capture_content = bool(capture_content)
    if tracer_provider is not _UNSET:
        SETTINGS.tracer_provider = tracer_provider
    if meter_provider is not _UNSET:
        SETTINGS.meter_provider = meter_provider


def observe(client: Any, **attributes: Any) -> bool:
    """Export ``client.stats`` (requests by outcome, retries, cost, tokens, cache lookups) as
    OpenTelemetry observable counters, read at each collection, with ``attributes`` on every
    point (e.g. ``worker="3"``); False when no meter provider is set up. Per process: a
    collector sums the workers."""
    from . import _telemetry

    return _telemetry.observe_stats(client.stats, attributes)


def settings() -> dict[str, Any]:
    """The telemetry settings in force, and whether OpenTelemetry's API is installed."""
    from . import _telemetry

    return {
        "installed": _telemetry.load_api(),
        "enabled": SETTINGS.enabled,
        "capture_content": SETTINGS.capture_content,
        "tracer_provider": SETTINGS.tracer_provider,
        "meter_provider": SETTINGS.meter_provider,
    }
