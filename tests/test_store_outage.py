"""A conversation store that goes away mid-conversation, and turns written off the event loop:
a real redis-server stopped and started again, turns sent to the simulator over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid

import pytest

import convo
from convo import ConflictError, ConversationFileError, InvalidConfigError, StoreError
from tests.helpers import MODEL, PostgresServer, RedisServer, in_background, quick_aclient, quick_client


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(str(tmp_path), persist=True)
    server.start()
    yield server
    server.stop()


def test_a_redis_outage_keeps_the_turn_in_the_handle_and_flush_writes_it_later(own_redis, fresh):
    store = convo.RedisConversationStore(own_redis.url, prefix=f"o{uuid.uuid4().hex[:6]}:", timeout=1.0)
    conv = store.create(model=MODEL, client=quick_client(fresh), user="ada")
    conv.send("before the outage")
    own_redis.stop()
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        conv.send("during the outage")
    assert time.monotonic() - started < 10  # the reply came; the write failed fast, it did not hang
    err = info.value
    assert isinstance(err, ConversationFileError) and isinstance(err, convo.ConvoError)
    assert err.store == f"Redis conversation store at {own_redis.url!r}" and err.store in str(err)
    assert "conv.flush()" in str(err) and "redis-server is running" in str(err)
    assert [m.role for m in err.unsaved] == ["user", "assistant"] and err.unsaved[0].text == "during the outage"
    assert [m.text for m in conv.messages if m.role == "user"] == ["before the outage", "during the outage"]
    with pytest.raises(StoreError):
        store.open(conv.id)  # reads fail the same way, typed
    own_redis.start()  # same port, the data kept in its append-only file
    stored = store.open(conv.id)
    assert [m.text for m in stored.messages if m.role == "user"] == ["before the outage"]
    conv.flush()  # what the handle kept reaches the store
    conv.flush()  # nothing left: a no-op
    assert store.open(conv.id).to_dict() == conv.to_dict()
    conv.send("after the outage")  # and the conversation goes on
    assert len(store.open(conv.id).messages) == 6
    store.close()


def test_a_change_made_during_the_outage_is_written_with_the_next_one(own_redis, fresh):
    store = convo.RedisConversationStore(own_redis.url, prefix=f"o{uuid.uuid4().hex[:6]}:", timeout=1.0)
    conv = store.create(model=MODEL)
    own_redis.stop()
    with pytest.raises(StoreError):
        conv.add_user("kept")
    own_redis.start()
    conv.add_assistant("and written together")
    assert [m.text for m in store.open(conv.id).messages] == ["kept", "and written together"]
    store.close()


def test_flush_needs_a_store():
    with pytest.raises(InvalidConfigError, match="not in a store"):
        convo.Conversation(model=MODEL).flush()


def test_a_closed_sqlite_store_is_a_store_error(tmp_path):
    store = convo.SQLiteConversationStore(tmp_path / "chats.db")
    conv = store.create(model=MODEL)
    store.close()
    with pytest.raises(StoreError, match="closed") as info:
        conv.add_user("too late")
    assert str(tmp_path / "chats.db") in info.value.store and info.value.unsaved[0].text == "too late"


def test_a_sqlite_write_waiting_for_another_process_does_not_hold_up_reads(tmp_path):
    """While one thread's write waits for the file's lock (another process holds it), other
    threads of this process read on (WAL readers never wait); the write goes through once the lock
    is free, and a second writer of this process fails by name after busy_timeout, not later."""
    import sqlite3

    path = tmp_path / "chats.db"
    store = convo.SQLiteConversationStore(path, busy_timeout=2.0)
    waiting, other = store.create(model=MODEL), store.create(model=MODEL)
    other.add_user("stored before")
    blocker = sqlite3.connect(path, isolation_level=None)  # as another process: the write lock
    blocker.execute("BEGIN IMMEDIATE")
    writer, errors = in_background(waiting.add_user, "waits for the file")
    time.sleep(0.2)  # the writer is in SQLite's busy wait
    assert [m.text for m in store.open(other.id).messages] == ["stored before"]
    assert [i.id for i in store.list(limit=5)] == [other.id, waiting.id]
    assert writer.is_alive(), "reads waited for the write"
    blocker.execute("COMMIT")
    writer.join(5)
    assert errors == []
    assert [m.text for m in store.open(waiting.id).messages] == ["waits for the file"]
    blocker.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(StoreError, match="locked"):
        other.add_assistant("cannot get in")
    assert time.monotonic() - started < 3.5
    blocker.execute("ROLLBACK")
    other.flush()
    assert len(store.open(other.id)) == 2
    blocker.close()
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_an_async_turn_writes_off_the_event_loop_and_a_sync_one_in_place(kind, tmp_path, redis_url, fresh):
    store = (convo.SQLiteConversationStore(tmp_path / "chats.db") if kind == "sqlite"
             else convo.RedisConversationStore(redis_url, prefix=f"a{uuid.uuid4().hex[:6]}:"))
    writers: list[threading.Thread] = []
    real = store._append

    def recording(id, write):
        writers.append(threading.current_thread())
        return real(id, write)

    store._append = recording

    async def chat() -> threading.Thread:
        conv = store.create(model=MODEL, client=quick_aclient(fresh))
        await conv.asend("hello")
        async for _ in conv.astream("and again"):
            pass
        return threading.current_thread()

    loop_thread = asyncio.run(chat())
    assert len(writers) == 2 and all(t is not loop_thread for t in writers)  # one write per turn, in a worker
    conv = store.create(model=MODEL, client=quick_client(fresh))
    conv.send("sync")
    assert writers[-1] is threading.current_thread()
    (opened,) = [c for c in (store.open(c.id) for c in store.list(limit=5)) if len(c.messages) == 4]
    assert [m.text for m in opened.messages if m.role == "user"] == ["hello", "and again"]
    store.close()


def test_a_hung_redis_fails_within_the_timeout_and_recovers(own_redis):
    import signal

    store = convo.RedisConversationStore(own_redis.url, prefix=f"h{uuid.uuid4().hex[:6]}:", timeout=0.5)
    conv = store.create(model=MODEL)
    conv.add_user("before")
    own_redis.proc.send_signal(signal.SIGSTOP)  # the server still accepts, but answers nothing
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="Timeout"):
            conv.add_assistant("while it hangs")
        assert time.monotonic() - started < 2.0
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    conv.flush()
    assert [m.text for m in store.open(conv.id).messages] == ["before", "while it hangs"]
    store.close()


def test_a_postgres_write_stuck_behind_a_lock_times_out_and_is_written_by_flush(postgres_dsn):
    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    prefix = f"l{uuid.uuid4().hex[:6]}_"
    store = convo.PostgresConversationStore(postgres_dsn, prefix=prefix, timeout=1.0)
    conv = store.create(model=MODEL)
    conv.add_user("before")
    with psycopg.connect(postgres_dsn) as other:  # another client holds the row for longer than the timeout
        other.execute(f"SELECT 1 FROM {prefix}conversations WHERE id = %s FOR UPDATE", (conv.id,))
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"no answer within timeout=1 s, so the statement was cancelled") as info:
            conv.add_assistant("while it is locked")
        assert 0.9 < time.monotonic() - started < 1.5  # cancelled at the timeout, not cut after it
        assert info.value.unsaved[0].text == "while it is locked"
        other.rollback()
    conv.flush()
    assert [m.text for m in store.open(conv.id).messages] == ["before", "while it is locked"]
    store.close()


def _convo_backends(psycopg, dsn: str, name: str) -> list[tuple[int, str]]:
    """(pid, wait event type) of each backend of connections named ``name``."""
    with psycopg.connect(dsn, autocommit=True) as other:
        return other.execute(
            "SELECT pid, coalesce(wait_event_type, '') FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchall()


def test_a_postgres_call_stuck_behind_a_lock_does_not_hold_up_the_other_threads(postgres_dsn):
    """Each call in flight has a connection of its own: while one thread's write waits for a row
    another client holds, other threads open and write other conversations, and the stuck write
    goes through once the row is free."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    prefix = f"p{uuid.uuid4().hex[:6]}"
    store = convo.PostgresConversationStore(f"{postgres_dsn}?application_name={prefix}", prefix=prefix + "_", timeout=5.0)
    stuck, free = store.create(model=MODEL), store.create(model=MODEL)
    with psycopg.connect(postgres_dsn) as other:
        other.execute(f"SELECT 1 FROM {prefix}_conversations WHERE id = %s FOR UPDATE", (stuck.id,))
        writer, errors = in_background(stuck.add_user, "waits for the row")
        for _ in range(200):  # until its UPDATE waits for the row lock
            if any(event == "Lock" for _, event in _convo_backends(psycopg, postgres_dsn, prefix)):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the stuck write never reached the server")
        reopened = store.open(free.id)  # with one shared connection, this waited for the stuck write
        reopened.add_user("goes through")
        assert writer.is_alive(), "the other thread's calls waited for the stuck one"
        assert len(_convo_backends(psycopg, postgres_dsn, prefix)) == 2
        other.rollback()
    writer.join(10)
    assert errors == []
    assert [m.text for m in store.open(stuck.id).messages] == ["waits for the row"]
    assert [m.text for m in store.open(free.id).messages] == ["goes through"]
    store.close()
    assert _convo_backends(psycopg, postgres_dsn, prefix) == []  # close() closed every connection


@pytest.mark.parametrize("limit", [1, 3])
def test_a_process_opens_at_most_max_connections_and_every_call_gets_one(postgres_dsn, limit):
    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    prefix = f"m{uuid.uuid4().hex[:6]}"
    store = convo.PostgresConversationStore(
        f"{postgres_dsn}?application_name={prefix}", prefix=prefix + "_", max_connections=limit
    )
    convs = [store.create(model=MODEL) for _ in range(8)]
    seen: list[int] = []

    def chat(conv: convo.Conversation) -> None:
        for i in range(10):
            conv.add_user(f"q{i}")
            conv.add_assistant(f"a{i}")
            seen.append(len(_convo_backends(psycopg, postgres_dsn, prefix)))
            assert len(store.open(conv.id)) == 2 * i + 2

    threads = [threading.Thread(target=chat, args=(c,)) for c in convs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(seen) == 80  # every thread's every turn was written and read back
    assert 1 <= max(seen) <= limit
    assert [len(store.open(c.id)) for c in convs] == [20] * 8
    store.close()


def _child_turn(store: convo.PostgresConversationStore, dsn: str, prefix: str, id: str, done) -> None:
    conv = store.open(id)  # the parent's pool, inherited: the child must open its own connection
    conv.add_assistant("from the child")
    store.close()  # closes the child's connections only
    done.put(len(convo.PostgresConversationStore(dsn, prefix=prefix).open(id)))


def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_alone(postgres_dsn):
    import multiprocessing

    pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    prefix = f"f{uuid.uuid4().hex[:6]}_"
    store = convo.PostgresConversationStore(postgres_dsn, prefix=prefix)
    conv = store.create(model=MODEL)
    conv.add_user("from the parent")  # the parent's connection is idle in the pool at the fork
    ctx = multiprocessing.get_context("fork")
    done = ctx.Queue()
    child = ctx.Process(target=_child_turn, args=(store, postgres_dsn, prefix, conv.id, done))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and done.get(timeout=5) == 2
    conv.reload()  # on the parent's own connection, still good
    conv.add_user("parent again")
    assert [m.text for m in store.open(conv.id).messages] == ["from the parent", "from the child", "parent again"]
    store.close()


def test_a_call_that_finds_every_connection_busy_fails_after_the_timeout(postgres_dsn):
    """With max_connections=1 and that connection's server stopped, a second thread's call waits
    ``timeout`` for it, then fails by name (and says what to raise) instead of waiting on."""
    import os
    import signal

    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    prefix = f"b{uuid.uuid4().hex[:6]}"
    store = convo.PostgresConversationStore(
        f"{postgres_dsn}?application_name={prefix}", prefix=prefix + "_", timeout=3.0, max_connections=1
    )
    hung, other = store.create(model=MODEL), store.create(model=MODEL)
    ((pid, _),) = _convo_backends(psycopg, postgres_dsn, prefix)
    os.kill(pid, signal.SIGSTOP)
    safety = threading.Timer(15, os.kill, (pid, signal.SIGCONT))
    safety.start()
    try:
        writer, errors = in_background(hung.add_user, "hangs")
        for _ in range(500):  # until the writer holds the one connection (white-box); cut at 3.3 s
            if not store._pool._idle:
                break
            time.sleep(0.002)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"all 1 connections stayed busy for 3 s.*max_connections=1"):
            other.add_user("waits for a connection")
        assert 2.9 < time.monotonic() - started < 3.3
        writer.join(5)
        assert isinstance(errors[0], StoreError) and "no answer within 3.3 s" in str(errors[0])
    finally:
        safety.cancel()
        os.kill(pid, signal.SIGCONT)
    other.flush()
    hung.flush()
    assert [m.text for m in store.open(other.id).messages] == ["waits for a connection"]
    assert [m.text for m in store.open(hung.id).messages] == ["hangs"]
    store.close()


def _idle_connections(store: convo.PostgresConversationStore, psycopg, dsn: str, prefix: str, n: int):
    """n conversations, and n connections left idle in the store's pool: a write to each, all held
    at once behind row locks another client takes, then let through."""
    convs = [store.create(model=MODEL) for _ in range(n)]
    with psycopg.connect(dsn) as other:
        other.execute(f"SELECT 1 FROM {prefix}_conversations WHERE id = ANY(%s) FOR UPDATE", ([c.id for c in convs],))
        runs = [in_background(c.add_user, "held") for c in convs]
        for _ in range(300):
            if sum(event == "Lock" for _, event in _convo_backends(psycopg, dsn, prefix)) == n:
                break
            time.sleep(0.01)
        else:
            pytest.fail(f"the {n} writes never waited at once")
        other.rollback()
    for thread, errors in runs:
        thread.join(10)
        assert errors == []
    assert len(_convo_backends(psycopg, dsn, prefix)) == n
    return convs


def test_connections_the_server_ended_while_idle_are_replaced_without_a_failed_call(postgres_dsn):
    """A connection the server let go while it sat in the pool (``pg_terminate_backend``, as an
    operator or ``idle_session_timeout`` does) is not handed to a call: the next calls open fresh
    ones and succeed, instead of failing once per pooled connection."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    prefix = f"t{uuid.uuid4().hex[:6]}"
    store = convo.PostgresConversationStore(f"{postgres_dsn}?application_name={prefix}", prefix=prefix + "_",
                                            max_connections=3, timeout=5.0)
    convs = _idle_connections(store, psycopg, postgres_dsn, prefix, 3)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (prefix,)
        ).fetchall()
    assert ended == [(True,)] * 3
    for _ in range(300):
        if not _convo_backends(psycopg, postgres_dsn, prefix):
            break
        time.sleep(0.01)
    for conv in convs:  # each of these used to fail on a connection the server had ended
        assert [m.text for m in store.open(conv.id).messages] == ["held"]
        conv.add_assistant("after")
    assert [[m.text for m in store.open(c.id).messages] for c in convs] == [["held", "after"]] * 3
    assert len(_convo_backends(psycopg, postgres_dsn, prefix)) == 1  # one call at a time: one new connection
    store.close()


def test_connections_unused_for_max_idle_are_closed(postgres_dsn):
    """A burst's extra connections do not stay open for good: past ``max_idle`` the next call
    closes them and opens one fresh (the server ends the others' backends)."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    prefix = f"i{uuid.uuid4().hex[:6]}"
    store = convo.PostgresConversationStore(f"{postgres_dsn}?application_name={prefix}", prefix=prefix + "_",
                                            max_connections=3, max_idle=0.5)
    convs = _idle_connections(store, psycopg, postgres_dsn, prefix, 3)
    assert [m.text for m in store.open(convs[0].id).messages] == ["held"]  # within max_idle: reused
    assert len(_convo_backends(psycopg, postgres_dsn, prefix)) == 3
    time.sleep(0.7)
    assert [m.text for m in store.open(convs[1].id).messages] == ["held"]
    for _ in range(200):
        if len(_convo_backends(psycopg, postgres_dsn, prefix)) == 1:
            break
        time.sleep(0.01)
    assert len(_convo_backends(psycopg, postgres_dsn, prefix)) == 1
    store.close()


def test_a_postgres_restart_costs_no_failed_call_once_the_server_is_back(postgres_server):
    """A restart (fast shutdown, then start) while the pool holds idle connections: every call after
    it succeeds, on fresh connections; the turns written before are all there."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    server = PostgresServer(postgres_server.folder, postgres_server.as_user)
    try:
        server.start()
        prefix = f"r{uuid.uuid4().hex[:6]}"
        store = convo.PostgresConversationStore(f"{server.dsn}?application_name={prefix}", prefix=prefix + "_",
                                                max_connections=2, timeout=5.0)
        convs = _idle_connections(store, psycopg, server.dsn, prefix, 2)
        server.stop()
        server.start()
        for conv in convs:
            conv.add_assistant("after the restart")
            assert [m.text for m in store.open(conv.id).messages] == ["held", "after the restart"]
        store.close()
    finally:
        server.remove()


def test_a_postgres_server_that_stops_answering_fails_within_the_timeout(postgres_dsn):
    """A server-side statement timeout cannot end a wait on a backend that answers nothing: the
    store cuts the connection, the turn stays in the handle, and flush writes it exactly once."""
    import os
    import signal

    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    prefix = f"s{uuid.uuid4().hex[:6]}_"
    store = convo.PostgresConversationStore(postgres_dsn, prefix=prefix, timeout=0.5)
    conv = store.create(model=MODEL)
    conv.add_user("before")
    with psycopg.connect(postgres_dsn, autocommit=True) as other:
        (pid,) = other.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'convo' AND query LIKE %s",
            (f"%{prefix}%",),
        ).fetchone()
    os.kill(pid, signal.SIGSTOP)  # the backend serving the store: the kernel still takes its bytes
    safety = threading.Timer(15, os.kill, (pid, signal.SIGCONT))  # without the cut, the call ends here
    safety.start()
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"no answer within 0\.55 s") as info:
            conv.add_assistant("while it hangs")
        assert time.monotonic() - started < 3
        assert info.value.unsaved[0].text == "while it hangs"
    finally:
        safety.cancel()
        os.kill(pid, signal.SIGCONT)
    conv.flush()  # a new connection; the write in doubt is looked up, then written or not resent
    assert [m.text for m in store.open(conv.id).messages] == ["before", "while it hangs"]
    conv.add_user("after")
    assert len(store.open(conv.id).messages) == 3
    store.close()


def test_closing_a_postgres_store_leaves_a_hung_call_bounded_by_its_timeout(postgres_dsn):
    """``close()`` does not wait for calls in flight, and they stay watched: a call hung on a
    stopped server still fails after ``timeout`` instead of waiting for the server."""
    import os
    import signal

    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    prefix = f"c{uuid.uuid4().hex[:6]}"
    store = convo.PostgresConversationStore(f"{postgres_dsn}?application_name={prefix}", prefix=prefix + "_", timeout=0.5)
    conv = store.create(model=MODEL)
    ((pid, _),) = _convo_backends(psycopg, postgres_dsn, prefix)
    ended: list[float] = []

    def write() -> None:
        started = time.monotonic()
        with pytest.raises(StoreError, match="no answer within 0.55 s"):
            conv.add_user("hangs")
        ended.append(time.monotonic() - started)

    os.kill(pid, signal.SIGSTOP)
    safety = threading.Timer(15, os.kill, (pid, signal.SIGCONT))
    safety.start()
    try:
        writer = threading.Thread(target=write)
        writer.start()
        for _ in range(500):  # until the writer holds the connection (white-box)
            if not store._pool._idle:
                break
            time.sleep(0.002)
        store.close()  # at once, with the call in flight
        writer.join(20)
        assert ended and ended[0] < 3
    finally:
        safety.cancel()
        with contextlib.suppress(ProcessLookupError):  # its connection is closed: the backend may be gone
            os.kill(pid, signal.SIGCONT)
    with pytest.raises(StoreError, match="closed"):
        store.open(conv.id)


def test_a_cancelled_async_turn_leaves_at_once_and_its_write_goes_on_in_its_thread(own_redis, fresh, caplog):
    """Cancelled while its store write hangs, an async turn raises CancelledError at once: the
    event loop is not held up repeating the write the worker thread is already making. That write
    fails after the timeout, says so in the log, and the handle keeps the turn for flush."""
    import logging
    import signal

    store = convo.RedisConversationStore(own_redis.url, prefix=f"x{uuid.uuid4().hex[:6]}:", timeout=1.0)

    async def run() -> tuple[float, list[str]]:
        conv = await store.acreate(model=MODEL, client=quick_aclient(fresh))
        await conv.asend("one")
        own_redis.proc.send_signal(signal.SIGSTOP)
        try:
            task = asyncio.create_task(conv.asend("two"))
            while len(fresh.requests) < 2:  # the reply is in; the write is what waits
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            left_after = time.monotonic() - started
            for _ in range(100):  # the thread's write times out after 1 s and logs it
                if "writing the turn to the store failed after its caller left" in caplog.text:
                    break
                await asyncio.sleep(0.05)
        finally:
            own_redis.proc.send_signal(signal.SIGCONT)
        await conv.aflush()
        stored = await store.aopen(conv.id)
        assert stored.to_dict() == conv.to_dict()
        return left_after, [m.text for m in stored.messages if m.role == "user"]

    with caplog.at_level(logging.WARNING, logger="convo"):
        left_after, users = asyncio.run(run())
    assert left_after < 0.5  # not the write's 1 s timeout (it was twice that: the write, done again)
    assert "writing the turn to the store failed after its caller left" in caplog.text and "conv.flush()" in caplog.text
    assert users == ["one", "two"]  # written once, by flush
    store.close()


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_a_write_the_server_applied_after_its_timeout_is_not_written_again_after_others_wrote(
    kind, request, tmp_path
):
    """Handle A's write times out, the server applies it once it runs again, and handle B writes
    after it: A's flush still recognises its write (the store keeps the tokens of the last writes,
    not only the last one's), so A never stores the turn twice; A's next write is a conflict whose
    unsaved part is only what came after."""
    import os
    import signal

    prefix = f"d{uuid.uuid4().hex[:6]}"
    if kind == "redis":
        server = RedisServer(str(tmp_path), persist=True)
        server.start()
        request.addfinalizer(server.stop)
        store_a = convo.RedisConversationStore(server.url, prefix=prefix + ":", timeout=0.5)
        store_b = convo.RedisConversationStore(server.url, prefix=prefix + ":", timeout=0.5)
        pid = server.proc.pid
    else:
        psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
        dsn = request.getfixturevalue("postgres_dsn")
        store_a = convo.PostgresConversationStore(f"{dsn}?application_name={prefix}", prefix=prefix + "_", timeout=0.5)
        store_b = convo.PostgresConversationStore(dsn, prefix=prefix + "_", timeout=0.5)
        store_a.list()
        with psycopg.connect(dsn, autocommit=True) as other:
            (pid,) = other.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (prefix,)).fetchone()
    a = store_a.create(model=MODEL)
    a.add_user("q")  # a first append: Redis has its script from now on
    b = store_b.open(a.id)
    os.kill(pid, signal.SIGSTOP)  # A's server (Redis) or backend (PostgreSQL) takes the write but does not answer
    try:
        with pytest.raises(StoreError):
            a.add_assistant("a")
    finally:
        os.kill(pid, signal.SIGCONT)  # ... and applies it now
    for _ in range(100):
        if len(store_b.open(a.id).messages) == 2:
            break
        time.sleep(0.05)
    assert [m.text for m in store_b.open(a.id).messages] == ["q", "a"]
    b.reload()
    b.add_user("b")  # another write after A's: the last token is B's now
    a.flush()  # A's write is found among the recent ones: nothing is sent again, no conflict
    assert [m.text for m in store_b.open(a.id).messages] == ["q", "a", "b"]
    with pytest.raises(ConflictError) as info:
        a.add_assistant("c")  # A has not seen B's write
    assert [m.text for m in info.value.unsaved] == ["c"]
    a.reload()
    a.extend(info.value.unsaved)
    assert [m.text for m in store_b.open(a.id).messages] == ["q", "a", "b", "c"]
    store_a.close()
    store_b.close()
