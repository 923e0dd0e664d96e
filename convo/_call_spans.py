"""The span and metrics of one call and a span per attempt: what the pipeline's two tracing
guards (``Tracing``, ``AttemptSpans`` in ``_guards``) do at each hook.

A call's span (``chat {model}``, kind CLIENT, after the GenAI semantic conventions) starts under
the current parent (:mod:`convo._telemetry`: a turn, a batch, a map-reduce) and ends with the
response model, token usage, finish reasons, the error type and ``convo.*`` extras (cost, attempts,
retries, cache hit); each attempt is its child and the current span while the SDK is called, so
the SDK's own HTTP span nests under it. The duration and token histograms are recorded as the call
ends. The OpenTelemetry API is reached through ``_telemetry`` (imported there on first use).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _telemetry as _t
from ._sdk_errors import STATUS_OF_TYPE
from ._tally import TALLY

if TYPE_CHECKING:
    from ._context import CallContext
    from ._guard_base import CallState, Ticket

__all__ = ["CallTrace", "end_attempt", "end_call", "enter_call", "start_attempt"]

@dataclass(slots=True)
class CallTrace:
    """What the guards know of one traced call."""

    operation: str
    model: str
    span: Any
    start: float
    instruments: tuple[Any, Any] | None
    attempts: int = 0
    cost: float = 0.0
    last_error: str | None = None
    last_end: float | None = None
    ended: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _error_type(error: BaseException) -> str:
    """The HTTP status of an API error; for an ``error`` event mid-stream (a 200 response) the
    status its ``type`` comes with, so an overloaded stream counts as ``529`` like an overloaded call."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return f"{status}"
    kind = getattr(error, "type", None) or getattr(error, "error_type", None)
    if isinstance(kind, str) and kind in STATUS_OF_TYPE:
        return f"{STATUS_OF_TYPE[kind]}"
    return type(error).__name__


def _retry_reason(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    kind = getattr(error, "type", None) or getattr(getattr(error, "body", None), "get", lambda *_: None)("type")
    parts = [type(error).__name__]
    if status is not None:
        parts.append(str(status))
    if isinstance(kind, str):
        parts.append(kind)
    return " ".join(parts)


def _request_attributes(request: dict[str, Any], operation: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": _t.PROVIDER,
        "gen_ai.request.model": request.get("model", ""),
    }
    for key, name in (("max_tokens", "gen_ai.request.max_tokens"), ("temperature", "gen_ai.request.temperature"),
                      ("top_p", "gen_ai.request.top_p"), ("top_k", "gen_ai.request.top_k")):
        value = request.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    stops = request.get("stop_sequences")
    if isinstance(stops, list) and all(isinstance(s, str) for s in stops):
        out["gen_ai.request.stop_sequences"] = stops
    conversation = _t.CONVERSATION.get()
    if conversation is not None:
        out["gen_ai.conversation.id"] = conversation
    return out


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts = []
    for block in content or ():
        kind = block.get("type") if isinstance(block, dict) else getattr(block, "type", None)
        text = block.get("text") if isinstance(block, dict) else getattr(block, "text", None)
        parts.append({"type": "text", "content": text} if kind == "text" else {"type": str(kind)})
    return parts


def _content_attributes(ctx: CallContext, call: CallState, value: Any) -> dict[str, Any]:
    """The request (as sent: redacted) and the reply (redacted again) as GenAI content attributes."""
    request = call.request
    out: dict[str, Any] = {
        "gen_ai.input.messages": json.dumps(
            [{"role": m.get("role"), "parts": _parts(m.get("content"))} for m in request.get("messages") or ()
             if isinstance(m, dict)], ensure_ascii=False,
        ),
    }
    if request.get("system"):
        out["gen_ai.system_instructions"] = json.dumps(_parts(request["system"]), ensure_ascii=False)
    content = getattr(value, "content", None)
    if content is not None:
        parts = _parts(content)
        if ctx.redactor is not None:
            for p in parts:
                if "content" in p and isinstance(p["content"], str):
                    p["content"] = ctx.redactor.redact(p["content"], call.mapping).text
        out["gen_ai.output.messages"] = json.dumps(
            [{"role": "assistant", "parts": parts, "finish_reason": getattr(value, "stop_reason", None)}],
            ensure_ascii=False,
        )
    return out


def _usage_attributes(usage: Any) -> dict[str, Any]:
    read = getattr(usage, "cache_read_input_tokens", 0) or 0
    write = getattr(usage, "cache_creation_input_tokens", 0) or 0
    return {
        # The conventions count cached input in the input tokens; the API reports it apart.
        "gen_ai.usage.input_tokens": (getattr(usage, "input_tokens", 0) or 0) + read + write,
        "gen_ai.usage.output_tokens": getattr(usage, "output_tokens", 0) or 0,
        "gen_ai.usage.cache_read.input_tokens": read,
        "gen_ai.usage.cache_creation.input_tokens": write,
    }


def _answer_attributes(message: Any) -> dict[str, Any]:
    """What a reply says of itself: response model and id, finish reason, token usage."""
    out: dict[str, Any] = {}
    for name, key in (("model", "gen_ai.response.model"), ("id", "gen_ai.response.id")):
        if isinstance(getattr(message, name, None), str):
            out[key] = getattr(message, name)
    stop = getattr(message, "stop_reason", None)
    if isinstance(stop, str):
        out["gen_ai.response.finish_reasons"] = [stop]
    usage = getattr(message, "usage", None)
    if usage is not None:
        out.update(_usage_attributes(usage))
    return out


def tally_result(message: Any, cost: float | None) -> None:
    """A Batches API result arrived (no call of this process made it): count its usage and cost
    in the enclosing span's tally, as a call's end would be."""
    tally = TALLY.get()
    if tally is not None and getattr(message, "usage", None) is not None:
        tally.add({**_answer_attributes(message), "convo.cost_usd": cost or 0.0}, spent=True)


def enter_call(operation: str, ctx: CallContext, call: CallState) -> None:
    """A call begins: start its span (under the current one) when anything would record it."""
    if _t.idle():
        return
    tracer_ = _t.tracer()
    metrics = _t.instruments()
    if tracer_ is None and metrics is None and not _t.log.isEnabledFor(logging.DEBUG):
        return
    attributes = _request_attributes(call.request, operation)
    model = attributes["gen_ai.request.model"]
    current = None
    if tracer_ is not None:
        current = tracer_.start_span(
            f"{operation} {model}".strip(), context=_t.PARENT.get(), kind=_t.SpanKind.CLIENT, attributes=attributes
        )
    call.trace = CallTrace(operation, model, current, time.perf_counter(), metrics)


def end_call(ctx: CallContext, call: CallState, value: Any, error: BaseException | None) -> None:
    """The call is over (``value``, or for good ``error``): end its span, record its metrics."""
    trace = call.trace
    if trace is None or trace.ended:
        return
    trace.ended = True
    elapsed = time.perf_counter() - trace.start
    usage = getattr(value, "usage", None)
    hit = call.hit is not None
    attributes: dict[str, Any] = {
        "convo.cache_hit": hit,
        "convo.attempts": trace.attempts,
        "convo.retries": max(0, trace.attempts - 1),
        "convo.cost_usd": trace.cost,
    }
    attributes.update(_answer_attributes(value))
    if error is not None:
        attributes["error.type"] = _error_type(error)
    tally = TALLY.get()
    if tally is not None:
        tally.add(attributes, spent=not hit)
    if trace.span is not None:
        if _t.SETTINGS.capture_content and value is not None:
            try:
                attributes.update(_content_attributes(ctx, call, value))
            except Exception as exc:  # noqa: BLE001 -- telemetry never fails a call
                _t.log.debug("convo: could not record the content of a call: %s", exc)
        trace.span.set_attributes(attributes)
        if error is not None:
            trace.span.set_status(_t.StatusCode.ERROR, str(error)[:200])
        trace.span.end()
    if trace.instruments is not None:
        _record(trace, attributes, elapsed, usage if not hit else None)
    if _t.log.isEnabledFor(logging.DEBUG):
        _t.log.debug(
            "%s %s: %s in %.3fs, %d attempt(s)%s%s", trace.operation, trace.model,
            f"failed ({attributes['error.type']})" if error is not None else "done",
            elapsed, trace.attempts, ", answered from the cache" if hit else "",
            f", ${trace.cost:.6f}" if trace.cost else "",
        )


def _record(trace: CallTrace, attributes: dict[str, Any], elapsed: float, usage: Any) -> None:
    assert trace.instruments is not None
    duration, tokens = trace.instruments
    common = {"gen_ai.operation.name": trace.operation, "gen_ai.provider.name": _t.PROVIDER,
              "gen_ai.request.model": trace.model}
    if "gen_ai.response.model" in attributes:
        common["gen_ai.response.model"] = attributes["gen_ai.response.model"]
    failed = {"error.type": attributes["error.type"]} if "error.type" in attributes else {}
    duration.record(elapsed, {**common, **failed})
    if usage is not None:
        tokens.record(attributes["gen_ai.usage.input_tokens"], {**common, "gen_ai.token.type": "input"})
        tokens.record(attributes["gen_ai.usage.output_tokens"], {**common, "gen_ai.token.type": "output"})


_UNTRACED = (None, None, None)  # an admitted attempt of a call with metrics but no span


def start_attempt(ctx: CallContext, call: CallState, ticket: Ticket) -> None:
    """An attempt is about to be sent (every other guard admitted it): its span, made current so
    that the SDK's span of the HTTP call is its child."""
    trace = call.trace
    assert trace is not None
    trace.attempts += 1
    if trace.attempts > 1 and _t.retry_log.isEnabledFor(logging.DEBUG):
        waited = time.perf_counter() - trace.last_end if trace.last_end is not None else 0.0
        _t.retry_log.debug("%s %s: attempt %d, %.3fs after the last one failed (%s)", trace.operation, ticket.model,
                        trace.attempts, waited, trace.last_error)
    tracer_ = _t.tracer()
    if trace.span is None or tracer_ is None:
        ticket.trace = _UNTRACED
        return
    attributes: dict[str, Any] = {"convo.attempt": trace.attempts, "gen_ai.request.model": ticket.model}
    if trace.last_error is not None:
        attributes["convo.retry_reason"] = trace.last_error
    reservation = ticket.reservation
    if reservation is not None and reservation.wait > 0:
        attributes["convo.ratelimit.wait_s"] = reservation.wait
    attempt = tracer_.start_span(
        f"attempt {trace.attempts}", context=_t.otel_trace.set_span_in_context(trace.span),
        kind=_t.SpanKind.INTERNAL, attributes=attributes,
    )
    ticket.trace = (attempt, *_t.attach(attempt))


def end_attempt(ctx: CallContext, call: CallState, ticket: Ticket, usage: Any, error: BaseException | None) -> None:
    """The attempt is over: end its span with its usage, cost, error and retry reason. An attempt
    a guard refused before it was sent (the budget) ends the call: no other hook will."""
    trace = call.trace
    assert trace is not None
    if ticket.trace is None:
        refused = sys.exc_info()[1]  # run() settles a refused attempt inside its except block
        if isinstance(refused, Exception):
            end_call(ctx, call, None, refused)
        return
    trace.last_end = time.perf_counter()
    cost = ctx.cost(usage, ticket.model)
    if cost:
        trace.cost += cost
    if error is not None:
        trace.last_error = _retry_reason(error)
    attempt, token, attached = ticket.trace
    ticket.trace = None
    if attempt is None:
        return
    _t.detach(token, attached)
    if usage is not None:
        attempt.set_attributes(_usage_attributes(usage))
    if cost:
        attempt.set_attribute("convo.cost_usd", cost)
    if error is not None:
        attempt.set_attribute("error.type", _error_type(error))
        attempt.set_attribute("convo.error", trace.last_error or "")
        attempt.set_status(_t.StatusCode.ERROR, str(error)[:200])
    attempt.end()
