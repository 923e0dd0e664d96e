"""Secrets: the API key never shows up anywhere convo writes or says, redaction runs before a
request is sent, cached or logged, cache namespaces keep users apart, and the files convo
creates are private even under a permissive umask.

test_client.test_key_never_leaks checks one client's repr, one error and one saved file; this
module scans everything that could hold the key.
"""

import asyncio
import logging
import os
import sqlite3
import stat
import traceback

import pytest

import convo
from convo import (
    AsyncClient,
    Client,
    Conversation,
    ExactCounter,
    MemoryCache,
    RateLimits,
    Redactor,
    RedisCache,
    RedisStore,
    RetryPolicy,
    SQLiteCache,
    map_reduce,
)
from convo.checkpoint import Checkpoint
from convo.sim import Simulator

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-api03-ZQXJ7distinctiveSECRETkey0123456789"
FRAGMENTS = (KEY, KEY[14:40])  # the whole key, and a slice of its random part
EMAIL, CARD = "ada.lovelace@example.org", "4111 1111 1111 1111"
ASK = [{"role": "user", "content": "Tell me a short story about a lighthouse keeper."}]


def assert_clean(*texts):
    for text in texts:
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        for fragment in FRAGMENTS:
            assert fragment not in text


def nap(seconds):
    return None


@pytest.fixture(scope="module")
def sim():
    with Simulator(seed=0, api_key=KEY) as s:
        yield s


@pytest.fixture
def loud(caplog):
    """Every log record at DEBUG, from convo, the SDK and its HTTP library."""
    caplog.set_level(logging.DEBUG)
    for name in ("convo", "anthropic", "httpx2", "httpx", "httpcore", "httpcore2"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _files(folder):
    return [p for p in folder.rglob("*") if p.is_file()]


def test_the_key_is_in_no_repr_log_record_error_or_file(sim, loud, tmp_path, redis_url):
    cache = SQLiteCache(tmp_path / "cache.db")
    redis_cache = RedisCache(redis_url, prefix="sec:")
    client = Client(api_key=KEY, base_url=sim.base_url, model=MODEL, sleep=nap, cache=cache,
                    retry=RetryPolicy(max_attempts=2), limits=RateLimits(rpm=1000))
    other = Client(api_key=KEY, base_url=sim.base_url, model=MODEL, sleep=nap, cache=redis_cache)
    client.create(ASK, max_tokens=50, temperature=0)
    other.create(ASK, max_tokens=50, temperature=0)
    with client.stream(ASK, max_tokens=50) as s:
        s.until_done()
    errors = []
    sim.faults = ["500", "500"]
    with pytest.raises(convo.ServerError) as info:
        client.create(ASK, max_tokens=50)
    errors.append(info.value)
    sim.faults = ["sse_error@2"] * 3
    with pytest.raises(convo.StreamError) as info:
        "".join(client.stream(ASK, max_tokens=50).text_stream)
    errors.append(info.value)
    sim.faults = None
    with pytest.raises(convo.AuthenticationError) as info:
        Client(api_key=KEY + "x", base_url=sim.base_url, model=MODEL).create(ASK, max_tokens=10)
    errors.append(info.value)
    unreachable = Client(api_key=KEY, base_url="http://127.0.0.1:9", model=MODEL, sleep=nap,
                         retry=RetryPolicy(max_attempts=1))
    with pytest.raises(convo.APIConnectionError) as info:
        unreachable.create(ASK, max_tokens=10)
    errors.append(info.value)
    with pytest.raises(convo.TokenCountError) as info:
        ExactCounter(unreachable.sdk, model=MODEL).count_text("hi")
    errors.append(info.value)

    conv = Conversation("Be brief.", model=MODEL, budget=4000, client=client)
    conv.send("Hello there")
    conv.save(tmp_path / "chat.json")
    client.batch([{"messages": ASK, "max_tokens": 20}] * 3, checkpoint=tmp_path / "batch.ckpt", progress=False)
    map_reduce("A paragraph about lighthouses. " * 200, "Summarize.", client=client, chunk_tokens=300,
               max_tokens=50, checkpoint=tmp_path / "mr.ckpt", progress=False)
    aclient = AsyncClient(api_key=KEY, base_url=sim.base_url, model=MODEL)
    asyncio.run(aclient.create(ASK, max_tokens=20))
    stream = client.stream(ASK, max_tokens=20)

    objects = [client, other, aclient, client.stats, client.retry_budget, client._ctx, client.limiter, cache,
               redis_cache, conv, stream, ExactCounter(client.sdk, model=MODEL), RedisStore(redis_url)]
    assert_clean(*(repr(o) for o in objects), *(str(o) for o in objects))
    for err in errors:
        assert_clean(str(err), repr(err), "".join(traceback.format_exception(err)), repr(vars(err)))
    causes = [err.__cause__ for err in errors if err.__cause__ is not None]
    assert len(causes) == len(errors)  # each keeps the SDK's (or the HTTP library's) error: scan it too
    for cause in causes:
        request = getattr(cause, "request", None)
        assert_clean(str(cause), repr(cause), repr(vars(cause)))
        if request is not None:  # the SDK's request, as sent: its credentials are blanked
            assert_clean(repr(request.headers), repr(dict(request.headers)))
    assert_clean(*(r.getMessage() for r in loud.records), *(repr(r.args) for r in loud.records), loud.text)
    assert any(r.name.startswith("anthropic") or r.name.startswith("httpx") for r in loud.records)
    cache.close()
    for path in _files(tmp_path):
        assert_clean(path.read_bytes())
    import redis

    r = redis.Redis.from_url(redis_url)
    keys = r.keys("sec:*")
    assert keys
    assert_clean(*keys, *(r.get(k) or b"" for k in keys))
    assert_clean(*(str(req.headers) for req in sim.requests))
    stream.close()


def test_a_password_in_a_redis_url_is_never_shown(redis_url):
    url = redis_url.replace("redis://", "redis://:hunter2-pw@")
    for obj in (RedisStore(url), RedisCache(url)):
        assert "hunter2" not in repr(obj) and "hunter2" not in str(obj)


# -- redaction before sending, caching and logging ------------------------------------------------


SECRET_ASK = [{"role": "user", "content": f"Mail {EMAIL} the card {CARD} and the key {KEY}."}]


def test_redaction_happens_before_sending_caching_and_logging(loud, tmp_path):
    with Simulator(seed=0) as sim:
        cache = SQLiteCache(tmp_path / "cache.db")
        client = Client(api_key="k", base_url=sim.base_url, model=MODEL, cache=cache, redactor=Redactor(mode="placeholder"),
                        sleep=nap)
        sim.faults = ["500"]  # a failed attempt is logged too
        client.create(SECRET_ASK, max_tokens=100, temperature=0)
        with client.stream(SECRET_ASK, max_tokens=100, temperature=0) as s:  # served from the cache
            s.until_done()
        sim.faults = ["sse_error@2"]
        with client.stream(SECRET_ASK, max_tokens=100) as s:  # resumed with a redacted prefill
            s.until_done()
        memory = MemoryCache()
        Client(api_key="k", base_url=sim.base_url, model=MODEL, cache=memory, redactor=Redactor()).create(
            SECRET_ASK, max_tokens=100, temperature=0)
        bodies = [repr(r.body) for r in sim.requests]
    cache.close()
    for secret in (EMAIL, CARD, KEY, CARD.replace(" ", "")):
        for text in (*bodies, loud.text, *(_files(tmp_path)[i].read_bytes() for i in range(len(_files(tmp_path)))),
                     repr(memory._items if hasattr(memory, "_items") else vars(memory))):
            text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
            assert secret not in text
    assert len(bodies) == 5  # 500 + retry, (cache hit: none), broken stream + resume, another client


# -- cache namespaces -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_one_users_cached_answer_never_reaches_another(kind, tmp_path, redis_url):
    with Simulator(seed=0) as sim:
        make = (lambda: SQLiteCache(tmp_path / "c.db")) if kind == "sqlite" else (lambda: RedisCache(redis_url, prefix="ns:"))
        alice = Client(api_key="k", base_url=sim.base_url, model=MODEL, cache=make(), user="alice")
        bob = Client(api_key="k", base_url=sim.base_url, model=MODEL, cache=make(), user="bob")
        alice.create(ASK, max_tokens=50, temperature=0)
        with alice.stream(ASK, max_tokens=50, temperature=0) as s:
            s.until_done()
        assert alice.stats.cache_hits == 1
        sim.clear_requests()
        bob.create(ASK, max_tokens=50, temperature=0)
        with bob.stream(ASK, max_tokens=50, temperature=0) as s:
            s.until_done()
        assert len(sim.requests) == 1 and bob.stats.cache_hits == 1  # bob's own answer, once
        assert alice.create(ASK, max_tokens=50, temperature=0, user="carol") and len(sim.requests) == 2


# -- private files --------------------------------------------------------------------------------


def test_files_convo_creates_are_private_even_with_umask_0(tmp_path):
    old = os.umask(0)
    try:
        with Simulator(seed=0) as sim:
            client = Client(api_key="k", base_url=sim.base_url, model=MODEL, cache=SQLiteCache(tmp_path / "cache.db"))
            client.create(ASK, max_tokens=20, temperature=0)
            conv = Conversation(model=MODEL, budget=4000)
            conv.add_user("hi")
            conv.save(tmp_path / "chat.json")
            conv.save(tmp_path / "chat.json")  # overwritten, still private
            client.batch([{"messages": ASK, "max_tokens": 20}], checkpoint=tmp_path / "batch.ckpt", progress=False)
            map_reduce("Some text. " * 100, "Summarize.", client=client, checkpoint=tmp_path / "mr.ckpt", progress=False)
            with Checkpoint(tmp_path / "batch.ckpt") as ckpt:  # while open: the -wal and -shm files exist
                ckpt.put("x", "y", {"z": 1})
                files = _files(tmp_path)
                assert {p.name for p in files} >= {"cache.db", "chat.json", "batch.ckpt", "mr.ckpt", "batch.ckpt-wal"}
                for path in files:
                    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path.name
        client.cache.close()
    finally:
        os.umask(old)
    for path in _files(tmp_path):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path.name
    with sqlite3.connect(tmp_path / "cache.db") as db:
        assert db.execute("select count(*) from sqlite_master").fetchone()[0] > 0


def test_count_tokens_sends_the_redacted_request(fresh):
    from convo import Client, Redactor

    with Client(base_url=fresh.base_url, api_key=KEY, model="claude-sonnet-5-5",
                redactor=Redactor(mode="placeholder")) as client:
        n = client.count_tokens([{"role": "user", "content": "mail ann@example.org, card 4111 1111 1111 1111"}])
    body = str(fresh.requests[-1].body)
    assert fresh.requests[-1].path == "/v1/messages/count_tokens" and n > 0
    assert "ann@example.org" not in body and "4111 1111 1111 1111" not in body
