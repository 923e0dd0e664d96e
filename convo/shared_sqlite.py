"""Rate-limit buckets and shared budgets in one SQLite file: what :class:`~convo.RedisStore` does,
for the processes of one machine, with no server.

Eight gunicorn workers on one host share one cap and one account's limits through a file::

    store = SQLiteStore("/var/lib/app/limits.db")
    budget = Budget(50.0, store=store, period="day", per_user_usd=2.0)
    client = Client(budget=budget, limits=RateLimits(input_tpm=30_000, store=store))

Each change is one ``BEGIN IMMEDIATE`` transaction, so concurrent processes take turns and a
reservation is atomic over all its buckets; a queued request's recheck only reads (a WAL
snapshot), so it neither waits for a writer nor holds one up. Times are the machine's wall
clock (``clock``), which every process on it shares and which survives restarts. When the file cannot be used (a
lock held past ``timeout``, a full disk) the store raises :class:`~convo.RateLimitStoreError`
and a shared budget :class:`~convo.BudgetStoreError`: both fail closed, as with Redis.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ._exceptions import InvalidConfigError, RateLimitStoreError
from ._files import make_private
from ._numbers import number
from ._pool import Busy, Pool
from ._sqlite import connect_wal, immediate, snapshot
from .buckets import Bucket

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS convo_buckets (
    scope TEXT NOT NULL, name TEXT NOT NULL, level REAL NOT NULL, ts REAL NOT NULL, taken REAL NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS convo_budget_books (
    budget TEXT NOT NULL, period TEXT NOT NULL, field TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (budget, period, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS convo_budget_holds (
    budget TEXT NOT NULL, id TEXT NOT NULL, period TEXT NOT NULL, usd REAL NOT NULL, user TEXT NOT NULL,
    deadline REAL NOT NULL, PRIMARY KEY (budget, id)
) WITHOUT ROWID;
"""


class SQLiteStore:
    """Buckets (``RateLimits(store=...)``) and budgets (``Budget(..., store=...)``) in the SQLite
    file ``path`` (created 0600, WAL), shared by every process of this machine that opens it.

    ``timeout``: seconds to wait for another process's transaction before failing (closed).
    ``clock``: wall-clock seconds, shared by the processes (injectable for tests).
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidConfigError(f"SQLiteStore(path=...) must be a file path, got {type(path).__name__}")
        number("SQLiteStore(timeout=...)", timeout, positive=True, hint=" (seconds)")
        self.path = os.fspath(path)
        self.timeout = float(timeout)
        self.clock = clock
        self._reads, self._writes = self._pools()
        try:
            make_private(Path(self.path))
        except OSError as exc:
            raise InvalidConfigError(f"cannot create the store file {self.path!r}: {exc.strerror}; check the folder exists") from None
        with self.transaction("open"):
            pass

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def _pools(self) -> tuple[Pool[sqlite3.Connection], Pool[sqlite3.Connection]]:
        """A connection for snapshots and one for writes: a queued request's recheck or a budget
        read never waits for a write of this process, not even one waiting for the file."""
        connect = functools.partial(connect_wal, self.path, timeout=self.timeout, schema=_SCHEMA)
        return Pool(connect, sqlite3.Connection.close, 1), Pool(connect, sqlite3.Connection.close, 1)

    @contextmanager
    def transaction(self, what: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error), or with ``write=False``
        a read-only snapshot that takes no lock; RateLimitStoreError, naming the file and ``what``
        was being done, when SQLite fails."""
        pool = self._writes if write else self._reads
        try:
            conn = pool.take(self.timeout)
            ok = False
            try:
                with (immediate if write else snapshot)(conn):
                    yield conn
                ok = True
            finally:
                pool.give(conn, ok or not conn.in_transaction)
        except (sqlite3.Error, Busy) as exc:
            raise RateLimitStoreError(
                f"the SQLite store {self.path!r} failed ({what}): {exc}; check the file is writable and "
                "not held by a stuck process"
            ) from None

    def close(self) -> None:
        """Close this process's connections (a later call opens new ones)."""
        reads, writes = self._reads, self._writes
        self._reads, self._writes = self._pools()
        reads.close()
        writes.close()

    # -- buckets (the BucketStore protocol) ------------------------------------------------------

    @staticmethod
    def _level(conn: sqlite3.Connection, scope: str, bucket: Bucket, now: float) -> tuple[float, float]:
        """The bucket's level now (refilled, at most its capacity) and its running total taken."""
        row = conn.execute("SELECT level, ts, taken FROM convo_buckets WHERE scope = ? AND name = ?",
                           (scope, bucket.name)).fetchone()
        if row is None:
            return bucket.capacity, 0.0
        level, ts, taken = row
        return min(bucket.capacity, level + max(0.0, now - ts) * bucket.rate), taken

    @staticmethod
    def _put(conn: sqlite3.Connection, scope: str, bucket: Bucket, level: float, now: float, taken: float) -> None:
        conn.execute("INSERT OR REPLACE INTO convo_buckets VALUES (?, ?, ?, ?, ?)", (scope, bucket.name, level, now, taken))

    def reserve(self, scope: str, demands: list[tuple[Bucket, float]]) -> tuple[float, tuple[float, ...]]:
        """Take each amount from its bucket in ``scope``, all in one transaction (levels may go
        below zero); the seconds until every bucket is back at zero, and a mark per bucket."""
        wait, marks = 0.0, []
        with self.transaction("reserve") as conn:
            now = self.clock()
            for bucket, amount in demands:
                level, taken = self._level(conn, scope, bucket, now)
                level, taken = level - amount, taken + amount
                self._put(conn, scope, bucket, level, now, taken)
                marks.append(taken)
                if level < 0:
                    wait = max(wait, -level / bucket.rate)
        return wait, tuple(marks)

    def recheck(self, scope: str, demands: list[tuple[Bucket, float]], marks: tuple[float, ...]) -> float:
        """Seconds the reservation that got ``marks`` must still wait, counting refunds made since."""
        wait = 0.0
        with self.transaction("recheck", write=False) as conn:
            now = self.clock()
            for (bucket, _), mark in zip(demands, marks, strict=True):
                level, taken = self._level(conn, scope, bucket, now)
                ahead = level + (taken - mark)
                if ahead < 0:
                    wait = max(wait, -ahead / bucket.rate)
        return wait

    def adjust(self, scope: str, bucket: Bucket, delta: float, cap_at: float | None = None) -> None:
        """Give ``delta`` units back (negative takes more); ``cap_at`` then lowers the level to it."""
        with self.transaction("adjust") as conn:
            now = self.clock()
            level, taken = self._level(conn, scope, bucket, now)
            level = min(bucket.capacity, level + delta)
            if cap_at is not None:
                level = min(level, cap_at)
            self._put(conn, scope, bucket, level, now, taken)
