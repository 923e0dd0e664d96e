"""Fault injection: each fault surfaces through the official SDK as the SDK's own error."""

from __future__ import annotations

import asyncio
import json
import time

import anthropic
import httpx2
import pytest

from convo.sim import Fault, Faults, SimConfigError, Simulator

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "Hello there, can you help me plan a trip to Kyoto in spring?"}]



@pytest.fixture(autouse=True)
def _fresh_faults(sim):
    sim.faults = None
    yield
    sim.faults = None


@pytest.fixture(scope="module")
def client(sim):
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        yield c


def create(client, **kw):
    return client.messages.create(model=MODEL, max_tokens=200, messages=HELLO, **kw)


def stream_text(client, **kw):
    with client.messages.stream(model=MODEL, max_tokens=200, messages=HELLO, **kw) as stream:
        return list(stream.text_stream), stream.get_final_message()


# -- status faults -------------------------------------------------------------------------


def test_429_is_a_rate_limit_error_with_retry_after(sim, client):
    sim.faults.push("429", "429@7")
    with pytest.raises(anthropic.RateLimitError) as first:
        create(client)
    with pytest.raises(anthropic.RateLimitError) as second:
        create(client)
    assert first.value.response.headers["retry-after"] == "1"
    assert second.value.response.headers["retry-after"] == "7"
    assert first.value.type == "rate_limit_error"
    assert create(client).content  # the schedule is used up: back to normal


def test_500_and_529(sim, client):
    sim.faults.push("500", "529")
    with pytest.raises(anthropic.InternalServerError) as e500:
        create(client)
    with pytest.raises(anthropic.OverloadedError) as e529:
        create(client)
    assert (e500.value.status_code, e500.value.type) == (500, "api_error")
    assert (e529.value.status_code, e529.value.type) == (529, "overloaded_error")
    assert e529.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": e529.value.request_id,
    }


def test_any_status_code(sim, client):
    sim.faults.push("503", "403")
    with pytest.raises(anthropic.ServiceUnavailableError):
        create(client)
    with pytest.raises(anthropic.PermissionDeniedError):
        create(client)


def test_injected_client_errors_say_they_were_injected(sim, client):
    sim.faults.push("400", "403")
    with pytest.raises(anthropic.BadRequestError) as e400:
        create(client)
    with pytest.raises(anthropic.PermissionDeniedError) as e403:
        create(client)
    for err, spec in ((e400.value, "400"), (e403.value, "403")):
        assert f"an injected '{spec}' fault" in err.api_message and "the request itself is valid" in err.api_message
    assert e400.value.api_message.startswith("Invalid request")


def test_sdk_retries_a_529_and_succeeds(sim):
    sim.faults.push("529@0.01", "529@0.01")
    retrying = anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=2)
    sim.clear_requests()
    assert create(retrying).stop_reason == "end_turn"
    seen = sim.requests
    assert [r.header("x-stainless-retry-count") for r in seen] == ["0", "1", "2"]
    assert [r.status for r in seen] == [529, 529, 200]
    assert [r.fault for r in seen] == ["529@0.01", "529@0.01", None]


def test_spend_limit_has_no_retry_after(sim, client):
    sim.faults.push("spend_limit")
    with pytest.raises(anthropic.RateLimitError) as info:
        create(client)
    err = info.value
    assert "retry-after" not in err.response.headers
    assert err.error_code == "enforced_spend_limit_reached"
    assert err.body["error"]["details"] == {"error_code": "enforced_spend_limit_reached"}


def test_async_client_sees_the_same_errors(sim):
    sim.faults.push("529", "429@2")

    async def main():
        async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
            out = []
            for _ in range(2):
                try:
                    await c.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
                except anthropic.APIStatusError as exc:
                    out.append((type(exc), exc.response.headers.get("retry-after")))
            return out

    assert asyncio.run(main()) == [(anthropic.OverloadedError, None), (anthropic.RateLimitError, "2")]


# -- stream faults -------------------------------------------------------------------------


def test_sse_error_after_n_deltas(sim, client):
    sim.faults.push("sse_error@3")
    got = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model=MODEL, max_tokens=200, messages=HELLO) as stream,
    ):
        got.extend(stream.text_stream)  # keeps the deltas that came before the error
    err = info.value
    assert len(got) == 3
    assert err.status_code == 200 and err.type == "overloaded_error"
    assert not isinstance(err, anthropic.OverloadedError)  # the SDK does not map in-stream errors


def test_sse_error_before_any_delta(sim, client):
    sim.faults.push("sse_error")
    with pytest.raises(anthropic.APIStatusError):
        stream_text(client)


def test_dropped_connection_mid_stream(sim, client):
    sim.faults.push("drop@2")
    got = []
    # The body's read fails as the transport's error; from anthropic 2.17 the SDK raises it as
    # its APIConnectionError, with the transport's error as the cause (before, it passed it on).
    with (
        pytest.raises((httpx2.RemoteProtocolError, anthropic.APIConnectionError)) as info,
        client.messages.stream(model=MODEL, max_tokens=200, messages=HELLO) as stream,
    ):
        got.extend(stream.text_stream)  # keeps the deltas that came before the drop
    broken = info.value if isinstance(info.value, httpx2.RemoteProtocolError) else info.value.__cause__
    assert isinstance(broken, httpx2.RemoteProtocolError) and "incomplete chunked read" in str(broken)
    assert len(got) == 2
    assert create(client).content  # the server is fine afterwards


def test_dropped_connection_before_the_response(sim, client):
    sim.faults.push("drop")
    with pytest.raises(anthropic.APIConnectionError) as info:
        create(client)
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)


def test_dropped_connection_is_retried_by_the_sdk(sim):
    sim.faults.push("drop")
    retrying = anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=1)
    assert create(retrying).content


def test_hang_beyond_the_client_timeout(sim, client):
    sim.faults = Faults(["hang"], stall_seconds=5)
    t0 = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        create(client, timeout=0.3)
    assert time.monotonic() - t0 < 2


def test_hang_mid_stream_is_a_read_timeout(sim, client):
    sim.faults = Faults(["hang@2"], stall_seconds=5)
    got = []
    with (
        pytest.raises((httpx2.ReadTimeout, anthropic.APITimeoutError)),
        client.messages.stream(model=MODEL, max_tokens=200, messages=HELLO, timeout=0.3) as stream,
    ):
        got.extend(stream.text_stream)  # keeps the deltas that came before the hang
    assert len(got) == 2


def test_stall_sends_pings_that_keep_a_read_timeout_alive(sim, client):
    sim.faults = Faults(["stall@1"], stall_seconds=0.4, ping_interval=0.05)
    t0 = time.monotonic()
    deltas, final = stream_text(client, timeout=0.25)
    assert time.monotonic() - t0 >= 0.4
    assert final.stop_reason == "end_turn" and len(deltas) > 5


def test_stall_shows_in_the_raw_stream(sim, client):
    sim.faults = Faults(["stall@1"], stall_seconds=0.2, ping_interval=0.05)
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=200, messages=HELLO, stream=True
    ) as response:
        raw = b"".join(response.iter_bytes())
    assert raw.count(b"event: ping\n") >= 3


def test_malformed_line_breaks_the_decoder(sim, client):
    sim.faults.push("malformed@1")
    with pytest.raises(json.JSONDecodeError):
        stream_text(client)


def test_truncated_stream_has_no_stop_reason(sim, client):
    # The SDK does not notice a stream that ends without message_stop; convo must.
    sim.faults.push("truncate@2")
    deltas, final = stream_text(client)
    assert len(deltas) == 2 and final.stop_reason is None


def test_unknown_events_are_ignored(sim, client):
    sim.faults.push("unknown@1")
    deltas, final = stream_text(client)
    assert final.stop_reason == "end_turn" and len(deltas) > 5


def test_stream_faults_on_non_streaming_requests_do_not_apply(sim, client):
    sim.faults.push("sse_error@1", "truncate", "malformed")
    for _ in range(3):
        assert create(client).stop_reason == "end_turn"


# -- the Faults object ---------------------------------------------------------------------


def test_rates_are_deterministic_for_a_seed():
    a = Faults({"500": 0.2, "529": 0.1}, seed=3)
    b = Faults({"500": 0.2, "529": 0.1}, seed=3)
    seq_a = [str(a.next()) for _ in range(2000)]
    assert seq_a == [str(b.next()) for _ in range(2000)]
    assert 0.25 < sum(k != "ok" for k in seq_a) / 2000 < 0.35
    assert seq_a != [str(Faults({"500": 0.2, "529": 0.1}, seed=4).next()) for _ in range(2000)]


def test_schedule_comes_first_then_rates():
    f = Faults(["500", "ok", "drop@2"], rates={"529": 1.0})
    assert [str(f.next()) for _ in range(5)] == ["500", "ok", "drop@2", "529", "529"]
    assert [str(x) for x in f.seen] == ["500", "drop@2", "529", "529"]


def test_rates_through_the_server():
    with Simulator(seed=1, faults={"529": 0.5}) as s:
        c = anthropic.Anthropic(base_url=s.base_url, api_key="test", max_retries=0)
        outcomes = []
        for _ in range(40):
            try:
                create(c)
                outcomes.append("ok")
            except anthropic.OverloadedError:
                outcomes.append("529")
    assert 10 < outcomes.count("529") < 30
    with Simulator(seed=1, faults={"529": 0.5}) as s:
        c = anthropic.Anthropic(base_url=s.base_url, api_key="test", max_retries=0)
        again = []
        for _ in range(40):
            try:
                create(c)
                again.append("ok")
            except anthropic.OverloadedError:
                again.append("529")
    assert again == outcomes


def test_fault_parsing():
    assert Fault.parse("429") == Fault("status", status=429, retry_after=1.0)
    assert Fault.parse("500@3") == Fault("status", status=500, retry_after=3.0)
    assert Fault.parse("sse_error@4") == Fault("sse_error", after=4)
    assert str(Fault.parse("spend_limit")) == "spend_limit"


@pytest.mark.parametrize("bad", ["bogus", "200", "drop@x", "drop@-1", ""])
def test_bad_fault_specs(bad):
    with pytest.raises(SimConfigError):
        Faults([bad])


def test_rates_must_be_probabilities():
    with pytest.raises(SimConfigError, match="sum to at most 1"):
        Faults({"500": 0.7, "529": 0.6})
    with pytest.raises(SimConfigError):
        Faults({"500": 2})
