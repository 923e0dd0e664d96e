"""Conversations in PostgreSQL (psycopg 3), shared by every process and machine that reaches it.

The tables are SQLite's (one row per conversation, per chunk of messages, per receipt). A turn
is one statement: a version-checked ``UPDATE`` whose ``RETURNING`` feeds the ``INSERT``\\ s of the
new chunk and receipts in the same statement, so nothing is written when the version moved on;
opening is one ``SELECT`` over the three primary keys. One round trip each.
"""

from __future__ import annotations

import json
import select
import weakref
from collections.abc import Callable
from typing import Any

from .._exceptions import InvalidConfigError, StoreError
from .._numbers import number
from .._pool import Busy, Pool
from .._sockets import KEEPALIVE_COUNT, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL
from ._base import StoreBase
from ._records import RECENT_CHARS, ConversationInfo, Stored, Write, conflict
from ._sql import INFO, info_of, list_query, read_query, stored_of
from ._watchdog import Watchdog

__all__ = ["PostgresConversationStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}conversations (
    id text PRIMARY KEY, owner text, metadata text NOT NULL, created double precision NOT NULL,
    updated double precision NOT NULL, version bigint NOT NULL, length integer NOT NULL,
    head text NOT NULL, pins text NOT NULL, summary text
);
ALTER TABLE {p}conversations ADD COLUMN IF NOT EXISTS last_write text;
CREATE INDEX IF NOT EXISTS {p}conversations_owner ON {p}conversations (owner, id);
CREATE TABLE IF NOT EXISTS {p}chunks (
    conv text NOT NULL, seq integer NOT NULL, body text NOT NULL, tokens text NOT NULL,
    PRIMARY KEY (conv, seq)
);
CREATE TABLE IF NOT EXISTS {p}receipts (
    conv text NOT NULL, seq integer NOT NULL, body text NOT NULL, PRIMARY KEY (conv, seq)
);
"""


# A turn: a version-checked UPDATE whose RETURNING gates every other part. The plain case (a new
# chunk after the stored ones) leaves out the cut and needs no ON CONFLICT: its seqs are new. A
# cut deletes the chunks the new ones do not replace (one statement cannot both delete a row and
# insert its key again). One chunk or one receipt (a turn's usual write) is passed as plain
# values: arrays cost psycopg and the server a third of the statement's time.
_UPDATE = """
WITH up AS (
    UPDATE {p}conversations SET version = version + 1, updated = %(updated)s, length = %(length)s,
        pins = %(pins)s, summary = %(summary)s, head = coalesce(%(head)s, head),
        last_write = left(%(token)s || ',' || coalesce(last_write, ''), {recent})
    WHERE id = %(id)s AND version = %(version)s RETURNING version
)"""
_CUT = """, cut AS (
    DELETE FROM {p}chunks WHERE conv = %(id)s AND seq >= %(keep)s AND {others} AND EXISTS (SELECT 1 FROM up)
)"""
_CHUNKS = {
    "one": "SELECT %(id)s, %(seq)s, %(body)s, %(n)s FROM up",
    "many": "SELECT %(id)s, t.seq, t.body, t.n FROM up,\n"
            "        unnest(%(seqs)s::integer[], %(bodies)s::text[], %(tokens)s::text[]) AS t(seq, body, n)",
}
_RECEIPTS = {
    "one": "SELECT %(id)s, %(rseq)s, %(rbody)s FROM up",
    "many": "SELECT %(id)s, t.seq, t.body FROM up, unnest(%(rseqs)s::integer[], %(rbodies)s::text[]) AS t(seq, body)",
}


def _how_many(items: list[str]) -> str:
    return "none" if not items else "one" if len(items) == 1 else "many"


def _append_sql(cut: bool, chunks: str, receipts: str) -> str:
    """The turn's statement for a cut or not and none, one or many new chunks and receipts."""
    parts = [_UPDATE]
    if cut:
        others = {"none": "true", "one": "seq <> %(seq)s", "many": "seq <> ALL(%(seqs)s::integer[])"}[chunks]
        parts.append(_CUT.replace("{others}", others))
    if chunks != "none":
        upsert = "\n    ON CONFLICT (conv, seq) DO UPDATE SET body = EXCLUDED.body, tokens = EXCLUDED.tokens" if cut else ""
        parts.append(f", msgs AS (\n    INSERT INTO {{p}}chunks (conv, seq, body, tokens)\n    {_CHUNKS[chunks]}{upsert}\n)")
    if receipts != "none":
        parts.append(f", recs AS (\n    INSERT INTO {{p}}receipts (conv, seq, body)\n    {_RECEIPTS[receipts]}\n"
                     "    ON CONFLICT (conv, seq) DO UPDATE SET body = EXCLUDED.body\n)")
    return "".join(parts) + "\nSELECT version FROM up\n"


_DELETE = """
WITH c AS (DELETE FROM {p}conversations WHERE {where} RETURNING id),
m AS (DELETE FROM {p}chunks WHERE conv IN (SELECT id FROM c)),
r AS (DELETE FROM {p}receipts WHERE conv IN (SELECT id FROM c))
SELECT count(*) FROM c
"""


# TCP keepalives on every connection (see convo._sockets), unless the dsn sets its own.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE, "keepalives_interval": KEEPALIVE_INTERVAL,
               "keepalives_count": KEEPALIVE_COUNT}


def _connector(psycopg: Any, dsn: str, timeout: float, given: dict[str, Any]) -> Callable[[], Any]:
    """How the pool opens a connection (no reference to the store: a dropped store is freed at once).
    It sends no server settings of its own (a pooler such as PgBouncer refuses ``options``), so
    the dsn's own ``options`` (or ``PGOPTIONS``) reach the server as they are; ``given``: the
    dsn's parameters, whose keepalive settings win over the store's."""
    extra = {} if any(key.startswith("keepalives") for key in given) else dict(_KEEPALIVES)

    def connect() -> Any:
        return psycopg.connect(
            dsn, autocommit=True, connect_timeout=max(1, round(timeout)), fallback_application_name="convo",
            **extra,
        )

    return connect


def _readable(fd: int) -> bool:
    """Whether a socket has something to read (or has been closed) right now, without waiting."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows


def _alive(conn: Any) -> bool:
    """Whether an idle connection still has its server. An idle connection gets nothing unasked,
    so anything to read means the server let it go meanwhile (a restart, a failover,
    ``pg_terminate_backend``, ``idle_session_timeout``): it sent its goodbye, or closed the socket.
    One system call, no round trip."""
    if conn.closed or conn.broken:
        return False
    try:
        return not _readable(conn.fileno())
    except (OSError, ValueError, conn.OperationalError):
        return False


class PostgresConversationStore(StoreBase):
    """Conversations in PostgreSQL at ``dsn`` (``postgresql://user:password@host:port/db`` or
    ``"host=... dbname=..."``), in tables named ``{prefix}conversations``, ``{prefix}chunks`` and
    ``{prefix}receipts`` (created if missing). Needs psycopg 3: ``pip install 'convo[postgres]'``.
    The password never appears in an error or repr. ``timeout`` (seconds) bounds every call: a
    statement still running at ``timeout`` is cancelled on the server (a cancel request, which
    poolers such as PgBouncer forward), and a server that stops answering altogether (a stopped
    process, a lost network) is cut off a moment later, so a call raises :class:`~convo.StoreError`
    instead of hanging. ``max_connections``: connections per process, opened as calls overlap
    (threads, an async server's worker threads), so one slow call does not hold up the others;
    a call that finds them all busy waits up to ``timeout`` for one; one unused for ``max_idle``
    seconds is closed (a burst's extra connections are not held for good). ``prepare``: whether the
    store's statements are prepared on the server (parsed and planned once per connection).
    ``None`` (the default) prepares them only on a direct connection to PostgreSQL: behind a
    connection pooler (PgBouncer, in transaction mode especially) one server connection serves
    many clients, so a statement prepared by one is missing, or another's, for the next; the
    store tells the two apart when it connects (the backend behind the connection is not the
    one it reached). ``True`` forces it (a pooler that keeps prepared statements per client, such as
    PgBouncer 1.21+ with ``max_prepared_statements``); ``False`` turns it off."""

    kind = "PostgreSQL conversation store"

    def __init__(
        self, dsn: str, *, prefix: str = "convo_", timeout: float = 10.0, max_connections: int = 4,
        max_idle: float = 300.0, prepare: bool | None = None,
    ) -> None:
        try:
            import psycopg
            from psycopg import conninfo
        except ImportError:
            raise InvalidConfigError(
                "PostgresConversationStore needs psycopg 3: pip install 'convo[postgres]'"
            ) from None
        if not isinstance(dsn, str):
            raise InvalidConfigError(f"dsn must be a str such as 'postgresql://localhost/app', got {type(dsn).__name__}")
        if not prefix.replace("_", "").isalnum() or not prefix[:1].isalpha():
            raise InvalidConfigError(f"prefix must be letters, digits and '_' starting with a letter, got {prefix!r}")
        try:
            params = conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise InvalidConfigError(f"invalid PostgreSQL dsn: {exc}") from None
        secret = params.pop("password", None)
        self._secret = None if secret is None else str(secret)
        self.dsn = conninfo.make_conninfo("", **{k: v for k, v in params.items() if v is not None})
        number("timeout", timeout, positive=True, hint=" (seconds)")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or not 1 <= max_connections <= 1000:
            raise InvalidConfigError(
                f"max_connections must be an int from 1 to 1000 (connections per process), got {max_connections!r}"
            )
        number("max_idle", max_idle, positive=True, hint=" (seconds a connection may sit unused before it is closed)")
        if prepare is not None and not isinstance(prepare, bool):
            raise InvalidConfigError(f"prepare must be True, False or None (decided on connecting), got {prepare!r}")
        self._psycopg = psycopg
        self._dsn, self._timeout = dsn, float(timeout)
        # A call still waiting at `timeout` is cancelled on the server; one whose server does not
        # answer at all is cut a moment later, so no call waits much past `timeout`.
        self._margin = min(1.0, self._timeout / 10)
        self._watchdog = Watchdog(self._timeout + self._margin, "convo-postgres-watchdog", cancel_after=self._timeout)
        weakref.finalize(self, self._watchdog.stop)  # a store dropped without close() ends its thread too
        self._sql = {name: text.replace("{p}", prefix) for name, text in (("schema", _SCHEMA),)}
        self._sql["read"] = read_query(prefix, "%(id)s")
        counts = ("none", "one", "many")
        self._appends = {
            (cut, chunks, recs): _append_sql(cut, chunks, recs).replace("{p}", prefix).replace("{recent}", str(RECENT_CHARS))
            for cut in (False, True) for chunks in counts for recs in counts
        }
        self._prefix = prefix
        self._prepare = prepare  # None until the first connection tells whether it is direct
        self._pool: Pool[Any] = Pool(
            _connector(psycopg, dsn, self._timeout, params), lambda conn: conn.close(), max_connections,
            alive=_alive, max_idle=float(max_idle),
        )
        self._closed = False

        def schema(conn: Any) -> None:
            with conn.transaction():  # processes starting at once: one creates, the others wait
                conn.execute("SELECT pg_advisory_xact_lock(7262511)")
                conn.execute(self._sql["schema"])

        self._call("create the tables", schema)

    def __repr__(self) -> str:
        return f"PostgresConversationStore({self.dsn!r})"

    def _reusable(self, conn: Any) -> bool:
        """Whether a connection given back can serve the next call (not broken, no transaction left open)."""
        return not conn.closed and not conn.broken and conn.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE

    def _canceller(self, conn: Any) -> Callable[[], object]:
        """How the watchdog asks the server to end this connection's statement (psycopg 3.2+ has a
        cancel with a deadline of its own)."""
        if hasattr(conn, "cancel_safe"):
            margin = max(0.1, self._margin)
            return lambda: conn.cancel_safe(timeout=margin)
        cancel: Callable[[], object] = conn.cancel  # pragma: no cover - psycopg 3.1
        return cancel  # pragma: no cover

    def _direct(self, conn: Any) -> bool:
        """Whether ``conn`` reaches PostgreSQL itself: the backend answering is the one whose
        process id the connection got when it started. A pooler hands out its own key (it
        forwards cancels itself), so behind one they differ."""
        (pid,) = conn.execute("SELECT pg_backend_pid()", prepare=False).fetchone()
        return bool(pid == conn.info.backend_pid)

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """``fn`` on a connection of this call's own (see :class:`Pool`), watched by the watchdog;
        StoreError if it fails, saying why."""
        if self._closed:
            raise StoreError(f"the {self.kind} is closed; open a new one", store=f"{self.kind} at {self.dsn!r}")
        acted = ""
        hint = "check that the server is up and the dsn is right"
        try:
            conn = self._pool.take(self._timeout)
            ticket = self._watchdog.arm(conn.fileno(), self._canceller(conn))
            try:
                if self._prepare is None:
                    self._prepare = self._direct(conn)
                if not self._prepare:
                    conn.prepare_threshold = None  # psycopg would prepare a statement on its 5th use
                return fn(conn)
            finally:
                acted = self._watchdog.disarm(ticket)
                # Cut or cancelled (even if the answer came just in time: a cancel still on its way
                # would end the next call's statement), broken or mid-transaction: closed, so the
                # next call gets a fresh connection.
                self._pool.give(conn, not acted and self._reusable(conn))
        except Busy as exc:
            problem = str(exc)
            hint = f"this process makes more calls at once than max_connections={self._pool.size}; raise it"
        except self._psycopg.Error as exc:
            if acted == "cut":
                problem = (f"no answer within {self._watchdog.after:g} s (timeout={self._timeout:g}), "
                           "so the connection was closed")
            elif acted == "cancelled" and isinstance(exc, self._psycopg.errors.QueryCanceled):
                problem = f"no answer within timeout={self._timeout:g} s, so the statement was cancelled"
                hint = "the server is slow or the rows are locked by another client; retry, or raise timeout"
            else:
                text = str(exc)
                problem = f"{type(exc).__name__}: {text.replace(self._secret, '***') if self._secret else text}"
        raise StoreError(
            f"{self.kind} at {self.dsn!r} failed ({what}): {problem.strip()}; {hint}",
            store=f"{self.kind} at {self.dsn!r}",
        )

    # -- the backend primitives ------------------------------------------------------------------

    def _insert(self, info: ConversationInfo, head: str, pins: str) -> None:
        created = info.created.timestamp()
        sql = (f"INSERT INTO {self._prefix}conversations (id, owner, metadata, created, updated, version, length,"
               " head, pins) VALUES (%s, %s, %s, %s, %s, 1, 0, %s, %s)")
        args = (info.id, info.user, json.dumps(info.metadata), created, created, head, pins)
        self._call("create", lambda c: c.execute(sql, args))

    def _append(self, id: str, write: Write) -> int:
        starts = write.starts()
        args = {
            "id": id, "version": write.version, "updated": write.updated, "length": write.length,
            "pins": write.pins, "summary": write.summary, "head": write.head, "token": write.token,
            "keep": write.keep, "seqs": starts, "bodies": write.chunks, "tokens": write.counts,
            "seq": starts[0] if starts else None, "body": write.chunks[0] if starts else None,
            "n": write.counts[0] if starts else None,
            "rseq": write.receipt_start, "rbody": write.receipts[0] if write.receipts else None,
            "rseqs": list(range(write.receipt_start, write.receipt_start + len(write.receipts))),
            "rbodies": write.receipts,
        }

        sql = self._appends[write.cut, _how_many(write.chunks), _how_many(write.receipts)]

        def append(c: Any) -> Any:
            row = c.execute(sql, args, prepare=self._prepare).fetchone()
            if row is not None:
                return row[0]
            now = c.execute(f"SELECT version, last_write FROM {self._prefix}conversations WHERE id = %s", (id,)).fetchone()
            if now is not None and write.token in (now[1] or "").split(","):
                return write.version + 1  # this very write, sent again: applied, not a conflict
            return conflict(self.kind, id, write.version, None if now is None else now[0])

        version = self._call("append", append)
        if isinstance(version, Exception):
            raise version
        return int(version)

    def _set_metadata(self, id: str, metadata: str, updated: float) -> bool:
        sql = f"UPDATE {self._prefix}conversations SET metadata = %s, updated = %s WHERE id = %s"
        return bool(self._call("set metadata", lambda c: c.execute(sql, (metadata, updated, id)).rowcount == 1))

    def _last_write(self, id: str) -> tuple[int, str] | None:
        sql = f"SELECT version, last_write FROM {self._prefix}conversations WHERE id = %s"
        row = self._call("check the last write", lambda c: c.execute(sql, (id,)).fetchone())
        return None if row is None else (int(row[0]), row[1] or "")

    def _read(self, id: str, messages: bool = True) -> Stored | None:
        if not messages:
            sql = f"SELECT {INFO} FROM {self._prefix}conversations WHERE id = %s"
            row = self._call("info", lambda c: c.execute(sql, (id,)).fetchone())
            return None if row is None else Stored(info_of(row), "", "[]", None, [], [])
        return stored_of(self._call("open", lambda c: c.execute(self._sql["read"], {"id": id}, prepare=self._prepare).fetchall()))

    def _list(self, user: str | None, limit: int, after: str | None) -> list[ConversationInfo]:
        sql, args = list_query(self._prefix, "%s", user, after, limit)
        return [info_of(r) for r in self._call("list", lambda c: c.execute(sql, args).fetchall())]

    def _delete(self, id: str) -> bool:
        sql = _DELETE.replace("{p}", self._prefix).replace("{where}", "id = %s")
        return bool(self._call("delete", lambda c: c.execute(sql, (id,)).fetchone()[0]))

    def _delete_user(self, user: str) -> int:
        sql = _DELETE.replace("{p}", self._prefix).replace("{where}", "owner = %s")
        return int(self._call("delete_user", lambda c: c.execute(sql, (user,)).fetchone()[0]))

    def _delete_idle(self, before: float) -> int:
        sql = _DELETE.replace("{p}", self._prefix).replace("{where}", "updated < %s")
        return int(self._call("delete_idle", lambda c: c.execute(sql, (before,)).fetchone()[0]))

    def close(self) -> None:
        """Close this process's connections (one in use closes when its call ends); any later
        call raises StoreError."""
        self._closed = True
        self._pool.close()
        self._watchdog.stop()
