"""convo/_sqlite.py: every SQLite file convo keeps can be opened by many processes at once.

Workers started together open a new file at the same moment; turning it to WAL takes a lock
SQLite's busy handler does not wait for, so before connect_wal one of them often failed at once
with "database is locked" (seen in CI as a checkpoint "not a convo checkpoint").
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import convo
from convo.cache import SQLiteCache
from convo.checkpoint import Checkpoint

PROCESSES = 6
ROUNDS = 8


def _store(path: Path, n: int) -> Any:
    store = convo.SQLiteConversationStore(path)
    conv = store.create(model="claude-sonnet-4-6", user=f"w{n}")
    conv.extend([{"role": "user", "content": f"hi {n}"}, {"role": "assistant", "content": "hello"}])
    return conv.id


def _cache(path: Path, n: int) -> Any:
    with SQLiteCache(path) as cache:
        cache.set(f"k{n}", {"n": n})
        return cache.get(f"k{n}")


def _checkpoint(path: Path, n: int) -> Any:
    with Checkpoint(path) as ckpt:
        ckpt.put(f"item{n}", "digest", n)
        return ckpt.get(f"item{n}", "digest")


def _open_at(opener: Callable[[Path, int], Any], path: Path, n: int, at: float, out: Any) -> None:
    while time.time() < at:  # every process starts the open at the same instant
        pass
    try:
        out.put((n, "ok", opener(path, n)))
    except (convo.ConvoError, sqlite3.Error, OSError) as exc:  # reported to the parent, which fails the test with it
        out.put((n, "error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.parametrize("opener", [_store, _cache, _checkpoint], ids=["conversation store", "cache", "checkpoint"])
def test_processes_opening_a_new_file_at_the_same_moment_all_get_in(tmp_path, opener):
    ctx = multiprocessing.get_context("fork")
    opener(tmp_path / "warm.db", 0)  # the tokenizer loaded once, before the forks
    for round in range(ROUNDS):
        path = tmp_path / f"r{round}.db"
        out = ctx.Queue()
        at = time.time() + 0.2
        procs = [ctx.Process(target=_open_at, args=(opener, path, n, at, out)) for n in range(PROCESSES)]
        for p in procs:
            p.start()
        results = sorted(out.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(30)
        errors = [r for r in results if r[1] != "ok"]
        assert not errors, f"round {round}: {errors}"
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    if opener is _store:  # every worker's turn is in the last file
        store = convo.SQLiteConversationStore(path)
        assert sorted(i.user for i in store.list()) == sorted(f"w{n}" for n in range(PROCESSES))
        assert all(len(store.open(i.id)) == 2 for i in store.list())
