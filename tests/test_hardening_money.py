"""Issue 19, money and lost work: numbers validated at every constructor (item 9, item 14's
numeric cases), settle never loses a reply when the shared store fails (item 11), and the
small ones (sub-cent caps in messages, typed Redis store errors)."""

from __future__ import annotations

import logging
import math
import threading

import pytest

from convo import Budget, BudgetExceededError, InvalidConfigError, RateLimits, RateLimitStoreError, RetryPolicy
from convo.ratelimit import RedisStore
from convo.sim import Simulator
from tests.helpers import RedisServer, quick_client

NAN, INF = math.nan, math.inf
ASK = [{"role": "user", "content": "Say hello"}]


# -- item 9 and item 14 (numbers) -------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"usd": NAN}, {"usd": INF}, {"usd": "5"}, {"usd": True}, {"usd": None},
    {"usd": 5, "per_user_usd": NAN}, {"usd": 5, "per_user_usd": "5"}, {"usd": 5, "per_user_usd": -INF},
    {"usd": 5, "alerts": ["0.5"]}, {"usd": 5, "alerts": [NAN]}, {"usd": 5, "alerts": 0.5}, {"usd": 5, "alerts": "0.5"},
    {"usd": 5, "on_alert": "print"},
])
def test_item9_budget_rejects_nan_and_wrong_types(kwargs):
    with pytest.raises(InvalidConfigError):
        Budget(**kwargs)


def test_item9_a_budget_refuses_once_spent_even_per_user(sim):
    client = quick_client(sim, budget=Budget(usd=1e-6, per_user_usd=1e-6), user="ann")
    with pytest.raises(BudgetExceededError):
        client.create(messages=ASK, max_tokens=50)


@pytest.mark.parametrize("kwargs", [
    {"rpm": NAN}, {"input_tpm": INF}, {"output_tpm": "100"}, {"tokens_per_day": NAN}, {"rpm": True},
])
def test_item14_rate_limits_reject_nan_and_wrong_types(kwargs):
    with pytest.raises(InvalidConfigError):
        RateLimits(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"max_attempts": NAN}, {"max_attempts": "3"}, {"max_attempts": 2.5}, {"initial_backoff": NAN},
    {"max_backoff": INF}, {"max_retry_after": "1"}, {"max_elapsed": NAN}, {"budget": NAN}, {"fallback_after": NAN},
    {"max_attempts": 0}, {"initial_backoff": -1},
])
def test_item14_retry_policy_rejects_nan_and_wrong_types(kwargs):
    with pytest.raises(InvalidConfigError):
        RetryPolicy(**kwargs)


def test_small_budget_errors_print_sub_cent_caps():
    budget = Budget(usd=0.0001)
    with pytest.raises(BudgetExceededError) as info:
        budget.reserve(0.001)
    assert "$0.0001 budget" in str(info.value)
    assert "$0.00 " not in str(info.value)
    per_user = Budget(usd=1, per_user_usd=0.004)
    with pytest.raises(BudgetExceededError) as info:
        per_user.reserve(0.01, "ann")
    assert "$0.004 cap" in str(info.value)


# -- item 11: the store dies while a call is in flight ------------------------------------------


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(str(tmp_path))
    server.start()
    yield server
    server.stop()


def test_item11_redis_dies_in_flight_the_reply_is_returned_and_reconciled(private_redis, caplog):
    budget = Budget(usd=5.0)
    limits = RateLimits(rpm=600, input_tpm=100_000, output_tpm=100_000, store=RedisStore(private_redis.url, prefix="it11:"))
    with Simulator(latency=0.6) as slow:
        client = quick_client(slow, budget=budget, limits=limits)
        threading.Timer(0.25, private_redis.kill).start()  # while the request is at the server
        with caplog.at_level(logging.WARNING, logger="convo"):
            reply = client.create(messages=ASK, max_tokens=50)
        assert reply.content and reply.usage.output_tokens > 0  # the billed reply reached the caller
        snapshot = budget.as_dict()
        assert snapshot["held"] == pytest.approx(0.0, abs=1e-12) and snapshot["spent"] > 0  # spend recorded locally
        assert client.stats.cost_usd == pytest.approx(snapshot["spent"])
        assert any("rate-limit store failed" in r.getMessage() for r in caplog.records)
        limiter = client.limiter
        assert limiter.owed > 0  # the corrections wait for the store
        with pytest.raises(RateLimitStoreError):  # fails closed while the store is down, a typed error
            client.create(messages=ASK, max_tokens=50)
        assert budget.as_dict()["held"] == pytest.approx(0.0, abs=1e-12)
        private_redis.start()  # back (empty): the kept corrections go first, then the request
        client.create(messages=ASK, max_tokens=50)
        assert limiter.owed == 0


def test_item11_a_failing_budget_store_keeps_the_reply_and_settles_later(sim, caplog):
    class FlakyBudget(Budget):
        fail = False

        def settle(self, hold, actual):
            if self.fail:
                raise ConnectionError("budget store unreachable")
            super().settle(hold, actual)

    budget = FlakyBudget(usd=5.0)
    client = quick_client(sim, budget=budget)
    budget.fail = True
    with caplog.at_level(logging.WARNING, logger="convo"):
        reply = client.create(messages=ASK, max_tokens=50)
    assert reply.content
    assert any("budget store failed" in r.getMessage() for r in caplog.records)
    assert budget.as_dict()["spent"] == 0 and budget.as_dict()["held"] > 0
    budget.fail = False
    client.create(messages=ASK, max_tokens=50)  # the kept settlement goes first
    snapshot = budget.as_dict()
    assert snapshot["held"] == pytest.approx(0.0, abs=1e-12)
    assert snapshot["spent"] == pytest.approx(client.stats.cost_usd)


def test_small_redis_store_failures_are_typed():
    store = RedisStore("redis://127.0.0.1:9/0")
    client_limits = RateLimits(rpm=60, store=store)
    with Simulator() as s:
        client = quick_client(s, limits=client_limits)
        with pytest.raises(RateLimitStoreError):
            client.create(messages=ASK, max_tokens=20)


def test_small_repr_of_a_closed_simulator():
    s = Simulator().start()
    assert "127.0.0.1" in repr(s)
    s.close()
    assert "not started" in repr(s)


@pytest.mark.parametrize("make", [
    lambda: __import__("convo").SQLiteCache(":memory:", busy_timeout=NAN),
    lambda: __import__("convo").retry.RetryBudget(NAN),
    lambda: __import__("convo").retry.RetryBudget("5"),
    lambda: RateLimits(rpm=60, store="redis://localhost"),
])
def test_item14_other_numeric_and_typed_arguments(make):
    with pytest.raises(InvalidConfigError):
        make()


def test_item11_a_cache_that_fails_at_store_time_never_loses_the_reply(sim, caplog):
    from convo import MemoryCache

    class Broken(MemoryCache):
        def set(self, key, entry, ttl=None):  # the store fails only when the reply is kept
            raise OSError("disk full")

    client = quick_client(sim, cache=Broken())
    with caplog.at_level(logging.WARNING, logger="convo"):
        reply = client.create(messages=ASK, max_tokens=20, temperature=0)
    assert reply.content
    assert any("not storing" in r.getMessage() for r in caplog.records)


def test_item11_a_checkpointed_batch_never_pays_an_item_twice_when_redis_dies(private_redis, tmp_path):
    from collections import Counter

    path = tmp_path / "batch.ckpt"
    items = [{"messages": [{"role": "user", "content": f"Item number {i}: say hello"}], "max_tokens": 30} for i in range(12)]
    with Simulator(latency=0.3) as slow:
        limits = RateLimits(rpm=6000, input_tpm=1_000_000, output_tpm=1_000_000,
                            store=RedisStore(private_redis.url, prefix="it11b:"))
        client = quick_client(slow, limits=limits, budget=Budget(usd=5.0))
        threading.Timer(0.45, private_redis.kill).start()  # a wave is at the server when Redis dies
        first = client.batch(items, concurrency=4, checkpoint=path, progress=False)
        answered = [r.ok for r in first]
        assert any(answered) and not all(answered)  # some were answered, later ones refused (fails closed)
        assert all(isinstance(r.error, RateLimitStoreError) for r in first if not r.ok)
        private_redis.start()
        second = client.batch(items, concurrency=4, checkpoint=path, progress=False)
        assert all(r.ok for r in second)
        sent = Counter(r.body["messages"][0]["content"] for r in slow.requests if r.path == "/v1/messages")
        assert set(sent) == {i["messages"][0]["content"] for i in items}
        assert max(sent.values()) == 1  # no item was sent (and billed) twice
        assert client.budget.as_dict()["held"] == pytest.approx(0.0, abs=1e-12)
