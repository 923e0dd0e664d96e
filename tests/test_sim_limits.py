"""Rate limits: token buckets in virtual time, the 429 they give and the headers they report."""

from __future__ import annotations

import math
from datetime import datetime

import anthropic
import pytest

from convo.sim import ManualClock, RateLimits, SimConfigError, Simulator
from convo.sim.limits import Bucket, model_class

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "Hello there, can you help me plan a trip to Kyoto in spring?"}]


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


# -- buckets in virtual time ---------------------------------------------------------------


def test_bucket_refills_continuously():
    b = Bucket(60, now=0.0)
    b.take(60, 0.0)
    assert b.level(0.0) == 0
    assert b.level(0.5) == pytest.approx(0.5)
    assert b.wait(1, 0.0) == pytest.approx(1.0)
    assert b.level(1000.0) == 60  # never above capacity
    assert b.full_at(0.0) == pytest.approx(60.0)


def test_admit_refuses_without_taking_and_says_how_long():
    clock = ManualClock(0)
    limits = RateLimits(rpm=2, input_tpm=600, clock=clock)
    assert limits.admit(MODEL, 100) is None
    assert limits.admit(MODEL, 100) is None
    refused = limits.admit(MODEL, 100)
    assert refused.limit == "requests" and refused.retry_after == 30  # 2 per minute: one every 30 s
    assert "2 requests per minute" in refused.message
    clock.advance(29.9)
    assert limits.admit(MODEL, 100) is not None
    clock.advance(0.1)
    assert limits.admit(MODEL, 100) is None


def test_input_tokens_limit_and_a_request_larger_than_the_limit():
    clock = ManualClock(0)
    limits = RateLimits(input_tpm=1000, clock=clock)
    assert limits.admit(MODEL, 900) is None
    refused = limits.admit(MODEL, 200)
    assert refused.limit == "input_tokens" and refused.retry_after == math.ceil(100 / (1000 / 60))
    huge = limits.admit(MODEL, 5000)
    assert huge.limit == "input_tokens" and "more than the limit allows" in huge.message


def test_output_is_charged_as_produced_and_can_go_into_debt():
    clock = ManualClock(0)
    limits = RateLimits(output_tpm=600, clock=clock)
    assert limits.admit(MODEL, 10) is None  # max_tokens is not reserved
    limits.charge_output(MODEL, 1200)  # a reply longer than the whole budget
    refused = limits.admit(MODEL, 10)
    assert refused.limit == "output_tokens" and refused.retry_after == 61  # 601 tokens at 10/s
    clock.advance(61)
    assert limits.admit(MODEL, 10) is None


def test_model_classes_have_separate_pools():
    assert model_class("claude-sonnet-4-6") == model_class("claude-sonnet-4-5") == "sonnet"
    assert model_class("claude-haiku-4-5") == "haiku"
    limits = RateLimits(rpm=1, clock=ManualClock(0))
    assert limits.admit("claude-sonnet-4-6", 1) is None
    assert limits.admit("claude-sonnet-4-5", 1) is not None
    assert limits.admit("claude-haiku-4-5", 1) is None


def test_headers_for_each_limit_and_tokens_as_their_sum():
    clock = ManualClock(1_800_000_000)
    limits = RateLimits(rpm=50, input_tpm=80_000, output_tpm=16_000, clock=clock)
    limits.admit(MODEL, 2_400)
    limits.charge_output(MODEL, 4_100)
    h = limits.headers(MODEL)
    assert h["anthropic-ratelimit-requests-limit"] == "50"
    assert h["anthropic-ratelimit-requests-remaining"] == "49"
    assert h["anthropic-ratelimit-input-tokens-remaining"] == "78000"  # rounded like the API
    assert h["anthropic-ratelimit-output-tokens-remaining"] == "12000"
    assert h["anthropic-ratelimit-tokens-limit"] == "96000"
    assert h["anthropic-ratelimit-tokens-remaining"] == "90000"  # 77600 + 11900, rounded half up
    assert parse_time(h["anthropic-ratelimit-requests-reset"]) == clock.now + math.ceil(60 / 50)  # whole seconds
    assert parse_time(h["anthropic-ratelimit-input-tokens-reset"]) == clock.now + math.ceil(2_400 / (80_000 / 60))
    assert parse_time(h["anthropic-ratelimit-tokens-reset"]) == parse_time(h["anthropic-ratelimit-output-tokens-reset"])
    assert h["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_without_limits_every_header_family_is_still_sent_generously():
    h = RateLimits().headers(MODEL)
    families = ("requests", "tokens", "input-tokens", "output-tokens")
    assert set(h) == {f"anthropic-ratelimit-{f}-{k}" for f in families for k in ("limit", "remaining", "reset")}
    for f in families:
        assert int(h[f"anthropic-ratelimit-{f}-remaining"]) == int(h[f"anthropic-ratelimit-{f}-limit"]) >= 1_000_000


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "10"])
def test_limits_must_be_positive_ints(bad):
    with pytest.raises(SimConfigError):
        RateLimits(rpm=bad)


# -- through the server and the SDK --------------------------------------------------------


@pytest.fixture()
def clock():
    return ManualClock(1_800_000_000)


def test_requests_per_minute_end_to_end(clock):
    with Simulator(rpm=3, clock=clock) as sim:
        c = anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0)
        remaining = []
        for _ in range(3):
            raw = c.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=HELLO)
            assert raw.headers["anthropic-ratelimit-requests-limit"] == "3"
            remaining.append(raw.headers["anthropic-ratelimit-requests-remaining"])
        assert remaining == ["2", "1", "0"]
        # no token limits configured: those headers report the generous defaults, untouched
        assert raw.headers["anthropic-ratelimit-input-tokens-remaining"] == raw.headers[
            "anthropic-ratelimit-input-tokens-limit"]
        with pytest.raises(anthropic.RateLimitError) as info:
            c.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
        err = info.value
        assert err.response.headers["retry-after"] == "20"
        assert err.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert "3 requests per minute" in err.api_message
        clock.advance(20)
        assert c.messages.create(model=MODEL, max_tokens=50, messages=HELLO).content


def test_token_headers_agree_with_usage(clock):
    with Simulator(input_tpm=10_000, output_tpm=2_000, clock=clock, round_remaining=False) as sim:
        c = anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0)
        raw = c.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=HELLO)
        usage = raw.parse().usage
        h = raw.headers
        assert int(h["anthropic-ratelimit-input-tokens-remaining"]) == 10_000 - usage.input_tokens
        assert int(h["anthropic-ratelimit-output-tokens-remaining"]) == 2_000 - usage.output_tokens
        assert h["anthropic-ratelimit-tokens-limit"] == "12000"
        assert int(h["anthropic-ratelimit-tokens-remaining"]) == 12_000 - usage.input_tokens - usage.output_tokens
        assert int(h["anthropic-ratelimit-requests-limit"]) >= 1_000_000  # not configured: generous


def test_streams_carry_the_headers_and_are_limited_too(clock):
    with Simulator(rpm=1, clock=clock) as sim:
        c = anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0)
        with c.messages.stream(model=MODEL, max_tokens=50, messages=HELLO) as stream:
            assert stream.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
            stream.until_done()
        with (
            pytest.raises(anthropic.RateLimitError),
            c.messages.stream(model=MODEL, max_tokens=50, messages=HELLO) as stream,
        ):
            stream.until_done()


def test_count_tokens_does_not_use_the_messages_limit(clock):
    with Simulator(rpm=1, clock=clock) as sim:
        c = anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0)
        c.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
        for _ in range(3):
            assert c.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens > 0
