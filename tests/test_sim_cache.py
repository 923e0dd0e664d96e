"""The simulator's prompt caching, checked through the official SDK (convo/sim/cache.py)."""

from __future__ import annotations

import anthropic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convo.sim import ManualClock, Simulator
from convo.sim.cache import min_cacheable

MODEL = "claude-sonnet-4-6"
BIG = " ".join(f"Fact {i}: the archive keeps record {i} in drawer {i % 17}." for i in range(300))  # ~4k tokens
CC = {"type": "ephemeral"}


@pytest.fixture(scope="module")
def clock():
    return ManualClock()


@pytest.fixture(scope="module")
def sim(clock):
    with Simulator(seed=0, clock=clock) as s:
        yield s


@pytest.fixture
def client(sim):
    sim.prompt_cache.clear()
    return anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0)


def system(text=BIG, **cc):
    return [{"type": "text", "text": text, "cache_control": {**CC, **cc}}]


def ask(client, **kw):
    kw.setdefault("messages", [{"role": "user", "content": "Hello there"}])
    return client.messages.create(model=kw.pop("model", MODEL), max_tokens=50, **kw).usage


def total(client, **kw):
    kw.setdefault("messages", [{"role": "user", "content": "Hello there"}])
    kw = {k: v for k, v in kw.items() if k != "cache_control"}
    return client.messages.count_tokens(model=MODEL, **kw).input_tokens


def test_system_breakpoint_writes_then_reads(client):
    first = ask(client, system=system())
    assert first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens > 1024
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert first.cache_creation.ephemeral_1h_input_tokens == 0
    second = ask(client, system=system())
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    n = total(client, system=system())
    for u in (first, second):
        assert u.cache_read_input_tokens + u.cache_creation_input_tokens + u.input_tokens == n
    assert second.input_tokens == n - second.cache_read_input_tokens  # the tokens after the breakpoint


def test_no_breakpoint_no_cache(client):
    for _ in range(2):
        u = ask(client, system=BIG)
        assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (0, 0)
        assert u.input_tokens == total(client, system=BIG)


def test_five_minute_ttl_is_refreshed_by_each_hit(client, clock):
    ask(client, system=system())
    clock.advance(290)
    assert ask(client, system=system()).cache_read_input_tokens > 0  # refreshed at 290 s
    clock.advance(290)
    assert ask(client, system=system()).cache_read_input_tokens > 0  # 580 s after the write
    clock.advance(301)
    expired = ask(client, system=system())
    assert expired.cache_read_input_tokens == 0 and expired.cache_creation_input_tokens > 0


def test_one_hour_ttl(client, clock):
    first = ask(client, system=system(ttl="1h"))
    assert first.cache_creation.ephemeral_1h_input_tokens == first.cache_creation_input_tokens > 0
    clock.advance(30 * 60)
    assert ask(client, system=system(ttl="1h")).cache_read_input_tokens > 0
    clock.advance(3601)
    assert ask(client, system=system(ttl="1h")).cache_read_input_tokens == 0


def test_minimum_cacheable_length_depends_on_the_model(client):
    medium = BIG[: len(BIG) // 2]  # about 2,000 tokens: enough for Sonnet, not for Haiku 4.5
    # From the catalogue (min_cache_tokens), for every id a model answers to.
    assert min_cacheable(MODEL) == 1024 and min_cacheable("claude-haiku-4-5") == 4096
    assert min_cacheable("claude-haiku-4-5-20251001") == 4096
    u = ask(client, system=system(medium))
    assert u.cache_creation_input_tokens > 1024
    for _ in range(2):
        h = ask(client, system=system(medium), model="claude-haiku-4-5")
        assert (h.cache_read_input_tokens, h.cache_creation_input_tokens) == (0, 0)
    short = ask(client, system=system("You are terse."))
    assert short.cache_creation_input_tokens == 0 and short.input_tokens > 0


def test_more_than_four_breakpoints_is_a_400(client):
    blocks = [{"type": "text", "text": f"part {i} " + BIG[:200], "cache_control": CC} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError) as info:
        ask(client, system=blocks)
    assert "maximum of 4 blocks with cache_control" in str(info.value) and "Found 5" in str(info.value)
    with pytest.raises(anthropic.BadRequestError):  # the automatic one counts too
        ask(client, system=blocks[:4], cache_control=CC)
    ask(client, system=blocks[:4])


def test_bad_cache_control_is_a_400(client):
    with pytest.raises(anthropic.BadRequestError, match="ttl"):
        ask(client, system=system(ttl="10m"))
    with pytest.raises(anthropic.BadRequestError, match="must not come after"):
        ask(client, system=[*system(BIG[:3000]), *system(BIG[3000:], ttl="1h")])


def test_automatic_breakpoint_follows_a_growing_conversation(client):
    history = [{"role": "user", "content": BIG}]
    u1 = ask(client, messages=history, cache_control=CC)
    assert u1.cache_creation_input_tokens == total(client, messages=history) and u1.input_tokens == 0
    history += [{"role": "assistant", "content": "Noted."}, {"role": "user", "content": "And then?"}]
    u2 = ask(client, messages=history, cache_control=CC)
    assert u2.cache_read_input_tokens == u1.cache_creation_input_tokens  # found by looking back
    assert u2.cache_read_input_tokens + u2.cache_creation_input_tokens == total(client, messages=history)


def test_message_and_tool_breakpoints(client):
    tools = [{"name": "lookup", "description": BIG[:6000], "input_schema": {"type": "object"}, "cache_control": CC}]
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": BIG, "cache_control": CC}]},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What is in drawer 3?"},
    ]
    first = ask(client, tools=tools, messages=msgs)
    n = total(client, tools=tools, messages=msgs)
    assert first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens + first.input_tokens == n
    msgs2 = [msgs[0], {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "Drawer 4?"}]
    second = ask(client, tools=tools, messages=msgs2)
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    changed = [{**msgs[0], "content": [{"type": "text", "text": BIG + " More.", "cache_control": CC}]}, *msgs2[1:]]
    third = ask(client, tools=tools, messages=changed)  # the tools prefix still hits
    assert 0 < third.cache_read_input_tokens < second.cache_read_input_tokens
    assert third.cache_creation_input_tokens > 0


def test_streaming_reports_cache_usage(client):
    ask(client, system=system())
    with client.messages.stream(model=MODEL, max_tokens=50, system=system(),
                                messages=[{"role": "user", "content": "Hi"}]) as s:  # fmt: skip
        usage = s.get_final_message().usage
    assert usage.cache_read_input_tokens > 1024 and usage.cache_creation_input_tokens == 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(marks=st.lists(st.booleans(), min_size=4, max_size=4), repeat=st.booleans())
def test_usage_always_adds_up(client, marks, repeat):
    texts = [BIG[:1500], BIG[1500:5000], BIG[5000:9000], BIG[9000:14000]]
    blocks = [{"type": "text", "text": t, **({"cache_control": CC} if m else {})} for t, m in zip(texts, marks)]
    msgs = [{"role": "user", "content": blocks[2:]}]
    for _ in range(2 if repeat else 1):
        u = ask(client, system=blocks[:2], messages=msgs)
        n = total(client, system=blocks[:2], messages=msgs)
        assert u.cache_read_input_tokens + u.cache_creation_input_tokens + u.input_tokens == n
        assert u.cache_creation_input_tokens == u.cache_creation.ephemeral_5m_input_tokens
        if not any(marks):
            assert u.input_tokens == n
