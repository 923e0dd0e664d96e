"""``retry-after`` / ``retry-after-ms``: honored when they are a number or an HTTP date, and a
malformed value falls back to backoff instead of crashing the call.

The simulator only sends well-formed values (from ``429@n``), so the malformed ones come from a
tiny scripted loopback server, through the official SDK like every other request.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time

import httpx2
import pytest
from aiohttp import web

import convo
from convo import Client, RetryPolicy
from convo.retry import server_wait

MODEL = "claude-sonnet-4-6"
ASK = [{"role": "user", "content": "hi"}]
REPLY = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": MODEL,
    "content": [{"type": "text", "text": "Hello."}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 8, "output_tokens": 2},
}  # fmt: skip
ERROR = {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited"}, "request_id": "req_1"}


class Scripted:
    """A loopback HTTP server answering POST /v1/messages from a list of (status, headers)."""

    def __init__(self, script):
        self.script = list(script)
        self.seen = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _answer(self, request):
        await request.read()
        self.seen += 1
        status, headers = self.script.pop(0) if self.script else (200, {})
        body = REPLY if status == 200 else ERROR
        return web.Response(status=status, headers=headers, text=json.dumps(body), content_type="application/json")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/messages", self._answer)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        self.ready.wait(10)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


POLICY = RetryPolicy(initial_backoff=0.5, max_backoff=4.0)


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "soon"},
        {"retry-after": ""},
        {"retry-after": "-10"},
        {"retry-after": "inf"},
        {"retry-after": "nan"},
        {"retry-after": "Sun, 99 Foo 2026 25:61:00 GMT"},
        {"retry-after-ms": "fast"},
        {"retry-after-ms": "soon", "retry-after": "later"},
    ],
)
def test_a_malformed_retry_after_falls_back_to_backoff(headers):
    sleeps = Sleeps()
    with Scripted([(429, headers)]) as url:
        c = Client(api_key="k", base_url=url, model=MODEL, sleep=sleeps, retry=POLICY)
        reply = c.create(ASK, max_tokens=10)
    assert reply.content[0].text == "Hello."
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= POLICY.initial_backoff  # the first backoff step
    assert c.stats.retries == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "bogus", "retry-after": "2"}, 2.0),  # a malformed ms falls back to seconds
        ({"retry-after": "3600"}, POLICY.max_retry_after),  # capped
    ],
)
def test_a_well_formed_retry_after_is_honored(headers, expected):
    sleeps = Sleeps()
    with Scripted([(429, headers)]) as url:
        c = Client(api_key="k", base_url=url, model=MODEL, sleep=sleeps, retry=POLICY)
        c.create(ASK, max_tokens=10)
    assert sleeps == [pytest.approx(expected)]


def test_an_http_date_retry_after_is_honored():
    date = email.utils.formatdate(time.time() + 5, usegmt=True)
    sleeps = Sleeps()
    with Scripted([(429, {"retry-after": date})]) as url:
        Client(api_key="k", base_url=url, model=MODEL, sleep=sleeps, retry=POLICY).create(ASK, max_tokens=10)
    assert len(sleeps) == 1 and 3.0 <= sleeps[0] <= 5.0


def test_malformed_retry_after_on_every_attempt_still_ends_in_a_typed_error():
    sleeps = Sleeps()
    with Scripted([(429, {"retry-after": "soon"})] * 3) as url:
        c = Client(api_key="k", base_url=url, model=MODEL, sleep=sleeps, retry=RetryPolicy(max_attempts=3))
        with pytest.raises(convo.RateLimitError):
            c.create(ASK, max_tokens=10)
    assert len(sleeps) == 2


def test_the_simulators_retry_after_is_honored(fresh):
    fresh.faults = ["429@2"]
    sleeps = Sleeps()
    c = Client(api_key="k", base_url=fresh.base_url, model=MODEL, sleep=sleeps)
    c.create(ASK, max_tokens=10)
    assert sleeps == [2.0]


def _response(headers):
    return httpx2.Response(429, headers=headers, request=httpx2.Request("POST", "http://x/v1/messages"))


class _Exc(Exception):
    def __init__(self, headers):
        self.response = _response(headers)


@pytest.mark.parametrize("value", ["soon", "", " ", "1e400", "-1", "NaN", "Mon, 32 Jan 2026 00:00:00 GMT", "\x00"])
def test_server_wait_ignores_any_malformed_value(value):
    assert server_wait(_Exc({"retry-after": value})) is None
    assert server_wait(_Exc({"retry-after-ms": value})) is None
