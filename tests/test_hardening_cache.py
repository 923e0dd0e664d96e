"""Issue 19, the response cache: a fallback model's reply is cached under the model that
answered (item 15), existing cache and checkpoint files are tightened to 0600 with their side
files (item 16), and ``anthropic-beta`` headers are part of the key (item 17)."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from convo import Checkpoint, MemoryCache, SQLiteCache
from convo.cache import cache_key
from tests.helpers import MODEL, quick_client

ASK = [{"role": "user", "content": "Name a colour"}]
FALLBACK = "claude-haiku-4-5"


def posts(sim):
    return [r for r in sim.requests if r.path == "/v1/messages"]


def test_item15_a_fallback_reply_is_never_served_for_the_primary_model(fresh):
    cache = MemoryCache()
    fresh.faults = ["529", "529", "ok"]
    client = quick_client(fresh, cache=cache, fallback_models=[FALLBACK])
    first = client.create(messages=ASK, max_tokens=30, temperature=0)
    assert first.model == FALLBACK
    fresh.faults = None
    fresh.clear_requests()
    again = client.create(messages=ASK, max_tokens=30, temperature=0)  # the primary model, healthy now
    assert len(posts(fresh)) == 1 and posts(fresh)[0].body["model"] == MODEL  # not served from the cache
    assert again.model == MODEL
    fresh.clear_requests()
    direct = client.create(messages=ASK, max_tokens=30, temperature=0, model=FALLBACK)
    assert posts(fresh) == [] and direct.model == FALLBACK  # the fallback's answer is its own model's


def test_item17_anthropic_beta_headers_are_part_of_the_key(fresh):
    request = {"model": MODEL, "max_tokens": 30, "temperature": 0, "messages": ASK}
    plain = cache_key(request, "")
    beta = cache_key({**request, "extra_headers": {"anthropic-beta": "context-management-2025-06-27"}}, "")
    same = cache_key({**request, "extra_headers": {"Anthropic-Beta": " context-management-2025-06-27 ", "x-other": "1"}}, "")
    assert plain != beta and beta == same
    assert cache_key({**request, "extra_headers": {"x-trace": "abc"}}, "") == plain  # other headers do not count
    client = quick_client(fresh, cache=MemoryCache())
    client.create(messages=ASK, max_tokens=30, temperature=0)
    fresh.clear_requests()
    client.create(messages=ASK, max_tokens=30, temperature=0, extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"})
    assert len(posts(fresh)) == 1  # a different beta is a different request


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _world_readable_db(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS junk (x)")
    conn.execute("INSERT INTO junk VALUES (1)")
    conn.commit()
    for candidate in (path, f"{path}-wal", f"{path}-shm"):
        if os.path.exists(candidate):
            os.chmod(candidate, 0o644)
    return conn


def test_item16_an_existing_0644_cache_file_and_its_wal_are_tightened(tmp_path):
    path = tmp_path / "cache.db"
    keep_open = _world_readable_db(path)  # holds the -wal open, so it exists when the cache opens
    assert _mode(path) == 0o644 and _mode(f"{path}-wal") == 0o644
    cache = SQLiteCache(path)
    cache.set("k", {"a": 1})
    for candidate in (path, f"{path}-wal", f"{path}-shm"):
        assert _mode(candidate) == 0o600, candidate
    cache.close()
    keep_open.close()


def test_item16_an_existing_0644_checkpoint_and_its_wal_are_tightened(tmp_path):
    path = tmp_path / "job.ckpt"
    with Checkpoint(path) as ckpt:
        ckpt.put("a", "k", {"x": 1})
    for candidate in (path, f"{path}-wal", f"{path}-shm"):
        if os.path.exists(candidate):
            os.chmod(candidate, 0o644)
    with Checkpoint(path) as ckpt:
        ckpt.put("b", "k", {"x": 2})
        for candidate in (path, f"{path}-wal", f"{path}-shm"):
            if os.path.exists(candidate):
                assert _mode(candidate) == 0o600, candidate
        assert ckpt.get("a", "k") == {"x": 1}


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_item16_new_cache_files_are_private_whatever_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        cache = SQLiteCache(tmp_path / "new.db")
        cache.set("k", {"a": 1})
        assert _mode(tmp_path / "new.db") == 0o600 and _mode(tmp_path / "new.db-wal") == 0o600
        cache.close()
    finally:
        os.umask(old)
