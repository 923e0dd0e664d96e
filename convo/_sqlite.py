"""SQLite connections in WAL mode that many processes can open at the same moment.

Every SQLite file convo keeps (the conversation store, the response cache, batch checkpoints) is
in WAL mode, so readers never wait for the writer. Turning a file to WAL takes a lock that
SQLite's busy handler does not wait for: processes opening a new file at once (workers started
together) get "database is locked" from the ``journal_mode`` pragma immediately, whatever the
timeout. :func:`connect_wal` retries that one step, with growing jittered pauses, up to the
same timeout the busy handler honours for everything else.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["connect_wal", "immediate"]


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def connect_wal(path: str, *, timeout: float, synchronous: str = "NORMAL", schema: str = "") -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode (autocommit, usable from any thread), with
    ``PRAGMA synchronous`` set and ``schema`` run; sqlite3.Error as SQLite raises it."""
    conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    try:
        deadline, pause = time.monotonic() + timeout, 0.002
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
                mode = ""
            # SQLite answers with the old mode when it could not switch; rollback mode still works
            # (with the busy timeout), so after the deadline the connection is used as it is.
            if mode.lower() == "wal" or (mode and time.monotonic() >= deadline):
                break
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.1)
        conn.execute(f"PRAGMA synchronous={synchronous}")
        if schema:
            conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read-only ``BEGIN`` ... ``COMMIT``: one consistent view of the file (WAL), taking no write
    lock, so it neither waits for writers nor holds them up."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on an autocommit connection, rolled back on any error:
    the write lock is taken first, so two writers never deadlock upgrading a read."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
