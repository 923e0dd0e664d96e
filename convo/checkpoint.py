"""A crash-safe record of finished work, so a long job run again after a crash (even
``kill -9``) redoes only what had not finished.

>>> with Checkpoint("run.ckpt") as ckpt:
...     key = digest(request)
...     saved = ckpt.get("item:7", key)         # None: not done yet, or done for another request
...     if saved is None:
...         ckpt.put("item:7", key, {"text": "..."})

An entry is found only under its name *and* the digest of the input that produced it, so a job
whose inputs changed never gets stale answers back. Storage is SQLite in WAL mode with
``synchronous=FULL``: a ``put`` is on disk when it returns, and readers in other processes see
it at once. The file is created with mode 0600, since it holds prompts and replies.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ._exceptions import InvalidConfigError
from ._files import make_private
from ._sqlite import connect_wal

__all__ = ["Checkpoint", "digest"]

FORMAT = "convo-checkpoint/1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (name TEXT PRIMARY KEY, digest TEXT NOT NULL, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def canonical(obj: Any) -> str:
    """``obj`` as JSON with sorted keys and no spaces: equal inputs give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(obj: Any) -> str:
    """A short stable fingerprint (SHA-256, hex) of a JSON-like value."""
    text = obj if isinstance(obj, str) else canonical(obj)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Checkpoint:
    """Named, digest-checked JSON entries in one SQLite file; thread-safe, shared across processes.

    ``get``/``put`` hold results; ``meta``/``set_meta`` hold a job's own bookkeeping (for example
    the id of a submitted Message Batch, so a restart resumes it instead of submitting again).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:  # private before SQLite opens it (its -wal and -shm inherit the mode); an old 0644 one is tightened
            make_private(self.path)
        except OSError as exc:
            raise InvalidConfigError(f"cannot create the checkpoint file {str(self.path)!r}: {exc}") from exc
        try:
            self._db = connect_wal(str(self.path), timeout=30, synchronous="FULL", schema=_SCHEMA)
            make_private(self.path)  # and the -wal / -shm just opened
            found = self._db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
            if found is None:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (json.dumps(FORMAT),))
            elif json.loads(found[0]) != FORMAT:
                raise InvalidConfigError(
                    f"{str(self.path)!r} is a checkpoint of another format ({found[0]}); "
                    "pass a new path, or delete the file to start over"
                )
        except sqlite3.OperationalError as exc:
            raise InvalidConfigError(
                f"cannot open the checkpoint {str(self.path)!r} ({exc}); if another process is using it, wait for it "
                "or pass a new path"
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise InvalidConfigError(
                f"{str(self.path)!r} is not a convo checkpoint ({exc}); pass a new path, or delete the file"
            ) from exc

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r})"

    def get(self, name: str, key: str) -> Any | None:
        """The value stored under ``name`` for input ``key``; None if absent or stored for another input."""
        with self._lock:
            row = self._db.execute("SELECT digest, value FROM entries WHERE name = ?", (name,)).fetchone()
        if row is None or row[0] != key:
            return None
        return json.loads(row[1])

    def put(self, name: str, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serializable) durably; it replaces what ``name`` held."""
        self.put_many([(name, key, value)])

    def put_many(self, entries: Iterable[tuple[str, str, Any]], *, meta: Mapping[str, Any] | None = None) -> None:
        """Store several entries, and ``meta`` changes (None deletes), in one transaction: after
        a crash, all of them or none are there."""
        rows = [(name, key, canonical(value)) for name, key, value in entries]
        changes = list((meta or {}).items())
        if not rows and not changes:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", rows)
                for name, value in changes:
                    self._set_meta(name, value)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def meta(self, name: str) -> Any | None:
        """The bookkeeping value stored under ``name`` by :meth:`set_meta`, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, name: str, value: Any) -> None:
        """Store bookkeeping durably (on disk when this returns); ``None`` deletes it."""
        with self._lock:
            self._set_meta(name, value)

    def _set_meta(self, name: str, value: Any) -> None:
        if name == "format":
            raise InvalidConfigError("'format' is the checkpoint's own entry; pick another name")
        if value is None:
            self._db.execute("DELETE FROM meta WHERE name = ?", (name,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, canonical(value)))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM entries").fetchone()[0])

    def close(self) -> None:
        """Close the file. Nothing is lost: every ``put`` was on disk when it returned."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
