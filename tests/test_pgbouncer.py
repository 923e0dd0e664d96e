"""A PostgreSQL conversation store behind PgBouncer, the connection pooler most PostgreSQL
deployments put between many worker processes and the server: a real pgbouncer in front of the
session's server, in transaction mode (one server connection serves many clients, a transaction
at a time) and session mode, with fewer server connections than the store's."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

import convo
from convo import ConflictError, StoreError
from tests.helpers import MODEL
from tests.test_stores import hammer

psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")


@pytest.mark.parametrize(("mode", "servers"), [("transaction", 2), ("session", 4)])
def test_threads_writing_through_pgbouncer_lose_no_turn(pgbouncer, mode, servers):
    """8 threads on the store's 4 connections, over 2 server connections in transaction mode (4 in
    session mode, where each client connection holds one): every turn stored once, in order, and
    every read sees it. (The store used to be refused at connect, for the server settings it sent;
    in transaction mode, statements prepared by one client were missing or another's for the next.)"""
    bouncer = pgbouncer(mode, pool_size=servers)
    store = convo.PostgresConversationStore(bouncer.dsn, prefix=f"b{uuid.uuid4().hex[:6]}_", timeout=5.0)
    convs = [store.create(model=MODEL, user=f"u{i}") for i in range(8)]
    errors: list[BaseException] = []

    def chat(conv: convo.Conversation) -> None:
        try:
            for i in range(12):
                conv.add_user(f"{conv.id} q{i}")
                conv.add_assistant(f"{conv.id} a{i}")
                assert len(store.open(conv.id).messages) == 2 * i + 2
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=chat, args=(c,)) for c in convs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for conv in convs:
        expected = [f"{conv.id} {side}{i}" for i in range(12) for side in ("q", "a")]
        assert [m.text for m in store.open(conv.id).messages] == expected
    assert {info.id for info in store.list(limit=100)} >= {c.id for c in convs}
    assert store.delete_user("u0") == 1
    store.close()


def test_a_second_writer_through_pgbouncer_gets_a_conflict_and_loses_nothing(pgbouncer):
    bouncer = pgbouncer("transaction")
    store = convo.PostgresConversationStore(bouncer.dsn, prefix=f"c{uuid.uuid4().hex[:6]}_")
    first = store.create(model=MODEL)
    second = store.open(first.id)
    first.add_user("from the first")
    with pytest.raises(ConflictError) as info:
        second.add_user("from the second")
    assert [m.text for m in info.value.unsaved] == ["from the second"]
    second.reload()
    second.extend(info.value.unsaved)
    assert [m.text for m in store.open(first.id).messages] == ["from the first", "from the second"]
    store.close()


def test_a_write_stuck_behind_a_lock_through_pgbouncer_is_cancelled_at_the_timeout(pgbouncer, postgres_dsn):
    """The server cancels it at ``timeout`` (a cancel request, which PgBouncer forwards); the next
    calls go on, and flush writes the turn once the row is free."""
    bouncer = pgbouncer("transaction")
    prefix = f"l{uuid.uuid4().hex[:6]}_"
    store = convo.PostgresConversationStore(bouncer.dsn, prefix=prefix, timeout=1.0)
    conv = store.create(model=MODEL)
    conv.add_user("before")
    with psycopg.connect(postgres_dsn) as other:
        other.execute(f"SELECT 1 FROM {prefix}conversations WHERE id = %s FOR UPDATE", (conv.id,))
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"no answer within timeout=1 s, so the statement was cancelled"):
            conv.add_assistant("while it is locked")
        assert 0.9 < time.monotonic() - started < 1.5
        assert len(store.open(conv.id).messages) == 1  # reads go on meanwhile
        other.rollback()
    conv.flush()
    assert [m.text for m in store.open(conv.id).messages] == ["before", "while it is locked"]
    store.close()


def test_many_processes_through_pgbouncer_lose_no_turn_and_surface_every_conflict(pgbouncer, tmp_path):
    """The store test's 4 processes on one conversation, each through a transaction-mode
    PgBouncer with 2 server connections."""
    bouncer = pgbouncer("transaction", pool_size=2)
    backend = ("postgres", bouncer.dsn, uuid.uuid4().hex[:10])
    store = convo.PostgresConversationStore(bouncer.dsn, prefix=f"t{backend[2]}_")
    hammer(store, backend, tmp_path)
    store.close()
