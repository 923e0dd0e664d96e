"""Client and AsyncClient against the simulator, over real HTTP, through the official SDK."""

import asyncio
import inspect
import json
import logging

import anthropic
import httpx2
import pytest

import convo
from convo import AsyncClient, Client, Conversation, RetryPolicy
from convo.sim import Simulator

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-test-SECRET-0123456789"
ASK = [{"role": "user", "content": "Tell me about the weather today in the city of Oslo."}]


class Sleeps(list):
    """An injected sleep that records instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


class AsyncSleeps(list):
    async def __call__(self, seconds):
        self.append(seconds)


def client(sim, **kw):
    kw.setdefault("sleep", Sleeps())
    return Client(api_key=KEY, base_url=sim.base_url, model=MODEL, **kw)


def message_posts(sim):
    return [r for r in sim.requests if r.path == "/v1/messages"]


def test_create_returns_the_sdk_message(fresh):
    c = client(fresh)
    msg = c.create(ASK, max_tokens=100, system="Be brief.", temperature=0)
    assert msg.type == "message" and msg.role == "assistant" and msg.content[0].text
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    (sent,) = message_posts(fresh)
    assert sent.body["system"] == "Be brief." and sent.body["temperature"] == 0 and sent.body["max_tokens"] == 100
    assert sent.header("x-stainless-retry-count") == "0"
    assert c.stats.successes == 1 and c.stats.input_tokens == msg.usage.input_tokens


@pytest.mark.parametrize("fault", ["500", "529", "503", "408", "409", "429", "drop"])
def test_transient_failures_are_retried(fresh, fault):
    fresh.faults = [fault, fault, "ok"]
    c = client(fresh)
    assert c.create(ASK, max_tokens=50).content[0].text
    assert len(message_posts(fresh)) == 3
    assert c.stats.retries == 2 and c.stats.successes == 1


def test_retry_after_is_honoured_and_capped(fresh):
    fresh.faults = ["429@2", "429@500", "ok"]
    sleeps = Sleeps()
    c = client(fresh, sleep=sleeps, retry=RetryPolicy(max_retry_after=30))
    c.create(ASK, max_tokens=50)
    assert sleeps == [2.0, 30.0]
    assert c.stats.rate_limited == 2


def test_backoff_is_full_jitter_and_capped(fresh):
    fresh.faults = ["500"] * 5 + ["ok"]
    sleeps = Sleeps()
    c = client(fresh, sleep=sleeps, retry=RetryPolicy(max_attempts=6, initial_backoff=1, max_backoff=3))
    c.create(ASK, max_tokens=50)
    assert len(sleeps) == 5 and all(0 <= s <= 3 for s in sleeps)


@pytest.mark.parametrize(
    "fault, error, fragment",
    [
        ("400", convo.BadRequestError, "it is not retried"),
        ("403", convo.PermissionDeniedError, "permissions"),
        ("404", convo.NotFoundError, "model name"),
        ("413", convo.RequestTooLargeError, "size limit"),
        ("spend_limit", convo.SpendLimitError, "spend limit"),
    ],
)
def test_permanent_errors_raise_at_once(fresh, fault, error, fragment):
    fresh.faults = [fault, "ok"]
    c = client(fresh)
    with pytest.raises(error) as info:
        c.create(ASK, max_tokens=50)
    assert fragment in str(info.value)
    assert info.value.request_id and info.value.attempts == 1
    assert len(message_posts(fresh)) == 1


def test_a_real_invalid_request_says_what_was_wrong(fresh):
    c = client(fresh)
    with pytest.raises(convo.BadRequestError) as info:
        c.create([{"role": "user", "content": "hi"}], max_tokens=50, temperature="hot")
    assert "temperature" in str(info.value)
    assert len(message_posts(fresh)) == 1


def test_wrong_key_is_an_authentication_error_without_the_key():
    with Simulator(api_key="the-right-key") as sim:
        c = Client(api_key=KEY, base_url=sim.base_url, model=MODEL)
        with pytest.raises(convo.AuthenticationError) as info:
            c.create(ASK, max_tokens=10)
        assert "ANTHROPIC_API_KEY" in str(info.value)
        assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_exhausted_retries_raise_a_typed_error(fresh):
    fresh.faults = ["529"] * 10
    c = client(fresh, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(convo.OverloadedError) as info:
        c.create(ASK, max_tokens=50)
    assert info.value.attempts == 3 and "after 3 attempts" in str(info.value)
    assert c.stats.failures == {"OverloadedError": 1}


def test_retry_budget_fails_fast_when_most_calls_fail(fresh):
    fresh.faults = ["500"] * 100
    c = client(fresh, retry=RetryPolicy(max_attempts=4, budget=12))
    for _ in range(3):
        with pytest.raises(convo.ServerError):
            c.create(ASK, max_tokens=20)
    # 12 tokens pay for two retries of 5; every later failure is returned at once.
    assert len(message_posts(fresh)) == 3 + 2
    assert c.retry_budget.refused >= 2


def test_retry_budget_refills_on_success(fresh):
    budget = convo.RetryBudget(10)
    budget.acquire(RuntimeError())
    budget.succeeded(0)
    assert budget.tokens == 6
    budget.succeeded(5)
    assert budget.tokens == 10


def test_fallback_model_after_repeated_overload(fresh):
    fresh.faults = ["529", "529", "ok"]
    c = client(fresh, fallback_models=["claude-haiku-4-5"])
    msg = c.create(ASK, max_tokens=50)
    models = [r.body["model"] for r in message_posts(fresh)]
    assert models == [MODEL, MODEL, "claude-haiku-4-5"]
    assert msg.model == "claude-haiku-4-5" and c.stats.fallbacks == 1


def test_count_tokens_is_exact_from_the_api(fresh):
    """count_tokens is the server's own count (what usage then reports), not convo's estimate."""
    c = client(fresh)
    ask = [{"role": "user", "content": "Hello, Claude"}]
    n = c.count_tokens(ask, system="Be brief.")
    assert fresh.requests[-1].path == "/v1/messages/count_tokens"
    assert n == c.create(ask, system="Be brief.", max_tokens=10).usage.input_tokens
    longer = c.count_tokens([{"role": "user", "content": "Hello, Claude. " * 40}], system="Be brief.")
    assert longer > n + 40  # it counts the text sent


def test_exact_counter_through_the_sdk(fresh):
    import anthropic

    sdk = anthropic.Anthropic(api_key=KEY, base_url=fresh.base_url)
    exact = convo.ExactCounter(sdk, model=MODEL)
    msgs = [convo.to_message({"role": "user", "content": "How many tokens is this?"})]
    served = client(fresh).create([{"role": "user", "content": "How many tokens is this?"}], system="sys", max_tokens=10)
    assert exact.count_request(msgs, system="sys") == served.usage.input_tokens  # the server's count
    # a message's own tokens: the request with it minus the request without it
    before = [convo.to_message({"role": "user", "content": "."}), convo.to_message({"role": "assistant", "content": "."})]
    alone = exact.count_request(before)
    assert exact.count_message(msgs[0]) == exact.count_request([*before, msgs[0]]) - alone > 0


def test_exact_counter_reports_an_unreachable_api():
    import anthropic

    sdk = anthropic.Anthropic(api_key=KEY, base_url="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(convo.TokenCountError, match="reachable"):
        convo.ExactCounter(sdk, model=MODEL).count_text("hi")


def test_unreachable_api_is_a_connection_error():
    c = Client(api_key=KEY, base_url="http://127.0.0.1:9", model=MODEL, sleep=Sleeps(), retry=RetryPolicy(max_attempts=2))
    with pytest.raises(convo.APIConnectionError, match="base_url"):
        c.create(ASK, max_tokens=10)


# -- streaming -------------------------------------------------------------------------------


def clean_stream_text(sim):
    sim.faults = None
    return "".join(client(sim).stream(ASK, max_tokens=300).text_stream)


def test_stream_text_and_final_message(fresh):
    c = client(fresh)
    with c.stream(ASK, max_tokens=300) as s:
        chunks = list(s.text_stream)
        final = s.get_final_message()
    assert len(chunks) > 3
    assert "".join(chunks) == final.content[0].text
    assert final.stop_reason == "end_turn"
    assert c.stats.as_dict()["ttft_p50"] is not None


@pytest.mark.parametrize(
    "fault", ["sse_error@0", "sse_error@3", "drop@2", "truncate@4", "malformed@3", "drop@0", "500", "529", "429"]
)
def test_stream_faults_deliver_each_character_once(fresh, fault):
    expected = clean_stream_text(fresh)
    fresh.faults = [fault]
    c = client(fresh)
    s = c.stream(ASK, max_tokens=300)
    got = "".join(s.text_stream)
    assert got == expected
    assert s.get_final_message().content[0].text == expected
    assert c.stats.retries == 1


def test_a_stalled_stream_times_out_and_resumes(fresh):
    expected = clean_stream_text(fresh)
    fresh.faults = ["hang@3"]
    c = client(fresh, timeout=0.5)
    assert "".join(c.stream(ASK, max_tokens=300).text_stream) == expected


def test_stream_that_keeps_failing_raises_with_the_partial_text(fresh):
    fresh.faults = ["sse_error@2"] * 10
    c = client(fresh, retry=RetryPolicy(max_attempts=2))
    seen = []
    with pytest.raises(convo.StreamError) as info:
        for text in c.stream(ASK, max_tokens=300).text_stream:
            seen.append(text)  # noqa: PERF402 -- what arrived before the failure, kept as it raises
    assert info.value.partial == "".join(seen) and seen


def test_stream_with_resume_by_restart_policy(fresh):
    expected = clean_stream_text(fresh)
    fresh.faults = ["sse_error@3"]
    restarts = []
    c = client(fresh, retry=RetryPolicy(stream_resume="restart"))
    with pytest.raises(convo.StreamRestartedError):
        "".join(c.stream(ASK, max_tokens=300).text_stream)
    fresh.faults = ["sse_error@3"]
    s = c.stream(ASK, max_tokens=300, on_restart=restarts.append)
    text = "".join(s.text_stream)
    assert restarts and restarts[0].partial and text.endswith(expected)
    assert s.get_final_message().content[0].text == expected


# -- async twins --------------------------------------------------------------------------------


def aclient(sim, **kw):
    kw.setdefault("sleep", AsyncSleeps())
    return AsyncClient(api_key=KEY, base_url=sim.base_url, model=MODEL, **kw)


def test_async_create_and_stream_match_sync(fresh):
    expected = clean_stream_text(fresh)

    async def main():
        c = aclient(fresh)
        msg = await c.create(ASK, max_tokens=300)
        fresh.faults = ["sse_error@3"]
        async with c.stream(ASK, max_tokens=300) as s:
            got = "".join([t async for t in s.text_stream])
            final = await s.get_final_message()
        await c.close()
        return msg, got, final

    msg, got, final = asyncio.run(main())
    assert msg.content[0].text == expected == got == final.content[0].text


def test_async_concurrency_is_bounded_and_nothing_is_lost(fresh):
    fresh.faults = {"500": 0.2, "529": 0.1}

    async def main():
        c = aclient(fresh, max_concurrency=3, retry=RetryPolicy(max_attempts=10))
        replies = await asyncio.gather(*(c.create([{"role": "user", "content": f"item {i}"}], max_tokens=30) for i in range(40)))
        return c, replies

    c, replies = asyncio.run(main())
    assert len(replies) == 40 and all(r.content[0].text for r in replies)
    assert c.stats.successes == 40


def test_sync_and_async_signatures_match():
    for name in ("create", "stream", "count_tokens", "close", "batch"):
        sync, asyn = inspect.signature(getattr(Client, name)), inspect.signature(getattr(AsyncClient, name))
        assert list(sync.parameters) == list(asyn.parameters), name
    assert list(inspect.signature(Client).parameters) == list(inspect.signature(AsyncClient).parameters)
    for name in ("send", "stream"):
        a, b = getattr(Conversation, name), getattr(Conversation, "a" + name)
        assert list(inspect.signature(a).parameters) == list(inspect.signature(b).parameters)


# -- the conversation talks --------------------------------------------------------------------


def test_conversation_send_and_stream(fresh):
    conv = Conversation("Be brief.", model=MODEL, budget=4000, client=client(fresh))
    reply = conv.send("Hello there, I am Ada.")
    assert reply and [m.role for m in conv.messages] == ["user", "assistant"]
    streamed = "".join(conv.stream("What is my name?"))
    assert streamed == conv.messages[-1].text
    assert len(conv) == 4
    sent = message_posts(fresh)[-1].body
    assert sent["messages"][0]["content"] == "Hello there, I am Ada." and sent["system"] == "Be brief."


def test_conversation_failure_takes_the_turn_back(fresh):
    conv = Conversation(model=MODEL, budget=4000, client=client(fresh))
    conv.send("first")
    fresh.faults = ["400"]
    with pytest.raises(convo.BadRequestError):
        conv.send("second")
    assert len(conv) == 2
    fresh.faults = ["sse_error@2"] * 10
    conv.client = client(fresh, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(convo.StreamError):
        list(conv.stream("third"))
    assert len(conv) == 2


def test_conversation_async_twins(fresh):
    async def main():
        conv = Conversation(model=MODEL, budget=4000, client=aclient(fresh))
        a = await conv.asend("Hello")
        b = "".join([t async for t in conv.astream("Again")])
        return conv, a, b

    conv, a, b = asyncio.run(main())
    assert [m.text for m in conv.messages[1::2]] == [a, b]


def test_conversation_without_client():
    conv = Conversation(model=MODEL, budget=1000)
    with pytest.raises(convo.InvalidConfigError, match=r"no client.*store\.open.*conv\.client"):
        conv.send("hi")  # the message names every place a client is given, a stored conversation's too
    assert len(conv) == 0


# -- secrets ------------------------------------------------------------------------------------


def test_key_never_leaks(fresh, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    c = client(fresh)
    fresh.faults = ["500", "ok"]
    c.create(ASK, max_tokens=20)
    fresh.faults = ["400"]
    with pytest.raises(convo.BadRequestError) as info:
        c.create(ASK, max_tokens=20)
    conv = Conversation(model=MODEL, budget=4000, client=c)
    conv.add_user("hi")
    conv.save(tmp_path / "c.json")
    import traceback

    texts = [repr(c), str(c.stats), repr(c.stats), str(info.value), repr(info.value),
             "".join(traceback.format_exception(info.value)), caplog.text, (tmp_path / "c.json").read_text()]
    texts += [str(r.headers) for r in fresh.requests]
    for text in texts:
        assert KEY not in text


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(convo.InvalidConfigError, match="ANTHROPIC_API_KEY"):
        Client(model=MODEL)


@pytest.mark.parametrize(
    "kwargs", [{"max_concurrency": 0}, {"max_concurrency": 2.5}, {"model": ""}, {"retry": None, "max_concurrency": -1}]
)
def test_bad_client_settings(kwargs):
    with pytest.raises(convo.InvalidConfigError):
        Client(api_key=KEY, **kwargs)


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"max_backoff": -1}, {"stream_resume": "maybe"}])
def test_bad_retry_policy(kwargs):
    with pytest.raises(convo.InvalidConfigError):
        RetryPolicy(**kwargs)


def test_bad_requests_are_refused_before_sending(fresh):
    c = client(fresh)
    for call in (
        lambda: c.create("hello", max_tokens=10),
        lambda: c.create(ASK, max_tokens=-1),
        lambda: c.create([{"role": "robot", "content": "x"}], max_tokens=10),
        lambda: c.create(ASK, max_tokens=10, model="   "),
        lambda: c.create(ASK, max_tokens=500_000),  # above the model's maximum output
    ):
        with pytest.raises(convo.InvalidInputError):
            call()
    assert message_posts(fresh) == []


def test_the_default_model_is_the_catalogues(fresh):
    c = Client(api_key=KEY, base_url=fresh.base_url, sleep=Sleeps())
    assert c.model == convo.models.DEFAULT_MODEL
    c.create(ASK, max_tokens=10)
    (sent,) = message_posts(fresh)
    assert sent.body["model"] == convo.models.DEFAULT_MODEL


# -- the SDK seam: an SDK client, an HTTP client, headers and timeouts passed through ----------


def message_json(model, text, **usage):
    return {
        "id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": usage.get("input_tokens", 5), "output_tokens": usage.get("output_tokens", 2)},
    }


def sse(model, pieces, *, stop=True):
    """A scripted SSE body: the text in ``pieces``, ending with message_stop unless ``stop`` is False."""
    start = {**message_json(model, ""), "content": [], "stop_reason": None}
    events = [("message_start", {"type": "message_start", "message": start}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": p}}) for p in pieces]
    if stop:
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                      "usage": {"output_tokens": len(pieces)}}),
                   ("message_stop", {"type": "message_stop"})]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


class Script:
    """A scripted transport's handler: answers in order, records every request."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []

    def __call__(self, request):
        self.requests.append(request)
        status, body = self.answers.pop(0)
        if isinstance(body, bytes):
            return httpx2.Response(status, headers={"content-type": "text/event-stream"}, content=body)
        return httpx2.Response(status, json=body)

    def bodies(self):
        return [json.loads(r.content) for r in self.requests]


OVERLOADED = (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


def test_a_scripted_transport_through_http_client():
    script = Script(OVERLOADED, (200, message_json(MODEL, "scripted reply")))
    http = httpx2.Client(transport=httpx2.MockTransport(script))
    sleeps = Sleeps()
    c = Client(api_key=KEY, model=MODEL, http_client=http, default_headers={"x-team": "blue"}, timeout=7.5, sleep=sleeps)
    reply = c.create(ASK, max_tokens=20)
    assert isinstance(reply, anthropic.types.Message) and reply.content[0].text == "scripted reply"
    assert len(script.requests) == 2 and len(sleeps) == 1 and c.stats.retries == 1  # convo retried, not the SDK
    for request in script.requests:
        assert request.headers["x-team"] == "blue"
        assert request.extensions["timeout"]["read"] == 7.5
    c.timeout = 2  # live: the next request carries it
    script.answers.append((200, message_json(MODEL, "again")))
    c.create(ASK, max_tokens=20)
    assert script.requests[-1].extensions["timeout"]["read"] == 2
    c.close()
    assert not http.is_closed  # the caller's HTTP client is the caller's to close
    http.close()


def test_a_scripted_stream_that_breaks_is_continued():
    script = Script((200, sse(MODEL, ["Hello, ", "wor"], stop=False)), (200, sse(MODEL, ["ld."])))
    c = Client(api_key=KEY, model=MODEL, http_client=httpx2.Client(transport=httpx2.MockTransport(script)),
               sleep=Sleeps())
    with c.stream(ASK, max_tokens=50) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello, world." and final.content[0].text == "Hello, world."
    first, second = script.bodies()
    assert first["stream"] is True and second["messages"][: len(ASK)] == ASK
    assert second["messages"][len(ASK)] == {"role": "assistant", "content": "Hello, wor"}  # the text so far


def test_an_sdk_client_is_used_with_its_retries_off_and_left_open(fresh):
    sdk = anthropic.Anthropic(api_key=KEY, base_url=fresh.base_url, max_retries=5, default_headers={"x-team": "green"})
    c = Client(sdk=sdk, model=MODEL, sleep=Sleeps())
    assert c.sdk.max_retries == 0 and sdk.max_retries == 5 and c.base_url == str(sdk.base_url)
    fresh.faults = ["500", "ok"]
    c.create(ASK, max_tokens=20)
    sent = message_posts(fresh)
    assert len(sent) == 2 and [r.header("x-stainless-retry-count") for r in sent] == ["0", "0"]
    assert all(r.header("x-team") == "green" for r in sent)
    c.close()
    assert sdk.messages.create(model=MODEL, max_tokens=10, messages=ASK).content  # still open


def test_an_sdk_client_needs_no_api_key(fresh, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(convo.InvalidConfigError, match="API key"):
        Client(base_url=fresh.base_url)
    sdk = anthropic.Anthropic(api_key=KEY, base_url=fresh.base_url, max_retries=0)
    assert Client(sdk=sdk).sdk is sdk  # nothing to change: used as it is


def bedrock(http):
    pytest.importorskip("botocore", reason="Bedrock request signing needs botocore (in the dev extra)")
    return anthropic.AnthropicBedrock(aws_access_key="AKIDEXAMPLE", aws_secret_key="secret", aws_region="us-east-1",
                                      http_client=http)


def vertex(http):
    return anthropic.AnthropicVertex(region="us-east5", project_id="proj", access_token="token", http_client=http)


@pytest.mark.parametrize(
    "make_sdk, model, path, auth",
    [
        (bedrock, "anthropic.claude-sonnet-4-6", "/model/anthropic.claude-sonnet-4-6/invoke", "AWS4-HMAC-SHA256"),
        (vertex, MODEL, f"/v1/projects/proj/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict",
         "Bearer token"),
    ],
)
def test_cloud_sdk_clients_through_the_seam(make_sdk, model, path, auth):
    script = Script(OVERLOADED, (200, message_json(model, "from the cloud")))
    c = Client(sdk=make_sdk(httpx2.Client(transport=httpx2.MockTransport(script))), model=model, sleep=Sleeps())
    assert c.create(ASK, max_tokens=20).content[0].text == "from the cloud"
    assert len(script.requests) == 2 and c.stats.retries == 1  # convo's retries, the SDK's are off
    for request in script.requests:
        assert request.url.path == path and request.headers["authorization"].startswith(auth)


def test_a_sync_sdk_for_the_async_client_and_back_is_refused(fresh):
    with pytest.raises(convo.InvalidConfigError, match="AsyncClient"):
        Client(sdk=anthropic.AsyncAnthropic(api_key=KEY, base_url=fresh.base_url))
    with pytest.raises(convo.InvalidConfigError, match="Client\\(sdk="):
        AsyncClient(sdk=anthropic.Anthropic(api_key=KEY, base_url=fresh.base_url))


def test_default_headers_reach_the_simulator(fresh):
    c = client(fresh, default_headers={"x-convo-test": "seam"})
    c.create(ASK, max_tokens=20)
    with c.stream(ASK, max_tokens=20) as s:
        s.until_done()
    c.count_tokens(ASK)
    assert [r.header("x-convo-test") for r in fresh.requests] == ["seam", "seam", "seam"]


def test_async_scripted_transport_and_sdk(fresh):
    script = Script(OVERLOADED, (200, message_json(MODEL, "async scripted")))

    async def main():
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(script))
        async with AsyncClient(api_key=KEY, model=MODEL, http_client=http, sleep=AsyncSleeps(),
                               default_headers={"x-team": "async"}) as c:
            scripted = await c.create(ASK, max_tokens=20)
        sdk = anthropic.AsyncAnthropic(api_key=KEY, base_url=fresh.base_url, max_retries=3)
        async with AsyncClient(sdk=sdk, model=MODEL) as c:
            served = await c.create(ASK, max_tokens=20)
        await sdk.close()
        await http.aclose()
        return scripted, served

    scripted, served = asyncio.run(main())
    assert scripted.content[0].text == "async scripted" and len(script.requests) == 2
    assert script.requests[0].headers["x-team"] == "async"
    assert served.content[0].text and message_posts(fresh)[-1].header("x-stainless-retry-count") == "0"


# -- the flows under a scripted driver: every decision, no network, no sleeping ----------------


def overloaded(retry_after="2"):
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    response = httpx2.Response(529, request=request, headers={"retry-after": retry_after},
                               json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    return anthropic.APIStatusError("Overloaded", response=response, body=response.json())


def drive(flow, answers, now=100.0):
    """Carry out a flow's effects by hand: ``Call`` takes the next answer (raised if an error),
    ``Sleep`` is recorded, ``Now`` is fixed. Returns the result, the calls and the sleeps."""
    from convo._flow import Call, Now, Sleep

    calls, sleeps, send, error = [], [], None, None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration as stop:
            return stop.value, calls, sleeps
        send, error = None, None
        if isinstance(effect, Now):
            send = now
        elif isinstance(effect, Sleep):
            sleeps.append(effect.seconds)
        elif isinstance(effect, Call):
            calls.append(effect.kwargs["model"])
            answer = answers.pop(0)
            if isinstance(answer, BaseException):
                error = answer
            else:
                send = answer
        else:
            raise TypeError(f"unexpected effect {effect!r}")


def test_call_flow_decisions_under_a_scripted_driver():
    from convo._calls import call_flow

    c = Client(api_key=KEY, model=MODEL, fallback_models=["claude-haiku-4-5"])
    ok = anthropic.types.Message.model_validate(message_json("claude-haiku-4-5", "done"))
    request = c._request(ASK, None, 20, None, {})
    result, calls, sleeps = drive(call_flow(request, c._ctx), [overloaded(), overloaded("3"), ok])
    assert result is ok and sleeps == [2.0, 3.0]  # the server's retry-after, as asked
    assert calls == [MODEL, MODEL, "claude-haiku-4-5"]  # two overloaded answers: the fallback
    assert c.stats.retries == 2 and c.stats.fallbacks == 1 and c.stats.successes == 1

    c.retry = RetryPolicy(max_attempts=2)
    with pytest.raises(convo.OverloadedError) as info:
        drive(call_flow(request, c._ctx), [overloaded(), overloaded()])
    assert info.value.attempts == 2 and isinstance(info.value.__cause__, anthropic.APIStatusError)
