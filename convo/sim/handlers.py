"""The simulator's route handlers: messages (plain and streamed, with faults and context edits),
token counting, models and batches. The middleware around them is in :mod:`convo.sim.app`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, NoReturn

from aiohttp import web

from . import edits as ctx
from . import protocol as p
from . import rules
from .errors import ErrorReply, injected_message, invalid
from .events import (
    MESSAGE_STOP,
    PING,
    content_events,
    dumps,
    error_event,
    message_delta_event,
    message_json,
    server_tool_usage,
    sse,
    start_event,
)
from .faults import STOP_KINDS, STREAM_KINDS, Fault
from .model import Block, Reply, turn_text
from .modelsapi import models_page, retrieve
from .request import Request, parse_count_request, parse_message_request
from .state import MODEL, RECORD, SimState

__all__ = ["JSON", "Handlers"]

JSON = "application/json"
_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_MALFORMED = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_del\n\n'
_UNKNOWN = sse("sim_unknown_event", {"type": "sim_unknown_event", "note": "clients must ignore unknown events"})


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dumps(obj).encode(), content_type=JSON)


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


class Handlers:
    """The handler of each route, over one :class:`SimState`."""

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
        req = parse_message_request(await self._body(request, s.max_request_bytes))
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
            message_json(msg_id, req.name, reply, input_tokens, cache=cache, applied=applied, iterations=iterations)
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
                raise invalid(f"context_management: requires the beta header 'anthropic-beta: {beta}'")
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
        opening, deltas, closing = content_events(reply.blocks)
        head = start_event(msg_id, req.name, cache["input_tokens"], cache) + opening
        tail = closing + message_delta_event(
            reply.stop_reason, reply.stop_sequence, reply.output_tokens, applied, iterations, cache=cache,
            stop_details=reply.stop_details, server_tools=server_tool_usage(reply.blocks),
        ) + MESSAGE_STOP
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
                await resp.write(PING)
            return True
        if kind == "hang":
            await asyncio.sleep(s.faults.stall_seconds)
            return True
        if kind == "sse_error":
            await resp.write(error_event())
        elif kind == "malformed":
            await resp.write(_MALFORMED)
        elif kind == "drop":
            _drop(request)
        await resp.write_eof()  # sse_error, malformed, truncate: a clean end without message_stop
        return False

    async def count_tokens(self, request: web.Request) -> web.Response:
        req = parse_count_request(await self._body(request, self.s.max_request_bytes))
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
        batch = s.batches.create(s.ids.batch(), requests, s.batch_clock())
        return _json(s.batches.to_json(batch, s.batch_clock(), self._base(request)))

    async def batch_retrieve(self, request: web.Request) -> web.Response:
        s = self.s
        batch = s.batches.get(request.match_info["id"])
        return _json(s.batches.to_json(batch, s.batch_clock(), self._base(request)))

    async def batch_list(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", "20"))
        except ValueError:
            raise ErrorReply(400, f"limit: Input should be a valid integer, got {q.get('limit')!r}") from None
        page = self.s.batches.page(
            self.s.batch_clock(), self._base(request), limit=limit, before_id=q.get("before_id"), after_id=q.get("after_id")
        )
        return _json(page)

    async def batch_cancel(self, request: web.Request) -> web.Response:
        s = self.s
        batch = s.batches.cancel(request.match_info["id"], s.batch_clock())
        return _json(s.batches.to_json(batch, s.batch_clock(), self._base(request)))

    async def batch_delete(self, request: web.Request) -> web.Response:
        return _json(self.s.batches.delete(request.match_info["id"], self.s.batch_clock()))

    async def batch_results(self, request: web.Request) -> web.Response:
        lines = self.s.batches.results(request.match_info["id"], self.s.batch_clock())
        body = "".join(dumps(line) + "\n" for line in lines).encode()
        return web.Response(body=body, content_type="application/x-jsonl")
