"""The HTTP side of the simulator: an aiohttp application with the Messages API's routes.

Every request passes one middleware that gives it a ``request-id``, records it (secrets
masked), checks auth and ``anthropic-version`` and turns :class:`ErrorReply` into the API's
error envelope. ``POST /v1/messages`` then meets, in order: body validation, the fault
schedule, the rate limits, and the offline model. Every response carries the
``anthropic-ratelimit-*`` headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from aiohttp import web

from . import edits as ctx
from . import protocol as p
from . import rules
from .batches import BatchStore
from .cache import PromptCache
from .errors import injected_message
from .events import server_tool_usage
from .faults import STOP_KINDS, STREAM_KINDS, Fault, Faults
from .limits import RateLimits
from .model import Block, OfflineModel, Reply, turn_text
from .modelsapi import models_page, retrieve
from .protocol import ErrorReply
from .request import Request
from .tokens import Tokenizer

__all__ = ["Recorded", "SimState", "make_app"]

log = logging.getLogger("convo.sim")

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SECRET_HEADERS = ("x-api-key", "authorization")
_JSON = "application/json"
_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_MALFORMED = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_del\n\n'
RID = web.RequestKey("rid", str)
MODEL = web.RequestKey("model", str)
_UNKNOWN = p.sse("sim_unknown_event", {"type": "sim_unknown_event", "note": "clients must ignore unknown events"})


@dataclass
class Recorded:
    """One request as the simulator received it; secrets in headers are masked."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None  # the parsed JSON body, when there was one
    request_id: str = ""
    status: int | None = None  # the status it was answered with
    fault: str | None = None  # the fault applied, if any

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


RECORD: web.RequestKey[Recorded | None] = web.RequestKey("record")


def _mask(name: str, value: str) -> str:
    if name == "authorization" and value.lower().startswith("bearer "):
        return "Bearer ***"
    return "***"


@dataclass
class SimState:
    """Configuration and mutable state shared by the handlers (lives on the server's loop)."""

    seed: int = 0
    latency: float = 0.0
    token_latency: float = 0.0
    api_key: str | None = None
    faults: Faults = field(default_factory=Faults)
    limits: RateLimits = field(default_factory=RateLimits)
    clock: Callable[[], float] = time.time
    batch_seconds: float = 0.5
    max_request_bytes: int = 32 * 1024 * 1024
    max_batch_bytes: int = 256 * 1024 * 1024
    record: int | None = 10_000
    counter: Tokenizer = field(default_factory=Tokenizer)

    def __post_init__(self) -> None:
        self.model = OfflineModel(self.seed, self.counter)
        self.cache = PromptCache(self.counter, lambda: self.clock())
        self.ids = p.Ids(self.seed)
        self.batches = BatchStore(self._run_batch_request, batch_seconds=self.batch_seconds, seed=self.seed)
        self.recorded: deque[Recorded] = deque(maxlen=self.record if self.record else 0)

    # -- shared pieces -------------------------------------------------------------------

    def answer(self, req: Request, stop: str = "") -> Reply:
        return self.model.reply(
            req.messages, max_tokens=req.max_tokens, stop_sequences=req.stop_sequences,
            tools=req.tools, tool_choice=req.tool_choice, thinking=req.thinking, label=req.label, stop=stop,
        )  # fmt: skip

    def count(self, req: Request) -> int:
        return self.counter.count_request(req.messages, system=req.system, tools=req.tools, label=req.label)

    def _run_batch_request(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            req = p.parse_message_request(params)
            rules.check(req, batch=True)
            input_tokens = self.count(req)
            rules.check_context(req, input_tokens)
        except ErrorReply as err:
            return "errored", p.error_body(err, self.ids.request())
        msg = p.message_json(self.ids.message(), req.name, self.answer(req), input_tokens, service_tier="batch")
        return "succeeded", msg


# -- middleware and helpers ------------------------------------------------------------------


def _error_response(err: ErrorReply, request_id: str | None) -> web.Response:
    body = p.dumps(p.error_body(err, request_id)).encode()
    return web.Response(status=err.status, body=body, content_type=_JSON, headers=err.headers)


def _check_auth(state: SimState, request: web.Request) -> None:
    headers = request.headers
    key = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    presented = [k for k in (key, bearer) if k]
    if not presented:
        raise ErrorReply(401, "x-api-key header is required (or Authorization: Bearer <key>)")
    if state.api_key is not None and state.api_key not in presented:
        raise ErrorReply(401, "invalid x-api-key")
    version = headers.get("anthropic-version")
    if version is None:
        raise ErrorReply(400, "anthropic-version: header is required")
    if not _VERSION.match(version.strip()):
        raise ErrorReply(400, f"anthropic-version: {version!r} is not a valid version (expected e.g. '2023-06-01')")


def make_app(state: SimState) -> web.Application:
    """The aiohttp application serving ``state``."""

    @web.middleware
    async def envelope(request: web.Request, handler: Any) -> web.StreamResponse:
        rid = state.ids.request()
        request[RID] = rid
        rec = None
        if state.record:
            headers = {k.lower(): v for k, v in request.headers.items()}
            for name in _SECRET_HEADERS:
                if name in headers:
                    headers[name] = _mask(name, headers[name])
            rec = Recorded(request.method, request.path, dict(request.query), headers, request_id=rid)
            state.recorded.append(rec)
        request[RECORD] = rec
        try:
            if request.match_info.http_exception is not None:
                raise request.match_info.http_exception
            _check_auth(state, request)
            resp: web.StreamResponse = await handler(request)
        except ErrorReply as err:
            resp = _error_response(err, rid)
        except web.HTTPException as exc:  # the router's 404/405, aiohttp's 413
            status = exc.status
            if status == 404:
                msg = f"Not found: {request.method} {request.path}"
            elif status == 405:
                msg = f"Method {request.method} is not allowed for {request.path}"
            elif status == 413:
                msg = "Request exceeds the maximum allowed number of bytes."
            else:
                msg = exc.reason
            resp = _error_response(ErrorReply(status, msg), rid)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            log.exception("convo.sim: unexpected error handling %s %s", request.method, request.path)
            resp = _error_response(ErrorReply(500, "Internal server error (a bug in the simulator)"), rid)
        if rec is not None:
            rec.status = resp.status
        return resp

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        rid = request.get(RID)
        if rid is not None:
            response.headers["request-id"] = rid
        response.headers.update(state.limits.headers(request.get(MODEL) or ""))
        rec = request.get(RECORD)
        if rec is not None:  # now, not after the handler: a stream's client may read it all first
            rec.status = response.status

    app = web.Application(
        middlewares=[envelope], client_max_size=max(state.max_request_bytes, state.max_batch_bytes) + 1
    )
    app.on_response_prepare.append(on_prepare)
    h = _Handlers(state)
    app.router.add_post("/v1/messages", h.messages)
    app.router.add_post("/v1/messages/count_tokens", h.count_tokens)
    app.router.add_get("/v1/models", h.models_list)
    app.router.add_get("/v1/models/{id}", h.models_retrieve)
    app.router.add_post("/v1/messages/batches", h.batch_create)
    app.router.add_get("/v1/messages/batches", h.batch_list)
    app.router.add_get("/v1/messages/batches/{id}", h.batch_retrieve)
    app.router.add_delete("/v1/messages/batches/{id}", h.batch_delete)
    app.router.add_post("/v1/messages/batches/{id}/cancel", h.batch_cancel)
    app.router.add_get("/v1/messages/batches/{id}/results", h.batch_results)
    return app


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=p.dumps(obj).encode(), content_type=_JSON)


def _drop(request: web.Request) -> NoReturn:
    """Cut the connection on purpose (a ``drop`` fault), mid-body if a response was started.

    ``close`` flushes what was written first, so the client gets exactly the events sent
    before the cut and then a truncated chunked body.
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    # aiohttp ends a cancelled handler quietly ("premature client disconnection").
    raise asyncio.CancelledError


class _Handlers:
    def __init__(self, state: SimState) -> None:
        self.s = state

    async def _body(self, request: web.Request, limit: int) -> Any:
        if request.content_length is not None and request.content_length > limit:
            raise ErrorReply(413, f"Request exceeds the maximum allowed number of bytes ({limit:,}).")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ErrorReply(413, f"Request exceeds the maximum allowed number of bytes ({limit:,}).") from None
        if len(raw) > limit:
            raise ErrorReply(413, f"Request exceeds the maximum allowed number of bytes ({limit:,}).")
        try:
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            raise ErrorReply(400, f"There was an error parsing the body of your request: {exc}") from None
        rec = request[RECORD]
        if rec is not None:
            rec.body = body
        return body

    # -- messages ------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        s = self.s
        req = p.parse_message_request(await self._body(request, s.max_request_bytes))
        request[MODEL] = req.name
        rules.check(req)
        raw_tokens = s.count(req)
        applied, summary, pause = self._edit(request, req)
        input_tokens = s.count(req)
        rules.check_context(req, input_tokens)
        fault = s.faults.next()
        rec = request[RECORD]
        if fault.kind != "ok" and rec is not None:
            rec.fault = str(fault)
        if fault.kind == "status":
            headers = {}
            if fault.retry_after is not None:
                headers["retry-after"] = f"{fault.retry_after:g}"
            status = fault.status or 500
            raise ErrorReply(status, injected_message(status, str(fault)), headers=headers)
        if fault.kind == "spend_limit":
            raise ErrorReply(
                429,
                "You have reached your API usage limits. You will regain access on the first of next month.",
                details={"error_code": "enforced_spend_limit_reached"},
            )
        plan = s.cache.plan(
            req.name, req.messages, system=req.system, tools=req.tools, auto=req.cache_control, total=input_tokens,
            label=req.label,
        )  # fmt: skip
        # Cache reads do not count toward the input-tokens-per-minute limit.
        exceeded = s.limits.admit(req.name, input_tokens - plan.usage.read)
        if exceeded is not None:
            raise ErrorReply(429, exceeded.message, headers={"retry-after": str(exceeded.retry_after)})
        s.cache.commit(plan)
        cache = plan.usage.fields()
        reply = s.answer(req, fault.kind if fault.kind in STOP_KINDS else "")
        iterations = None
        if summary is not None:  # the compaction block leads; its own usage is an iteration
            reply, iterations = self._compacted(req, reply, summary, pause, raw_tokens, cache)
        s.limits.charge_output(req.name, reply.output_tokens)
        msg_id = s.ids.message()
        if req.stream:
            return await self._stream(request, req, reply, msg_id, cache, fault, applied, iterations)
        if fault.kind == "drop":
            _drop(request)
        wait = s.latency + s.token_latency * reply.events
        if fault.kind in ("stall", "hang"):
            wait += s.faults.stall_seconds
        if wait > 0:
            await asyncio.sleep(wait)
        return _json(
            p.message_json(msg_id, req.name, reply, input_tokens, cache=cache, applied=applied, iterations=iterations)
        )

    def _edit(self, request: web.Request, req: Request) -> tuple[list[dict[str, Any]] | None, str | None, bool]:
        """Apply the request's context edits to its history (needs the beta header, as the API does).

        Returns the ``applied_edits`` report, the compaction summary (if the history was
        compacted) and whether to pause after compaction."""
        if req.edits is None:
            return None, None, False
        betas = {b.strip() for b in (request.headers.get("anthropic-beta") or "").split(",")}
        for beta in ctx.betas_needed(req.edits):
            if beta not in betas:
                raise p.invalid(f"context_management: requires the beta header 'anthropic-beta: {beta}'")
        counter, system, tools, label = self.s.counter, req.system, req.tools, req.label

        def size(turns: Any) -> int:
            return counter.count_request(turns, system=system, tools=tools, label=label)

        req.messages, applied = ctx.apply_edits(req.messages, req.edits, size)
        summary = None
        compaction = next((e for e in req.edits if e["type"] == ctx.COMPACT), None)
        if compaction is not None:
            model = self.s.model
            req.messages, summary = ctx.compact(
                req.messages, compaction, size,
                lambda turns, _instructions: model.summarize("\n\n".join(turn_text(t) for t in turns)),
            )  # fmt: skip
        return applied, summary, bool(compaction and compaction.get("pause_after_compaction"))

    def _compacted(
        self, req: Request, reply: Reply, summary: str, pause: bool, raw_tokens: int, cache: dict[str, Any]
    ) -> tuple[Reply, list[dict[str, Any]]]:
        block = Block(type="compaction", deltas=(summary,))
        zero = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        out = self.s.counter.count_text(summary, req.label)
        its = [{"type": "compaction", "input_tokens": raw_tokens, "output_tokens": out, **zero}]
        if pause:  # the summary alone; the client sends the next request
            return Reply((block,), "compaction", None, 0), its
        its.append({
            "type": "message", "input_tokens": cache["input_tokens"], "output_tokens": reply.output_tokens,
            "cache_creation_input_tokens": cache["cache_creation_input_tokens"],
            "cache_read_input_tokens": cache["cache_read_input_tokens"],
        })  # fmt: skip
        return Reply(
            (block, *reply.blocks), reply.stop_reason, reply.stop_sequence, reply.output_tokens, reply.stop_details
        ), its

    async def _stream(
        self, request: web.Request, req: Request, reply: Reply, msg_id: str, cache: dict[str, Any],
        fault: Fault, applied: list[dict[str, Any]] | None = None, iterations: list[dict[str, Any]] | None = None,
    ) -> web.StreamResponse:
        s = self.s
        if s.latency > 0:
            await asyncio.sleep(s.latency)
        resp = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        opening, deltas, closing = p.content_events(reply.blocks)
        head = p.start_event(msg_id, req.name, cache["input_tokens"], cache) + opening
        tail = closing + p.message_delta_event(
            reply.stop_reason, reply.stop_sequence, reply.output_tokens, applied, iterations, cache=cache,
            stop_details=reply.stop_details, server_tools=server_tool_usage(reply.blocks),
        ) + p.MESSAGE_STOP
        at = min(fault.after, len(deltas)) if fault.kind in STREAM_KINDS else -1
        try:
            if s.token_latency <= 0 and at < 0:
                # The fast path: the whole stream in one write.
                await resp.write(head + b"".join(deltas) + tail)
                await resp.write_eof()
                return resp
            await resp.write(head)
            for i in range(len(deltas) + 1):
                if i == at and not await self._stream_fault(request, resp, fault):
                    return resp
                if i == len(deltas):
                    break
                if s.token_latency > 0:
                    await asyncio.sleep(s.token_latency)
                await resp.write(deltas[i])
            await resp.write(tail)
            await resp.write_eof()
        except ConnectionError:  # the client went away mid-stream (e.g. its read timed out)
            pass
        return resp

    async def _stream_fault(self, request: web.Request, resp: web.StreamResponse, fault: Fault) -> bool:
        """Apply a stream fault; True when the stream then goes on normally."""
        s = self.s
        kind = fault.kind
        if kind == "unknown":
            await resp.write(_UNKNOWN)
            return True
        if kind == "stall":
            deadline = time.monotonic() + s.faults.stall_seconds
            while time.monotonic() < deadline:
                await asyncio.sleep(min(s.faults.ping_interval, max(0.0, deadline - time.monotonic())))
                await resp.write(p.PING)
            return True
        if kind == "hang":
            await asyncio.sleep(s.faults.stall_seconds)
            return True
        if kind == "sse_error":
            await resp.write(p.error_event())
        elif kind == "malformed":
            await resp.write(_MALFORMED)
        elif kind == "drop":
            _drop(request)
        await resp.write_eof()  # sse_error, malformed, truncate: a clean end without message_stop
        return False

    async def count_tokens(self, request: web.Request) -> web.Response:
        req = p.parse_count_request(await self._body(request, self.s.max_request_bytes))
        request[MODEL] = req.name
        rules.check_content(req)
        return _json({"input_tokens": self.s.count(req)})

    async def models_list(self, request: web.Request) -> web.Response:
        return _json(models_page(request.query))

    async def models_retrieve(self, request: web.Request) -> web.Response:
        return _json(retrieve(request.match_info["id"]))

    # -- batches -------------------------------------------------------------------------

    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def batch_create(self, request: web.Request) -> web.Response:
        s = self.s
        requests = p.parse_batch_create(await self._body(request, s.max_batch_bytes))
        batch = s.batches.create(s.ids.batch(), requests, s.clock())
        return _json(s.batches.to_json(batch, s.clock(), self._base(request)))

    async def batch_retrieve(self, request: web.Request) -> web.Response:
        s = self.s
        batch = s.batches.get(request.match_info["id"])
        return _json(s.batches.to_json(batch, s.clock(), self._base(request)))

    async def batch_list(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", "20"))
        except ValueError:
            raise ErrorReply(400, f"limit: Input should be a valid integer, got {q.get('limit')!r}") from None
        page = self.s.batches.page(
            self.s.clock(), self._base(request), limit=limit, before_id=q.get("before_id"), after_id=q.get("after_id")
        )
        return _json(page)

    async def batch_cancel(self, request: web.Request) -> web.Response:
        s = self.s
        batch = s.batches.cancel(request.match_info["id"], s.clock())
        return _json(s.batches.to_json(batch, s.clock(), self._base(request)))

    async def batch_delete(self, request: web.Request) -> web.Response:
        return _json(self.s.batches.delete(request.match_info["id"], self.s.clock()))

    async def batch_results(self, request: web.Request) -> web.Response:
        lines = self.s.batches.results(request.match_info["id"], self.s.clock())
        body = "".join(p.dumps(line) + "\n" for line in lines).encode()
        return web.Response(body=body, content_type="application/x-jsonl")
