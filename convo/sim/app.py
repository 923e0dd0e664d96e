"""The HTTP side of the simulator: an aiohttp application with the Messages API's routes.

Every request passes one middleware that gives it a ``request-id``, records it (secrets
masked), checks auth and ``anthropic-version`` and turns :class:`ErrorReply` into the API's
error envelope. ``POST /v1/messages`` then meets, in order: body validation, the fault
schedule, the rate limits, and the offline model. Every response carries the
``anthropic-ratelimit-*`` headers.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from aiohttp import web

from . import protocol as p
from .errors import ErrorReply
from .events import dumps
from .handlers import JSON, Handlers
from .state import MODEL, RECORD, RID, Recorded, SimState

__all__ = ["Recorded", "SimState", "make_app"]

log = logging.getLogger("convo.sim")

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SECRET_HEADERS = ("x-api-key", "authorization")

def _mask(name: str, value: str) -> str:
    if name == "authorization" and value.lower().startswith("bearer "):
        return "Bearer ***"
    return "***"


# -- middleware and helpers ------------------------------------------------------------------


def _error_response(err: ErrorReply, request_id: str | None) -> web.Response:
    body = dumps(p.error_body(err, request_id)).encode()
    return web.Response(status=err.status, body=body, content_type=JSON, headers=err.headers)


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
    h = Handlers(state)
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
