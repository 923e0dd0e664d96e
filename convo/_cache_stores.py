"""Where cached answers live: in memory, in an SQLite file, or in Redis.

The public names are re-exported by :mod:`convo.cache`; import them from there. Every store
keeps values as JSON text, so all three behave alike.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._exceptions import ConvoError, InvalidConfigError, InvalidInputError
from ._files import make_private
from ._numbers import number
from ._redis_url import hide_password, scrub, secrets_in
from ._sockets import redis_options
from ._sqlite import connect_wal

__all__ = ["CacheError", "MemoryCache", "RedisCache", "SQLiteCache"]


class CacheError(ConvoError):
    """A cache could not be opened, read or written (bad URL or path, server down, corrupt entry)."""


# -- shared helpers ----------------------------------------------------------------------------


def _check_ttl(ttl: float | None, name: str = "ttl") -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0 or math.isinf(ttl):
        raise InvalidConfigError(f"{name} must be a positive number of seconds or None, got {ttl!r}")
    return float(ttl)


def _dumps(value: dict[str, Any]) -> str:
    if not isinstance(value, dict):
        raise InvalidInputError(f"cache values are dicts (use to_entry(message)), got {type(value).__name__}")
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"cache values must be plain JSON ({exc}); use to_entry(message)") from None


def _loads(text: str | bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None  # a corrupt entry is a miss, not a crash
    return value if isinstance(value, dict) else None


class _Closing:
    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- memory ------------------------------------------------------------------------------------


class MemoryCache(_Closing):
    """An in-process LRU cache with optional expiry; thread-safe.

    ``max_items`` bounds the entries (the least recently used goes first); ``ttl`` is the
    default lifetime in seconds; ``clock`` (monotonic seconds) is injectable for tests.
    """

    def __init__(self, max_items: int = 10_000, ttl: float | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise InvalidConfigError(f"max_items must be a positive int, got {max_items!r}")
        self.max_items = max_items
        self.ttl = _check_ttl(ttl)
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[str, float | None]] = OrderedDict()

    def __repr__(self) -> str:
        return f"MemoryCache(max_items={self.max_items}, ttl={self.ttl})"

    def __len__(self) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for _, deadline in self._items.values() if deadline is None or deadline > now)

    def get(self, key: str) -> dict[str, Any] | None:
        """The value stored under ``key``, or None when it is absent or expired; a hit becomes the most
        recently used entry.
        """
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            text, deadline = item
            if deadline is not None and deadline <= self._clock():
                del self._items[key]
                return None
            self._items.move_to_end(key)
        return _loads(text)

    def set(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        """Store ``value`` (a JSON dict) under ``key`` for ``ttl`` seconds (None: the cache's ``ttl``).

        Past ``max_items``, the least recently used entries are dropped. InvalidInputError if ``value``
        is not plain JSON (use :func:`convo.cache.to_entry` for a Message).
        """
        text = _dumps(value)
        ttl = _check_ttl(ttl) or self.ttl
        with self._lock:
            self._items[key] = (text, None if ttl is None else self._clock() + ttl)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def delete(self, key: str) -> None:
        """Remove ``key``; a key that is not there is no error."""
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            self._items.clear()

    def close(self) -> None:
        """Empty the cache, freeing its memory (it holds nothing else open, and stays usable)."""
        self.clear()


# -- SQLite ------------------------------------------------------------------------------------

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS convo_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS convo_cache_expires ON convo_cache (expires);"
)
PURGE_EVERY = 256  # writes between sweeps of expired rows


class SQLiteCache(_Closing):
    """A cache in one SQLite file: survives restarts, shared by threads and processes.

    The file is created readable by its owner only (0600): cached answers may hold personal
    data. WAL mode lets readers work while one writer writes; a busy file is waited for up to
    ``busy_timeout`` seconds. Expired rows are ignored at once and deleted in occasional sweeps
    (on open and every few hundred writes). ``clock`` gives wall-clock seconds, because expiry
    must hold across processes and restarts.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        ttl: float | None = None,
        *,
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.fspath(path)
        self.ttl = _check_ttl(ttl)
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, (int, float)) or not 0 <= busy_timeout < math.inf:
            raise InvalidConfigError(f"busy_timeout must be a finite number of seconds >= 0, got {busy_timeout!r}")
        self._busy = busy_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inherited: list[sqlite3.Connection] = []
        self._pid = 0
        self._writes = 0
        self._closed = False
        self._create_private()
        self.purge()

    def __repr__(self) -> str:
        return f"SQLiteCache({self.path!r}, ttl={self.ttl})"

    def _create_private(self) -> None:
        """Create the file 0600, or tighten an existing one (and its -wal / -shm) to 0600."""
        try:
            make_private(Path(self.path))
        except OSError as exc:
            raise CacheError(
                f"cannot create the cache file {self.path!r}: {exc.strerror}; check that the directory exists and is writable"
            ) from None

    def _connection(self) -> sqlite3.Connection:
        """This process's connection: a forked child must not use its parent's, so it opens its own."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self._conn is not None:
            self._inherited.append(self._conn)  # never closed here: it belongs to the parent
        conn = connect_wal(self.path, timeout=self._busy, schema=_SCHEMA)
        try:
            make_private(Path(self.path))  # the -wal and -shm SQLite just opened, if an old one was wider
        except OSError:
            pass
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[list[Any], int]:
        """Run one statement; returns its rows and its rowcount."""
        with self._lock:
            if self._closed:
                raise CacheError(f"the SQLite cache {self.path!r} is closed; open a new SQLiteCache")
            try:
                cursor = self._connection().execute(sql, args)
                return cursor.fetchall(), cursor.rowcount
            except sqlite3.Error as exc:
                raise CacheError(f"SQLite cache {self.path!r} failed: {exc}; is it a cache file convo created?") from None

    def get(self, key: str) -> dict[str, Any] | None:
        """The value stored under ``key``, or None when it is absent, expired or not a JSON dict;
        CacheError if the file cannot be read.
        """
        rows, _ = self._run("SELECT value, expires FROM convo_cache WHERE key = ?", (key,))
        if not rows:
            return None
        text, expires = rows[0]
        if expires is not None and expires <= self._clock():
            return None  # deleted by the next sweep
        return _loads(text)

    def set(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        """Store ``value`` (a JSON dict) under ``key`` for ``ttl`` seconds (None: the cache's ``ttl``).

        Every few hundred writes also sweeps out expired rows. InvalidInputError if ``value`` is not
        plain JSON; CacheError if the file cannot be written.
        """
        text = _dumps(value)
        ttl = _check_ttl(ttl) or self.ttl
        expires = None if ttl is None else self._clock() + ttl
        self._run("INSERT OR REPLACE INTO convo_cache (key, value, expires) VALUES (?, ?, ?)", (key, text, expires))
        with self._lock:
            self._writes += 1
            sweep = self._writes % PURGE_EVERY == 0
        if sweep:
            self.purge()

    def purge(self) -> int:
        """Delete expired rows now; returns how many went."""
        return self._run("DELETE FROM convo_cache WHERE expires <= ?", (self._clock(),))[1]

    def __len__(self) -> int:
        rows, _ = self._run("SELECT count(*) FROM convo_cache WHERE expires IS NULL OR expires > ?", (self._clock(),))
        return int(rows[0][0])

    def delete(self, key: str) -> None:
        """Remove ``key``; a key that is not there is no error."""
        self._run("DELETE FROM convo_cache WHERE key = ?", (key,))

    def clear(self) -> None:
        """Remove every entry from the file (other processes using it see it empty too)."""
        self._run("DELETE FROM convo_cache")

    def close(self) -> None:
        """Close this process's connection to the file; any later call raises CacheError."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn, self._closed = None, True


# -- Redis -------------------------------------------------------------------------------------


class RedisCache(_Closing):
    """A cache in Redis, shared by every process that uses the same ``url`` and ``prefix``.

    Expiry is Redis's own (``SET ... PX``). Fails at construction with CacheError if the URL is
    invalid or the server does not answer; the URL's password never appears in an error.
    """

    def __init__(self, url: str, ttl: float | None = None, prefix: str = "convo:", *, timeout: float = 5.0) -> None:
        number("RedisCache(timeout=...)", timeout, positive=True, hint=" (seconds)")
        self.url = hide_password(url)
        self.ttl = _check_ttl(ttl)
        self.prefix = prefix
        try:
            import redis
        except ImportError:  # pragma: no cover - redis is a declared extra
            raise InvalidConfigError("RedisCache needs the redis package: pip install 'convo[redis]'") from None
        self._errors = (redis.RedisError, OSError)
        self._secrets = secrets_in(url)
        problem = None
        try:
            self._redis = redis.Redis.from_url(url, **redis_options(timeout))  # a lookup costs one timeout at most
        except (ValueError, TypeError) as exc:
            problem = self._scrub(str(exc))
        if problem is not None:  # raised out here, so the original error (and URL) is not chained
            raise CacheError(
                f"invalid Redis URL {self.url!r}: {problem}; use redis://[user:password@]host:port/db, rediss://... or unix:///path"
            )
        self._call("ping", lambda r: r.ping())

    def __repr__(self) -> str:
        return f"RedisCache({self.url!r}, ttl={self.ttl}, prefix={self.prefix!r})"

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        try:
            return fn(self._redis)
        except self._errors as exc:
            problem = f"{type(exc).__name__}: {self._scrub(str(exc))}"
        raise CacheError(
            f"Redis cache at {self.url!r} failed ({what}): {problem}; "
            "check that redis-server is running and the URL, password and db are right"
        )

    def get(self, key: str) -> dict[str, Any] | None:
        """The value stored under ``prefix`` + ``key``, or None when it is absent, expired or not a JSON
        dict; CacheError if Redis fails.
        """
        raw = self._call("get", lambda r: r.get(self.prefix + key))
        return None if raw is None else _loads(raw)

    def set(self, key: str, value: dict[str, Any], ttl: float | None = None) -> None:
        """Store ``value`` (a JSON dict) under ``prefix`` + ``key`` for ``ttl`` seconds (None: the
        cache's ``ttl``; neither: no expiry).

        InvalidInputError if ``value`` is not plain JSON; CacheError if Redis fails.
        """
        text = _dumps(value)
        ttl = _check_ttl(ttl) or self.ttl
        px = None if ttl is None else max(1, math.ceil(ttl * 1000))
        self._call("set", lambda r: r.set(self.prefix + key, text.encode("utf-8"), px=px))

    def delete(self, key: str) -> None:
        """Remove ``prefix`` + ``key``; a key that is not there is no error."""
        self._call("delete", lambda r: r.delete(self.prefix + key))

    def clear(self) -> None:
        """Delete every key under ``prefix`` (SCAN, so the server is never blocked)."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"

        def sweep(r: Any) -> None:
            batch: list[bytes] = []
            for key in r.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) >= 500:
                    r.unlink(*batch)
                    batch.clear()
            if batch:
                r.unlink(*batch)

        self._call("clear", sweep)

    def close(self) -> None:
        """Close the connections to Redis."""
        self._redis.close()
