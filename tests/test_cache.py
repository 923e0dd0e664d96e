"""Tests for convo.cache: keys, the cacheable rule, and the memory, SQLite and Redis caches."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo import Client, ConvoError, InvalidConfigError, InvalidInputError
from convo.cache import (
    Cache,
    CacheError,
    MemoryCache,
    RedisCache,
    SQLiteCache,
    cache_key,
    from_entry,
    is_cacheable,
    to_entry,
)
from convo.sim import Simulator

MODEL = "claude-sonnet-4-6"
BASE = {
    "model": MODEL,
    "max_tokens": 100,
    "temperature": 0,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Summarize: the cat sat on the mat."}],
}


class Clock:
    """A virtual clock: tests move time instead of waiting."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run_python(code: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter (another process) and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- keys --------------------------------------------------------------------------------------


def test_the_key_is_a_sha256_of_canonical_json():
    key = cache_key(BASE, "alice")
    assert len(key) == 64 and int(key, 16) >= 0
    assert cache_key(dict(reversed(list(BASE.items()))), "alice") == key


@pytest.mark.parametrize(
    "change",
    [
        {"model": "claude-opus-4-1"},
        {"system": "Be long."},
        {"messages": [{"role": "user", "content": "Summarize: the dog sat."}]},
        {"tools": [{"name": "f", "input_schema": {"type": "object"}}]},
        {"tool_choice": {"type": "any"}},
        {"temperature": 0.0001},
        {"top_p": 0.5},
        {"top_k": 5},
        {"stop_sequences": ["END"]},
        {"max_tokens": 101},
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        {"service_tier": "standard_only"},  # unknown to convo: assumed to matter
        {"extra_body": {"top_k": 3}},
    ],
)
def test_what_changes_the_answer_changes_the_key(change):
    assert cache_key({**BASE, **change}, "alice") != cache_key(BASE, "alice")


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": {"user_id": "someone"}},
        {"stream": True},
        {"timeout": 30},
        {"extra_headers": {"x-trace": "1"}},
        {"extra_query": {"debug": "1"}},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Summarize: the cat sat on the mat."}]}]},
        {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Summarize: the cat sat on the mat.", "cache_control": {"type": "ephemeral"}}]}]},
        {"system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]},
        {"extra_body": {"temperature": 0}},
    ],
)
def test_what_does_not_change_the_answer_keeps_the_key(change):
    assert cache_key({**BASE, **change}, "alice") == cache_key(BASE, "alice")


@given(st.text(), st.text())
@settings(max_examples=100)
def test_namespaces_never_share_a_key(a, b):
    assert (cache_key(BASE, a) == cache_key(BASE, b)) == (a == b)


def test_keys_are_stable_for_non_ascii_text():
    request = {**BASE, "messages": [{"role": "user", "content": "总结一下：猫坐在垫子上。"}]}
    assert cache_key(request, "用户") == cache_key(json.loads(json.dumps(request)), "用户")


def test_bad_key_inputs_are_rejected():
    with pytest.raises(InvalidInputError):
        cache_key(BASE, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        cache_key({**BASE, "temperature": float("nan")}, "a")
    with pytest.raises(InvalidInputError):
        cache_key({**BASE, "x": object()}, "a")


@pytest.mark.parametrize(
    ("request_", "allow", "expected"),
    [
        (BASE, False, True),
        ({**BASE, "temperature": 0.0}, False, True),
        ({k: v for k, v in BASE.items() if k != "temperature"}, False, False),  # the API default is 1.0
        ({**BASE, "temperature": 0.7}, False, False),
        ({**BASE, "temperature": 0.7}, True, True),
        ({k: v for k, v in BASE.items() if k != "temperature"}, True, True),
        ({**BASE, "temperature": None}, False, False),
        ({**BASE, "temperature": False}, False, False),
        ({**BASE, "temperature": 1, "extra_body": {"temperature": 0}}, False, True),
    ],
)
def test_only_deterministic_requests_are_cacheable(request_, allow, expected):
    assert is_cacheable(request_, allow_sampling=allow) is expected


# -- entries -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def message():
    """A real response Message, from the simulator through the official SDK."""
    with Simulator(seed=0) as sim, Client(api_key="test", base_url=sim.base_url, model=MODEL) as client:
        return client.create(BASE["messages"], system=BASE["system"], max_tokens=100, temperature=0)


def test_entries_round_trip_a_message(message, tmp_path):
    entry = to_entry(message)
    assert json.loads(json.dumps(entry)) == entry
    for cache in (MemoryCache(), SQLiteCache(tmp_path / "c.db")):
        with cache:
            cache.set("k", entry)
            back = from_entry(cache.get("k"))
            assert isinstance(back, anthropic.types.Message)
            assert back == message


def test_a_corrupt_entry_is_a_cache_error():
    with pytest.raises(CacheError, match="not a Message"):
        from_entry({"id": "x"})
    with pytest.raises(InvalidInputError):
        to_entry(object())


# -- behaviour every cache shares --------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "redis"])
def any_cache(request, tmp_path):
    if request.param == "memory":
        cache = MemoryCache()
    elif request.param == "sqlite":
        cache = SQLiteCache(tmp_path / "cache.db")
    else:
        cache = RedisCache(request.getfixturevalue("redis_url"), prefix=f"test-{uuid.uuid4().hex}:")
    with cache:
        yield cache


def test_hit_miss_delete_clear(any_cache):
    assert isinstance(any_cache, Cache)
    assert any_cache.get("a") is None
    any_cache.set("a", {"text": "héllo", "n": [1, 2]})
    any_cache.set("b", {"text": "b"})
    assert any_cache.get("a") == {"text": "héllo", "n": [1, 2]}
    any_cache.set("a", {"text": "new"})
    assert any_cache.get("a") == {"text": "new"}
    any_cache.delete("a")
    any_cache.delete("never-set")
    assert any_cache.get("a") is None and any_cache.get("b") == {"text": "b"}
    any_cache.clear()
    assert any_cache.get("b") is None


def test_values_are_copies(any_cache):
    value = {"list": [1]}
    any_cache.set("k", value)
    value["list"].append(2)
    got = any_cache.get("k")
    got["list"].append(3)
    assert any_cache.get("k") == {"list": [1]}


def test_values_must_be_json_dicts(any_cache):
    with pytest.raises(InvalidInputError):
        any_cache.set("k", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        any_cache.set("k", {"x": object()})
    with pytest.raises(InvalidConfigError):
        any_cache.set("k", {}, ttl=-1)


def test_namespaces_isolate_users_in_every_cache(any_cache):
    any_cache.set(cache_key(BASE, "alice"), {"answer": "for alice"})
    assert any_cache.get(cache_key(BASE, "bob")) is None
    assert any_cache.get(cache_key(BASE, "alice")) == {"answer": "for alice"}


# -- MemoryCache -------------------------------------------------------------------------------


def test_memory_ttl_in_virtual_time():
    clock = Clock()
    cache = MemoryCache(ttl=60, clock=clock)
    cache.set("default", {"v": 1})
    cache.set("short", {"v": 2}, ttl=5)
    clock.now += 4.9
    assert cache.get("short") == {"v": 2}
    clock.now += 0.1
    assert cache.get("short") is None
    assert cache.get("default") == {"v": 1}
    clock.now += 55
    assert cache.get("default") is None
    assert len(cache) == 0


def test_memory_evicts_the_least_recently_used():
    cache = MemoryCache(max_items=3)
    for k in "abc":
        cache.set(k, {"k": k})
    cache.get("a")  # a is now the most recent
    cache.set("d", {"k": "d"})
    assert cache.get("b") is None
    assert [k for k in "acd" if cache.get(k)] == ["a", "c", "d"]
    assert len(cache) == 3


def test_memory_is_thread_safe():
    cache = MemoryCache(max_items=50)

    def work(n):
        for i in range(300):
            cache.set(f"{n}-{i}", {"i": i})
            got = cache.get(f"{n}-{i - 1}")
            assert got is None or got == {"i": i - 1}

    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(work, n) for n in range(8)]:
            done.result()  # re-raises whatever failed in that thread
    assert len(cache) == 50


@pytest.mark.parametrize("kwargs", [{"max_items": 0}, {"max_items": 1.5}, {"ttl": 0}, {"ttl": float("inf")}, {"ttl": "1"}])
def test_memory_rejects_bad_settings(kwargs):
    with pytest.raises(InvalidConfigError):
        MemoryCache(**kwargs)


# -- SQLiteCache -------------------------------------------------------------------------------


def test_sqlite_file_is_private_and_survives_a_restart(tmp_path):
    path = tmp_path / "cache.db"
    old = os.umask(0o022)
    try:
        with SQLiteCache(path) as cache:
            cache.set("k", {"v": "kept"})
    finally:
        os.umask(old)
    for name in os.listdir(tmp_path):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    with SQLiteCache(str(path)) as reopened:
        assert reopened.get("k") == {"v": "kept"}
        assert reopened.path == str(path)


def test_sqlite_ttl_with_an_injected_clock(tmp_path):
    clock = Clock()
    with SQLiteCache(tmp_path / "c.db", ttl=10, clock=clock) as cache:
        cache.set("a", {"v": 1})
        cache.set("b", {"v": 2}, ttl=100)
        cache.set("c", {"v": 3}, ttl=1)
        clock.now += 10
        assert cache.get("a") is None and cache.get("c") is None
        assert cache.get("b") == {"v": 2}
        assert len(cache) == 1
        assert cache.purge() == 2  # the expired rows are really gone
        assert cache.purge() == 0
    with SQLiteCache(tmp_path / "c.db", clock=clock) as later:  # expiry holds after a restart
        clock.now += 90
        assert later.get("b") is None


def test_sqlite_expired_rows_are_purged_lazily(tmp_path):
    clock = Clock()
    with SQLiteCache(tmp_path / "c.db", ttl=1, clock=clock) as cache:
        for i in range(100):
            cache.set(f"old{i}", {"i": i})
        clock.now += 2
        for i in range(300):  # a sweep runs every few hundred writes
            cache.set(f"new{i}", {"i": i}, ttl=1000)
        assert cache.purge() == 0


def test_sqlite_shared_by_threads(tmp_path):
    with SQLiteCache(tmp_path / "c.db") as cache:
        def work(n):
            for i in range(50):
                cache.set(f"{n}-{i}", {"n": n, "i": i})

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(cache) == 200 and cache.get("3-49") == {"n": 3, "i": 49}


WRITER = """
import sys
from convo.cache import SQLiteCache
with SQLiteCache(sys.argv[1]) as cache:
    print(cache.get("from-parent"))
    for i in range(150):
        cache.set(f"child-{i}", {"i": i})
"""


def test_sqlite_shared_by_two_processes(tmp_path):
    path = str(tmp_path / "shared.db")
    with SQLiteCache(path) as cache:
        cache.set("from-parent", {"who": "parent"})
        child = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True)
        for i in range(150):  # both processes write at the same time
            cache.set(f"parent-{i}", {"i": i})
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        assert out.strip() == "{'who': 'parent'}"
        assert cache.get("child-149") == {"i": 149}
        assert len(cache) == 301


def test_sqlite_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(CacheError, match="directory exists"):
        SQLiteCache(tmp_path / "missing" / "c.db")
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("just some text, long enough to not look like an empty database file" * 20)
    with pytest.raises(CacheError, match="notes.txt"):
        SQLiteCache(not_a_db)
    cache = SQLiteCache(tmp_path / "c.db")
    cache.close()
    with pytest.raises(CacheError, match="closed"):
        cache.get("k")
    assert issubclass(CacheError, ConvoError)


# -- RedisCache --------------------------------------------------------------------------------


def test_redis_expiry_is_done_by_redis(redis_url):
    import redis

    prefix = f"test-{uuid.uuid4().hex}:"
    raw = redis.Redis.from_url(redis_url)
    with RedisCache(redis_url, ttl=3600, prefix=prefix) as cache:
        cache.set("short", {"v": 1}, ttl=0.05)
        cache.set("long", {"v": 2})
        assert 0 < raw.pttl(prefix + "short") <= 50
        assert 3_500_000 < raw.pttl(prefix + "long") <= 3_600_000
        deadline = time.monotonic() + 5
        while cache.get("short") is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.get("short") is None
        assert raw.exists(prefix + "short") == 0  # gone from Redis itself, not just hidden
        assert cache.get("long") == {"v": 2}
    raw.close()


def test_redis_clear_only_touches_its_prefix(redis_url):
    tag = uuid.uuid4().hex
    with RedisCache(redis_url, prefix=f"a*{tag}:") as a, RedisCache(redis_url, prefix=f"ab{tag}:") as b:
        for i in range(600):
            a.set(str(i), {"i": i})
        b.set("0", {"keep": True})
        a.clear()
        assert a.get("599") is None and a.get("0") is None
        assert b.get("0") == {"keep": True}
        b.clear()


READER = """
import sys
from convo.cache import RedisCache, cache_key
with RedisCache(sys.argv[1], prefix=sys.argv[2]) as cache:
    print(cache.get("from-parent"))
    cache.set("from-child", {"who": "child"})
"""


def test_redis_shared_by_two_processes(redis_url):
    prefix = f"test-{uuid.uuid4().hex}:"
    with RedisCache(redis_url, prefix=prefix) as cache:
        cache.set("from-parent", {"who": "parent"})
        out = run_python(READER, redis_url, prefix)
        assert out.strip() == "{'who': 'parent'}"
        assert cache.get("from-child") == {"who": "child"}
        cache.clear()


def _all_text(exc: BaseException | None) -> str:
    """What a logger or error tracker could see of an error: its chain of messages."""
    text = ""
    while exc is not None:
        text += f"{exc!r} {exc} {exc.args}\n"
        exc = exc.__cause__ or exc.__context__
    return text


@pytest.mark.parametrize(
    "url",
    [
        "http://:hunter2-secret@127.0.0.1:6379/0",
        "redis://user:hunter2-secret@127.0.0.1:notaport/0",
        "redis://:hunter2-secret@/0?password=hunter2-secret&db=x",
    ],
)
def test_an_invalid_redis_url_is_a_clear_error_without_the_password(url):
    with pytest.raises(CacheError) as info:
        RedisCache(url)
    assert "hunter2" not in _all_text(info.value)
    assert "Redis" in str(info.value)


def test_an_unreachable_redis_is_a_clear_error_without_the_password():
    url = f"redis://admin:hunter2-secret@127.0.0.1:{free_port()}/0?password=hunter2-secret"
    with pytest.raises(CacheError) as info:
        RedisCache(url, timeout=2)
    message = str(info.value)
    assert "hunter2" not in _all_text(info.value)
    assert "redis-server is running" in message and "127.0.0.1" in message and "***" in message


def test_a_password_in_the_url_works_and_is_never_shown(redis_url):
    import redis

    raw = redis.Redis.from_url(redis_url)
    user = f"convo-{uuid.uuid4().hex[:8]}"
    raw.acl_setuser(user, enabled=True, passwords=["+hunter2-secret"], keys=["*"], commands=["+@all"])
    try:
        url = redis_url.replace("redis://", f"redis://{user}:hunter2-secret@")
        with RedisCache(url, prefix=f"test-{uuid.uuid4().hex}:") as cache:
            cache.set("k", {"v": 1})
            assert cache.get("k") == {"v": 1}
            assert "hunter2" not in repr(cache) and "hunter2" not in cache.url
            assert f"{user}:***@" in repr(cache)
            cache.clear()
        with pytest.raises(CacheError) as info:
            RedisCache(url.replace("hunter2-secret", "hunter2-wrong"))
        assert "hunter2" not in _all_text(info.value)
    finally:
        raw.acl_deluser(user)
        raw.close()


def test_a_hung_redis_cache_costs_one_timeout_then_is_left_alone_for_a_while(tmp_path, fresh):
    """A cache server that stops answering: the first call waits out the cache's timeout once
    (its lookup; it does not then wait again to store), the calls after it skip the cache at
    once, and after CACHE_PAUSE seconds on the client's clock the cache is tried again and used."""
    import signal

    from convo._guards import CACHE_PAUSE
    from convo.sim import ManualClock
    from tests.helpers import RedisServer, quick_client

    server = RedisServer(str(tmp_path))
    server.start()
    clock = ManualClock()
    try:
        cache = RedisCache(server.url, prefix=f"p{uuid.uuid4().hex[:6]}:", timeout=0.5)
        client = quick_client(fresh, cache=cache, clock=clock)
        ask = {"messages": [{"role": "user", "content": "the capital of France?"}], "max_tokens": 64, "temperature": 0}
        server.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            client.create(**ask)
            first = time.monotonic() - started
            started = time.monotonic()
            client.create(**ask)
            second = time.monotonic() - started
        finally:
            server.proc.send_signal(signal.SIGCONT)
        assert 0.5 <= first < 0.9  # one timeout (the lookup), not two (lookup and store)
        assert second < 0.3  # the cache is left alone: no timeout at all
        assert len(fresh.requests) == 2 and client.stats.cache_hits == 0
        clock.advance(CACHE_PAUSE)  # the pause is over: the cache is used again
        client.create(**ask)  # a miss, stored
        client.create(**ask)  # a hit
        assert len(fresh.requests) == 3 and client.stats.cache_hits == 1
    finally:
        server.stop()
