"""Conversations in one SQLite file (WAL, mode 0600), shared by the processes of one machine.

Three tables: one row per conversation (owner, metadata, times, version, header, pins,
summary), one row per chunk of messages (one per write) and one per receipt, keyed
``(conversation, seq)``. A turn is one transaction: a version-checked ``UPDATE`` of the
conversation's row, then ``INSERT``\\ s of the new chunk and receipts. Opening is one ``SELECT``
over the three primary keys.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from .._exceptions import ConversationFileError, StoreError
from .._numbers import number
from .._pool import Busy, Pool
from .._sqlite import connect_wal, immediate
from ._base import StoreBase
from ._records import ConversationInfo, Stored, Write, check_path_config, conflict
from ._sql import INFO, info_of, list_query, read_query, stored_of

__all__ = ["SQLiteConversationStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS convo_conversations (
    id TEXT PRIMARY KEY, owner TEXT, metadata TEXT NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL, version INTEGER NOT NULL, length INTEGER NOT NULL,
    head TEXT NOT NULL, pins TEXT NOT NULL, summary TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS convo_conversations_owner ON convo_conversations (owner, id);
CREATE TABLE IF NOT EXISTS convo_chunks (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, tokens TEXT NOT NULL,
    PRIMARY KEY (conv, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS convo_receipts (
    conv TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (conv, seq)
) WITHOUT ROWID;
"""

_READ = read_query("convo_", "?1")


class SQLiteConversationStore(StoreBase):
    """Conversations in the SQLite file ``path`` (created 0600, WAL), safe across threads and
    processes; the default store.

    >>> store = SQLiteConversationStore("chats.db")
    >>> conv = store.create("You are terse.", user="ada", client=client)
    >>> conv.send("Hello")                       # written when the reply is in
    >>> store.open(conv.id, client=client).messages[-1].text
    """

    kind = "SQLite conversation store"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        check_path_config(path)
        number("busy_timeout", busy_timeout, positive=True, hint=" (seconds)")
        self.path = os.fspath(path)
        self._where = f"{self.kind} {self.path!r}"
        self._busy = busy_timeout
        # One connection for reads, one for writes: more would not write faster (SQLite has one
        # writer per file) and would read slower here (threads contending for the GIL and the file).
        connect = functools.partial(connect_wal, self.path, timeout=busy_timeout, schema=_SCHEMA)
        self._reads: Pool[sqlite3.Connection] = Pool(connect, sqlite3.Connection.close, 1)
        self._writes: Pool[sqlite3.Connection] = Pool(connect, sqlite3.Connection.close, 1)
        self._closed = False
        self._create_private()
        with self._db():
            pass

    def __repr__(self) -> str:
        return f"SQLiteConversationStore({self.path!r})"

    def _create_private(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise ConversationFileError(
                f"cannot create the conversation store {self.path!r}: {exc.strerror}; check that the folder exists"
            ) from None
        try:
            os.fchmod(fd, 0o600)  # whatever the umask; SQLite gives the -wal and -shm files the same mode
        finally:
            os.close(fd)

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection for reads or the one for writes (``write``: inside BEGIN IMMEDIATE ...
        COMMIT), each used by one call at a time, in turn: a read never waits for a write, not even
        one waiting for another process to let go of the file (WAL readers need no lock)."""
        if self._closed:
            raise StoreError(f"the conversation store {self.path!r} is closed; open a new one", store=self._where)
        pool = self._writes if write else self._reads
        try:
            conn = pool.take(self._busy)
            ok = False
            try:
                if write:
                    with immediate(conn):
                        yield conn
                else:
                    yield conn
                ok = True
            finally:
                pool.give(conn, ok or not conn.in_transaction)
        except Busy as exc:
            raise StoreError(f"{self.kind} {self.path!r}: {exc}; is another process holding it?", store=self._where) from None
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.kind} {self.path!r} failed: {exc}; is it a file convo created?", store=self._where
            ) from None

    # -- the backend primitives ------------------------------------------------------------------

    def _insert(self, info: ConversationInfo, head: str, pins: str) -> None:
        created = info.created.timestamp()
        with self._db(write=True) as db:
            db.execute(
                "INSERT INTO convo_conversations VALUES (?, ?, ?, ?, ?, 1, 0, ?, ?, NULL)",
                (info.id, info.user, json.dumps(info.metadata), created, created, head, pins),
            )

    def _append(self, id: str, write: Write) -> int:
        with self._db(write=True) as db:
            cur = db.execute(
                "UPDATE convo_conversations SET version = version + 1, updated = ?, length = ?, pins = ?,"
                " summary = ?, head = coalesce(?, head) WHERE id = ? AND version = ?",
                (write.updated, write.length, write.pins, write.summary, write.head, id, write.version),
            )
            if cur.rowcount != 1:
                row = db.execute("SELECT version FROM convo_conversations WHERE id = ?", (id,)).fetchone()
                raise conflict(self.kind, id, write.version, None if row is None else row[0])
            if write.cut:
                db.execute("DELETE FROM convo_chunks WHERE conv = ? AND seq >= ?", (id, write.keep))
            if write.chunks:
                db.executemany(
                    "INSERT INTO convo_chunks VALUES (?, ?, ?, ?)",
                    [(id, seq, body, n) for seq, body, n in zip(write.starts(), write.chunks, write.counts, strict=True)],
                )
            if write.receipts:
                db.executemany(
                    "INSERT OR REPLACE INTO convo_receipts VALUES (?, ?, ?)",
                    [(id, write.receipt_start + i, body) for i, body in enumerate(write.receipts)],
                )
        return write.version + 1

    def _set_metadata(self, id: str, metadata: str, updated: float) -> bool:
        with self._db(write=True) as db:
            cur = db.execute("UPDATE convo_conversations SET metadata = ?, updated = ? WHERE id = ?", (metadata, updated, id))
            return cur.rowcount == 1

    def _read(self, id: str, messages: bool = True) -> Stored | None:
        with self._db() as db:
            if not messages:
                row = db.execute(f"SELECT {INFO} FROM convo_conversations WHERE id = ?", (id,)).fetchone()
                return None if row is None else Stored(info_of(row), "", "[]", None, [], [])
            return stored_of(db.execute(_READ, (id,)).fetchall())

    def _list(self, user: str | None, limit: int, after: str | None) -> list[ConversationInfo]:
        sql, args = list_query("convo_", "?", user, after, limit)
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
        return [info_of(r) for r in rows]

    def _delete(self, id: str) -> bool:
        with self._db(write=True) as db:
            return self._delete_ids(db, [id]) == 1

    def _delete_user(self, user: str) -> int:
        with self._db(write=True) as db:
            ids = [r[0] for r in db.execute("SELECT id FROM convo_conversations WHERE owner = ?", (user,))]
            return self._delete_ids(db, ids)

    def _delete_idle(self, before: float) -> int:
        with self._db(write=True) as db:
            ids = [r[0] for r in db.execute("SELECT id FROM convo_conversations WHERE updated < ?", (before,))]
            return self._delete_ids(db, ids)

    @staticmethod
    def _delete_ids(db: sqlite3.Connection, ids: list[str]) -> int:
        gone = 0
        for id in ids:
            db.execute("DELETE FROM convo_chunks WHERE conv = ?", (id,))
            db.execute("DELETE FROM convo_receipts WHERE conv = ?", (id,))
            gone += db.execute("DELETE FROM convo_conversations WHERE id = ?", (id,)).rowcount
        return gone

    def close(self) -> None:
        """Close this process's connections (one in use closes when its call ends); any later
        call raises StoreError."""
        self._closed = True
        self._reads.close()
        self._writes.close()
