"""Conversation stores (convo.stores): every backend against a real server (SQLite file, the
session's redis-server and PostgreSQL), through the public API, with turns sent to the simulator
over HTTP by the official SDK."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convo
from convo import ConflictError, ConversationFileError, InvalidInputError, Summarize
from tests.helpers import MODEL, quick_aclient, quick_client

BACKENDS = ["sqlite", "redis", "postgres"]


def _open_store(kind: str, where: str, tag: str):
    if kind == "sqlite":
        return convo.SQLiteConversationStore(where)
    if kind == "redis":
        return convo.RedisConversationStore(where, prefix=f"t{tag}:")
    return convo.PostgresConversationStore(where, prefix=f"t{tag}_")


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    """(kind, url or path, tag): one fresh store per test (a new file, key prefix or table prefix)."""
    kind = request.param
    if kind == "sqlite":
        where = str(tmp_path / "chats.db")
    elif kind == "redis":
        where = request.getfixturevalue("redis_url")
    else:
        pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
        where = request.getfixturevalue("postgres_dsn")
    return kind, where, uuid.uuid4().hex[:10]


@pytest.fixture
def store(backend):
    s = _open_store(*backend)
    yield s
    s.close()


def _same(a, b):
    """Two conversations hold the same history, pins, summary and receipts."""
    assert a.to_dict() == b.to_dict()
    assert a.receipts == b.receipts


# -- create, open, each turn written by itself ------------------------------------------------------


def test_a_stored_conversation_comes_back_whole(store, fresh):
    client = quick_client(fresh)
    conv = store.create("You are terse.", model=MODEL, user="ada", metadata={"plan": "pro"}, client=client,
                        budget=4000)
    assert isinstance(store, convo.ConversationStore)
    assert isinstance(conv, convo.Conversation) and isinstance(conv.id, str)
    conv.add_user("My name is Ada.", pinned=True)
    conv.add_assistant("Hello, Ada.")
    conv.send("What is the capital of France?")
    conv.send("And of Italy?")
    again = store.open(conv.id, client=client)
    _same(conv, again)
    assert len(again) == 6 and again.pinned == [0, 1] and len(again.receipts) == 2
    assert again.receipts[-1].input_tokens and again.receipts[-1].cost is not None
    info = store.info(conv.id)
    assert (info.id, info.user, info.metadata, info.messages) == (conv.id, "ada", {"plan": "pro"}, 6)
    assert info.created <= info.updated
    assert again.send("And of Spain?") and len(store.open(conv.id)) == 8


def test_a_tool_loop_turn_is_one_write_with_all_its_steps_and_receipts(store, fresh):
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    conv = store.create(model=MODEL, client=quick_client(fresh), tools=[weather])
    reply = conv.send("What is the weather in Paris and in Rome? Use the tool for each city.")
    assert len(reply.steps) >= 2 and len(conv.receipts) == len(reply.steps)  # several calls, one turn
    before = store.info(conv.id).version
    again = store.open(conv.id, client=conv.client, tools=[weather])
    _same(conv, again)
    assert [b.type for b in again.messages[1].content if b.type == "tool_use"]
    again.send("Thanks. And in Oslo?")
    assert store.info(conv.id).version == before + 1  # the whole second turn: one write
    _same(again, store.open(conv.id, tools=[weather]))
    with pytest.raises(ConflictError):  # the other handle wrote since: reload, then go on
        conv.add_user("A turn from the stale handle")
    conv.reload()
    assert conv.tools == [weather] and len(conv.send("And in Lima?").steps) >= 1  # its tools kept


def test_each_completed_turn_is_written_and_a_failed_one_is_not(store, fresh):
    client = quick_client(fresh)
    conv = store.create(model=MODEL, client=client)
    conv.send("one")
    before = store.info(conv.id)
    fresh.faults = ["400"]
    with pytest.raises(convo.BadRequestError):
        conv.send("two")
    assert len(conv) == 2 and store.info(conv.id) == before  # nothing written for the failed turn
    text = "".join(conv.stream("three"))
    assert text and len(store.open(conv.id)) == 4
    it = conv.stream("four")
    next(it)
    assert len(store.open(conv.id)) == 4  # a turn still streaming is not written
    it.close()  # abandoned: taken back, nothing written
    assert len(conv) == 4 and store.info(conv.id).version == before.version + 1


def test_asend_and_astream_write_their_turns(store, fresh):
    async def chat():
        conv = store.create(model=MODEL, client=quick_aclient(fresh))
        await conv.asend("hello")
        async for _ in conv.astream("again"):
            pass
        return conv

    conv = asyncio.run(chat())
    _same(conv, store.open(conv.id))
    assert len(conv) == 4


def test_undo_reset_pins_and_the_summary_are_written(store, fresh):
    client = quick_client(fresh)
    conv = store.create("You are helpful.", model=MODEL, client=client, budget=2000,
                        strategy=Summarize(trigger=0.6, keep_last=2, max_summary_tokens=150))
    for i in range(8):
        conv.send(f"Fact {i}: room {i} is on floor {i % 3}. " * 6)
    assert conv.summary is not None
    _same(conv, store.open(conv.id, client=client))
    conv.pin(0)
    conv.undo()
    conv.unpin(0)
    conv.pin(2)
    _same(conv, store.open(conv.id))
    conv.reset()
    conv.extend([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    _same(conv, store.open(conv.id))
    assert len(store.open(conv.id)) == 2


def test_a_fork_is_not_in_the_store(store):
    conv = store.create(model=MODEL)
    conv.add_user("hi")
    twin = conv.fork()
    twin.add_assistant("not stored")
    assert twin.id is None and len(store.open(conv.id)) == 1
    assert convo.Conversation(model=MODEL).id is None
    with pytest.raises(convo.InvalidConfigError, match="not in a store"):
        twin.reload()


# -- optimistic concurrency -----------------------------------------------------------------------


def test_the_second_writer_gets_a_conflict_and_nothing_is_lost(store, fresh):
    client = quick_client(fresh)
    a = store.create(model=MODEL, client=client, user="ada")
    a.send("first")
    b = store.open(a.id, client=client)
    a.send("from a")
    with pytest.raises(ConflictError) as info:
        b.send("from b")
    err = info.value
    assert isinstance(err, convo.ConvoError) and err.conversation_id == a.id
    assert (err.expected, err.actual) == (2, 3) and "reload" in str(err)
    assert [m.role for m in err.unsaved] == ["user", "assistant"] and err.unsaved[0].text == "from b"
    _same(a, store.open(a.id))  # a's turn is stored, b's wrote nothing
    with pytest.raises(ConflictError):
        b.add_user("still stale")  # every later write of the stale handle conflicts too
    b.reload()
    _same(a, b)
    b.extend(err.unsaved)  # keep the reply already paid for ...
    b.send("and a retry")  # ... or send again
    stored = store.open(a.id)
    assert [m.text for m in stored.messages if m.role == "user"] == ["first", "from a", "from b", "and a retry"]
    with pytest.raises(ConflictError):
        a.send("a is stale now")
    a.reload()
    _same(a, stored)


def test_writing_to_a_deleted_conversation_is_a_conflict(store):
    conv = store.create(model=MODEL, user="ada")
    assert store.delete(conv.id) and not store.delete(conv.id)
    with pytest.raises(ConflictError, match="deleted") as info:
        conv.add_user("hello?")
    assert info.value.actual is None
    with pytest.raises(ConversationFileError, match="no conversation"):
        store.open(conv.id)


WORKER = textwrap.dedent("""
    import json, os, sys, time
    import convo
    kind, where, tag, conv_id, name, turns, barrier, procs = sys.argv[1:9]
    if kind == "sqlite":
        store = convo.SQLiteConversationStore(where)
    elif kind == "redis":
        store = convo.RedisConversationStore(where, prefix="t" + tag + ":")
    else:
        store = convo.PostgresConversationStore(where, prefix="t" + tag + "_")
    conv = store.open(conv_id)
    open(os.path.join(barrier, name), "w").close()  # opened: wait until every worker has
    while len(os.listdir(barrier)) < int(procs):
        time.sleep(0.01)
    conflicts = written = 0
    for i in range(int(turns)):
        pair = [{"role": "user", "content": f"{name} {i}"}, {"role": "assistant", "content": f"ok {name} {i}"}]
        while True:
            try:
                conv.extend(pair)
                written += 1
                break
            except convo.ConflictError as exc:
                assert [m.text for m in exc.unsaved] == [p["content"] for p in pair]
                conflicts += 1
                conv.reload()
    print(json.dumps({"conflicts": conflicts, "written": written}))
""")


def test_many_processes_on_one_conversation_lose_no_turn_and_surface_every_conflict(store, backend, tmp_path):
    hammer(store, backend, tmp_path)


def hammer(store, backend, tmp_path) -> None:
    """4 processes x 15 turns on one conversation of ``store`` (``backend``: how each process
    opens it): every turn stored once, in each process's order, and every lost write raised."""
    conv = store.create(model=MODEL, user="shared")
    procs, turns = 4, 15
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, *backend, conv.id, f"w{p}", str(turns),
                                 str(barrier), str(procs)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for p in range(procs)]
    results = []
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
        results.append(json.loads(out))
    final = store.open(conv.id)
    users = sorted(m.text for m in final.messages if m.role == "user")
    assert users == sorted(f"w{p} {i}" for p in range(procs) for i in range(turns))  # each turn once
    for p in range(procs):  # each process's turns in its own order, each followed by its reply
        mine = [i for i, m in enumerate(final.messages) if m.text.startswith(f"w{p} ")]
        assert [final.messages[i].text for i in mine] == [f"w{p} {i}" for i in range(turns)]
        assert all(final.messages[i + 1].text == "ok " + final.messages[i].text for i in mine)
    assert sum(r["written"] for r in results) == procs * turns
    # all opened version 1 before any wrote: one first write landed, every other one conflicted
    assert sum(r["conflicts"] for r in results) >= procs - 1
    # every write that did not land raised: the version counts exactly the writes that did
    assert store.info(conv.id).version == 1 + procs * turns


# -- listing and deleting ---------------------------------------------------------------------------


def test_list_pages_newest_first_per_user(store):
    ids = {u: [store.create(model=MODEL, user=u, metadata={"n": i}).id for i in range(5)] for u in ("ada", "bob")}
    store.create(model=MODEL)  # no owner
    page = store.list(user="ada", limit=2)
    assert [c.id for c in page] == ids["ada"][::-1][:2] and all(c.user == "ada" for c in page)
    rest = store.list(user="ada", after=page[-1].id)
    assert [c.id for c in rest] == ids["ada"][::-1][2:]
    assert [c.metadata["n"] for c in rest] == [2, 1, 0]
    assert len(store.list()) == 11 and len(store.list(limit=3)) == 3
    for bad in (0, -1, True, 2.0, 10_001, 10**30):  # 10**30 reached the database (OverflowError)
        with pytest.raises(InvalidInputError, match="limit must be an int from 1 to 10,000"):
            store.list(limit=bad)
    assert len(store.list(limit=10_000)) == 11
    for bad in (0, "", [], False):  # falsy, but not a JSON object: refused, nothing created
        with pytest.raises(InvalidInputError, match="metadata must be a JSON object"):
            store.create(model=MODEL, metadata=bad)
    assert len(store.list()) == 11


def test_delete_user_removes_every_conversation_and_receipt_of_that_user(store, fresh):
    client = quick_client(fresh)
    ada = [store.create(model=MODEL, user="ada", client=client) for _ in range(3)]
    bob = store.create(model=MODEL, user="bob", client=client)
    for conv in (*ada, bob):
        conv.send("hello")
    assert store.delete_user("ada") == 3
    assert store.list(user="ada") == [] and [c.id for c in store.list()] == [bob.id]
    for conv in ada:
        with pytest.raises(ConversationFileError):
            store.open(conv.id)
    kept = store.open(bob.id)
    assert len(kept) == 2 and len(kept.receipts) == 1
    again = store.create(model=MODEL, user="ada")  # the user can come back with a clean slate
    assert [c.id for c in store.list(user="ada")] == [again.id]
    assert store.delete_user("nobody") == 0
    with pytest.raises(InvalidInputError):
        store.delete_user("")


def test_receipts_of_a_deleted_user_are_gone_from_the_backend(backend, fresh):
    """Looked for in the backend itself, not only through the store."""
    kind, where, tag = backend
    store = _open_store(kind, where, tag)
    conv = store.create(model=MODEL, user="eve", client=quick_client(fresh))
    conv.send("secret")
    store.delete_user("eve")
    if kind == "sqlite":
        import sqlite3

        with sqlite3.connect(where) as db:
            counts = [db.execute(f"SELECT count(*) FROM convo_{t}").fetchone()[0]
                      for t in ("conversations", "chunks", "receipts")]
    elif kind == "redis":
        import redis

        counts = [len(redis.Redis.from_url(where).keys(f"t{tag}:*"))]
    else:
        import psycopg

        with psycopg.connect(where) as db:
            counts = [db.execute(f"SELECT count(*) FROM t{tag}_{t}").fetchone()[0]
                      for t in ("conversations", "chunks", "receipts")]
    assert set(counts) == {0}
    store.close()


# -- the stores themselves --------------------------------------------------------------------------


def test_the_sqlite_file_is_private_and_opening_is_one_indexed_read(tmp_path):
    path = tmp_path / "chats.db"
    store = convo.SQLiteConversationStore(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for _ in range(50):
        other = store.create(model=MODEL)
        other.extend([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    conv = store.create(model=MODEL)
    for i in range(50):
        conv.extend([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}])
    import sqlite3

    statements: list[str] = []
    db = sqlite3.connect(path)
    for pool in (store._reads, store._writes):  # white-box: what the store runs on its two connections
        conn = pool.take(1)
        conn.set_trace_callback(statements.append)
        pool.give(conn, True)
    opened = store.open(conv.id)
    assert len(opened) == 100
    assert len(statements) == 1 and statements[0].startswith("SELECT")
    plan = " ".join(r[-1] for r in db.execute("EXPLAIN QUERY PLAN " + statements[0]))
    assert "SEARCH" in plan and "SCAN" not in plan.replace("SCAN SUBQUERY", ""), plan
    statements.clear()
    conv.extend([{"role": "user", "content": "n"}, {"role": "assistant", "content": "m"}])
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == 1 and not any(s.startswith("DELETE") for s in statements)  # an append, no rewrite
    store.close()
    with pytest.raises(ConversationFileError, match="closed"):
        store.open(conv.id)


def test_unreachable_servers_are_named_without_their_password():
    with pytest.raises(ConversationFileError) as info:
        convo.RedisConversationStore("redis://:hunter2@127.0.0.1:1/0", timeout=0.5)
    assert "hunter2" not in str(info.value) and "Redis" in str(info.value)
    with pytest.raises(ConversationFileError) as info:  # a password in the query, percent-encoded too
        convo.RedisConversationStore("redis://127.0.0.1:1/0?password=hunter%232", timeout=0.5)
    assert "hunter" not in str(info.value) and "hunter" not in info.value.store
    pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    with pytest.raises(ConversationFileError) as info:
        convo.PostgresConversationStore("postgresql://ada:hunter2@127.0.0.1:1/db", timeout=1)
    assert "hunter2" not in str(info.value) and "PostgreSQL" in str(info.value)
    assert "hunter2" not in repr(info.value)


def test_bad_input_is_refused_before_anything_is_written(store):
    with pytest.raises(InvalidInputError):
        store.create(model=MODEL, user="")
    with pytest.raises(InvalidInputError):
        store.create(model=MODEL, metadata={"f": object()})
    with pytest.raises(InvalidInputError):
        store.open("")
    # PostgreSQL text cannot hold a NUL (it failed there as a StoreError); UTF-8 no lone surrogate
    with pytest.raises(InvalidInputError, match="NUL"):
        store.create(model=MODEL, user="ada\x00")
    with pytest.raises(InvalidInputError, match="NUL"):
        store.list(user="\x00")
    with pytest.raises(InvalidInputError, match="surrogate"):
        store.create(model=MODEL, user="ada\ud800")
    assert store.list() == []
    with pytest.raises(ConversationFileError, match="no conversation"):
        store.open("0" * 28)


def test_a_strategy_that_cannot_be_stored_is_given_back_at_open(store):
    def window(state):
        return convo.SlidingWindow()(state)

    conv = store.create(model=MODEL, strategy=window)
    conv.add_user("hi")
    with pytest.raises(ConversationFileError, match="strategy"):
        store.open(conv.id)
    assert store.open(conv.id, strategy=window).strategy is window


# -- the invariant: the store holds what the handle holds -------------------------------------------

OPS = st.lists(st.sampled_from(["pair", "pair", "pair", "undo", "pin", "unpin", "reset"]), max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_after_any_sequence_of_edits_the_store_holds_the_conversation(tmp_path, ops):
    store = convo.SQLiteConversationStore(tmp_path / f"{uuid.uuid4().hex}.db")
    conv = store.create("Be brief.", model=MODEL)
    for n, op in enumerate(ops):
        if op == "pair":
            conv.add_user(f"question {n}")
            conv.add_assistant(f"answer {n}")
        elif op == "undo" and len(conv):
            conv.undo()
        elif op in ("pin", "unpin") and len(conv):
            getattr(conv, op)(n % len(conv))
        elif op == "reset":
            conv.reset()
        _same(conv, store.open(conv.id))
    store.close()


def test_stored_token_counts_are_reused_only_by_the_counter_that_made_them(store):
    conv = store.create(model=MODEL)
    conv.extend([{"role": r, "content": f"message {i} " * (i + 1)} for i, r in enumerate(["user", "assistant"] * 5)])
    assert store.open(conv.id).total_tokens == conv.total_tokens
    other = convo.OfflineCounter(text_factor=2.0)
    reopened = store.open(conv.id, counter=other)
    expected = convo.Conversation.from_dict(conv.to_dict(), counter=other).total_tokens
    assert reopened.total_tokens == expected != conv.total_tokens
    reopened.add_user("written with another counter")  # stored as unknown: recounted at open
    assert store.open(conv.id).total_tokens == convo.Conversation.from_dict(reopened.to_dict()).total_tokens


def test_the_async_twins_do_what_the_sync_methods_do(store, fresh):
    async def chat() -> None:
        client = quick_aclient(fresh)
        conv = await store.acreate("Be brief.", model=MODEL, user="grace", metadata={"n": 1}, client=client)
        await conv.asend("hello")
        other = await store.aopen(conv.id, client=client)
        assert other.to_dict() == conv.to_dict()
        await other.asend("from the other handle")
        with pytest.raises(ConflictError):
            await conv.asend("stale")
        await conv.areload()
        assert conv.to_dict() == other.to_dict()
        await conv.aflush()  # nothing pending: a no-op
        info = await store.ainfo(conv.id)
        assert (info.user, info.metadata, info.messages) == ("grace", {"n": 1}, 4)
        assert [i.id for i in await store.alist(user="grace")] == [conv.id]
        assert await store.adelete(conv.id) is True and await store.adelete(conv.id) is False
        await store.acreate(model=MODEL, user="grace")
        assert await store.adelete_user("grace") == 1

    asyncio.run(chat())


def test_metadata_can_be_replaced_without_disturbing_open_handles(store):
    conv = store.create(model=MODEL, user="ada", metadata={"title": "draft"})
    conv.add_user("hello")
    before = store.info(conv.id)
    info = store.set_metadata(conv.id, {"title": "Trip to Rome", "tags": ["travel"]})
    assert info.metadata == {"title": "Trip to Rome", "tags": ["travel"]} and info.version == before.version
    assert info.updated >= before.updated
    conv.add_assistant("hi")  # the handle's version still holds: no conflict
    assert [c.metadata for c in store.list(user="ada")] == [{"title": "Trip to Rome", "tags": ["travel"]}]
    for bad in (["not", "an", "object"], {"x": float("nan")}, {"x": object()}, {"x": "\ud800"}):
        with pytest.raises(InvalidInputError, match="metadata must be a JSON object"):
            store.set_metadata(conv.id, bad)
    assert store.info(conv.id).metadata == {"title": "Trip to Rome", "tags": ["travel"]}  # nothing changed
    with pytest.raises(ConversationFileError, match="no conversation"):
        store.set_metadata("0" * 28, {"title": "x"})
    assert asyncio.run(store.aset_metadata(conv.id, {})).metadata == {}
    assert len(store.open(conv.id)) == 2


CHUNK_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("extend"), st.integers(1, 150)),  # one write: up to three chunks
        st.tuples(st.sampled_from(["undo", "undo", "reset", "pin", "reopen"]), st.integers(0, 1000)),
    ),
    max_size=12,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=CHUNK_OPS)
def test_cuts_inside_a_chunk_and_reopened_handles_keep_the_store_exact(backend, ops):
    """Writes of many messages (chunks of up to 64), undos that split a chunk, resets, pins, and
    handles opened halfway that write on: after each, opening gives back what the handle holds."""
    kind, where, _ = backend
    store = _open_store(kind, where, uuid.uuid4().hex[:10])
    conv = store.create("Be brief.", model=MODEL)
    for step, (op, n) in enumerate(ops):
        if op == "extend":
            role = "user" if not len(conv) or conv.messages[-1].role == "assistant" else "assistant"
            roles = [role, "assistant" if role == "user" else "user"]
            conv.extend([{"role": roles[i % 2], "content": f"m{step}.{i}"} for i in range(n)])
        elif op == "undo" and len(conv):
            for _ in range(1 + n % 3):  # one to three exchanges, from the end of a chunk or inside it
                if len(conv):
                    conv.undo()
        elif op == "reset":
            conv.reset()
        elif op == "pin" and len(conv):
            conv.pin(n % len(conv))
        elif op == "reopen":
            conv = store.open(conv.id)
        fresh = store.open(conv.id)
        _same(conv, fresh)
        assert store.info(conv.id).messages == len(conv)
    store.close()


def test_a_turn_is_one_stored_chunk_and_a_short_history_reads_back_whole(tmp_path):
    """White-box, SQLite: each write is one row, a write of more than 64 messages several, and a
    row missing from the file is reported as corruption, not opened as a shorter conversation."""
    import sqlite3

    path = tmp_path / "chats.db"
    store = convo.SQLiteConversationStore(path)
    conv = store.create(model=MODEL)
    conv.extend([{"role": ("user", "assistant")[i % 2], "content": f"m{i}"} for i in range(130)])
    for i in range(5):
        conv.extend([{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}])
    with sqlite3.connect(path) as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM convo_chunks WHERE conv = ? ORDER BY seq", (conv.id,))]
        assert seqs == [0, 64, 128, 130, 132, 134, 136, 138]
        db.execute("DELETE FROM convo_chunks WHERE conv = ? AND seq = 64", (conv.id,))
    with pytest.raises(ConversationFileError, match="corrupt"):
        store.open(conv.id)
    store.close()


def test_a_redis_ttl_expires_a_conversation_after_its_last_write(redis_url, fresh):
    import time

    import redis

    prefix = f"ttl{uuid.uuid4().hex[:8]}:"
    store = convo.RedisConversationStore(redis_url, prefix=prefix, ttl=1.0)
    assert "ttl=1" in repr(store)
    conv = store.create(model=MODEL, user="ada", client=quick_client(fresh))
    kept = store.create(model=MODEL, user="ada")
    conv.send("hello")
    store.set_metadata(kept.id, {"title": "kept alive"})
    raw = redis.Redis.from_url(redis_url)
    keys = raw.keys(f"{prefix}[ckrn]:{conv.id}")  # header, chunks, receipts, counts: the same clock
    assert len(keys) == 4 and all(0 < raw.pttl(k) <= 1000 for k in keys)
    time.sleep(0.6)
    store.set_metadata(kept.id, {"title": "still alive"})  # a write: its clock starts again
    conv.add_user("and again")
    time.sleep(0.6)  # 1.2 s after the first writes, 0.6 s after the last
    assert len(store.open(conv.id)) == 3
    time.sleep(1.2)
    with pytest.raises(ConversationFileError, match="no conversation"):
        store.open(conv.id)
    assert store.list(user="ada") == []  # expired ones are left out, and dropped from the index
    assert raw.zcard(f"{prefix}u:ada") == 0 and raw.keys(f"{prefix}[ckrn]:*") == []
    with pytest.raises(ConflictError, match="deleted"):
        conv.add_assistant("too late")
    forever = convo.RedisConversationStore(redis_url, prefix=prefix)
    assert raw.pttl(f"{prefix}c:{forever.create(model=MODEL).id}") == -1  # no ttl: never expires
    for bad in (0, -1, float("nan"), float("inf"), "60", True):
        with pytest.raises(convo.InvalidConfigError, match="ttl"):
            convo.RedisConversationStore(redis_url, prefix=prefix, ttl=bad)
    store.close()
    forever.close()


def test_delete_idle_removes_what_was_not_written_for_that_long(store, fresh):
    import time

    idle = store.create(model=MODEL, user="ada", client=quick_client(fresh))
    idle.send("an old question")
    busy = store.create(model=MODEL, user="ada", client=quick_client(fresh))
    titled = store.create(model=MODEL, user="bob")
    time.sleep(0.6)
    busy.send("a new question")
    store.set_metadata(titled.id, {"title": "renamed: a write too"})
    new = store.create(model=MODEL, user="bob")
    for bad in (-1, float("nan"), float("inf"), "1", True, None):
        with pytest.raises(InvalidInputError, match="seconds"):
            store.delete_idle(bad)
    assert len(store.list()) == 4  # nothing went
    assert store.delete_idle(0.5) == 1
    with pytest.raises(ConversationFileError, match="no conversation"):
        store.open(idle.id)
    assert sorted(i.id for i in store.list()) == sorted([busy.id, titled.id, new.id])
    with pytest.raises(ConflictError, match="deleted"):
        idle.add_user("too late")
    assert asyncio.run(store.adelete_idle(0)) == 3 and store.list() == []


def test_a_redis_page_skips_expired_conversations_and_is_still_full(redis_url):
    import time

    prefix = f"ttl{uuid.uuid4().hex[:8]}:"
    short = convo.RedisConversationStore(redis_url, prefix=prefix, ttl=0.3)
    lasting = convo.RedisConversationStore(redis_url, prefix=prefix)  # same keys, no ttl
    kept = [lasting.create(model=MODEL, user="ada").id for _ in range(3)]
    expiring = [short.create(model=MODEL, user="ada").id for _ in range(4)]  # newer: listed first
    time.sleep(0.5)
    page = lasting.list(user="ada", limit=2)
    assert [i.id for i in page] == kept[::-1][:2]  # two live ones, past the four expired
    assert [i.id for i in lasting.list(user="ada", limit=2, after=page[-1].id)] == kept[:1]
    assert not set(expiring) & {i.id for i in lasting.list(limit=100)}
    short.close()
    lasting.close()


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "5", True, None])
def test_every_store_checks_its_timeout_before_it_connects(bad, tmp_path):
    """A timeout that is not a positive finite number of seconds is refused up front, by name,
    with nothing created (no file, no connection: these addresses would fail to connect)."""
    path = tmp_path / "c.db"
    cases = [
        ("busy_timeout", lambda: convo.SQLiteConversationStore(path, busy_timeout=bad)),
        ("timeout", lambda: convo.SQLiteStore(tmp_path / "s.db", timeout=bad)),
        ("timeout", lambda: convo.RedisConversationStore("redis://127.0.0.1:1/0", timeout=bad)),
        ("timeout", lambda: convo.RedisStore("redis://127.0.0.1:1/0", timeout=bad)),
    ]
    if importlib.util.find_spec("psycopg") is not None:
        cases.append(("timeout", lambda: convo.PostgresConversationStore("postgresql://x@127.0.0.1:1/db", timeout=bad)))
        cases.append(("max_idle", lambda: convo.PostgresConversationStore("postgresql://x@127.0.0.1:1/db", max_idle=bad)))
    for name, make in cases:
        with pytest.raises(convo.InvalidConfigError, match=rf"{name}.*seconds"):
            make()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [0, -1, 1001, 2.0, "4", True, None])
def test_a_postgres_store_checks_max_connections_before_it_connects(bad):
    pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    with pytest.raises(convo.InvalidConfigError, match=r"max_connections must be an int from 1 to 1000"):
        convo.PostgresConversationStore("postgresql://x@127.0.0.1:1/db", max_connections=bad)  # would not connect


@pytest.mark.parametrize("where", ["dsn", "PGOPTIONS"])
def test_a_postgres_store_keeps_the_server_settings_the_dsn_asks_for(postgres_dsn, where, monkeypatch):
    """A dsn's ``options`` (or, with none, ``PGOPTIONS``) reach the server beside the store's own
    settings: the tables go to the schema its ``search_path`` names, and ``timeout`` still ends a
    statement stuck behind a lock."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    schema = f"tenant_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    if where == "dsn":
        dsn = f"{postgres_dsn}?options=-c%20search_path%3D{schema}"
    else:
        monkeypatch.setenv("PGOPTIONS", f"-c search_path={schema}")
        dsn = postgres_dsn
    prefix = f"k{uuid.uuid4().hex[:6]}_"
    store = convo.PostgresConversationStore(dsn, prefix=prefix, timeout=1.0)
    conv = store.create(model=MODEL)
    conv.add_user("hello")
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        where_found = admin.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = %s", (f"{prefix}conversations",)
        ).fetchall()
        assert where_found == [(schema,)]
        with admin.transaction():
            admin.execute(f"SELECT 1 FROM {schema}.{prefix}conversations WHERE id = %s FOR UPDATE", (conv.id,))
            with pytest.raises(convo.StoreError, match=r"no answer within timeout=1 s, so the statement was cancelled"):
                conv.add_assistant("waits for the row")
    conv.flush()
    assert [m.text for m in store.open(conv.id).messages] == ["hello", "waits for the row"]
    store.close()


@pytest.mark.parametrize(("prepare", "prepared"), [(None, True), (False, False), (True, True)])
def test_a_direct_postgres_store_prepares_its_statements_unless_told_not_to(postgres_dsn, prepare, prepared):
    """On a direct connection (no pooler between) the store's statements are prepared once per
    connection; ``prepare=False`` leaves them unprepared (white-box: the session's prepared
    statements, read on the store's own connection)."""
    pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    store = convo.PostgresConversationStore(postgres_dsn, prefix=f"d{uuid.uuid4().hex[:6]}_", prepare=prepare)
    conv = store.create(model=MODEL)
    for i in range(6):  # past psycopg's own threshold (5 uses) too
        conv.add_user(f"q{i}")
        assert len(store.open(conv.id).messages) == i + 1
    count = store._call("count", lambda c: c.execute("SELECT count(*) FROM pg_prepared_statements", prepare=False).fetchone()[0])
    assert (count > 0) is prepared
    store.close()


@pytest.mark.parametrize("bad", [0, 1, "yes", "false"])
def test_a_postgres_store_checks_prepare_before_it_connects(bad):
    pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    with pytest.raises(convo.InvalidConfigError, match=r"prepare must be True, False or None"):
        convo.PostgresConversationStore("postgresql://x@127.0.0.1:1/db", prepare=bad)  # would not connect


def test_a_postgres_store_probes_idle_connections_unless_the_dsn_says_how(postgres_dsn):
    """TCP keepalives after a minute idle (a NAT that forgets quiet flows keeps them; a peer gone
    silently is found out), unless the dsn sets its own (white-box: the store's own socket)."""
    import socket

    pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    if not hasattr(socket, "TCP_KEEPIDLE"):
        pytest.skip("no TCP_KEEPIDLE on this platform")
    for dsn, idle in ((postgres_dsn, 60), (f"{postgres_dsn}?keepalives_idle=30", 30)):
        store = convo.PostgresConversationStore(dsn, prefix=f"k{uuid.uuid4().hex[:6]}_")
        with socket.socket(fileno=os.dup(store._call("fd", lambda c: c.fileno()))) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == idle
        store.close()


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_a_write_sent_twice_is_applied_once_and_is_no_conflict(kind, request, monkeypatch):
    """A client library that resends a write whose reply it lost (a retry on a dropped connection)
    sends the same write twice: the second finds its own token and answers "applied", so the turn
    is stored once and no ConflictError invites the caller to write it again."""
    if kind == "redis":
        store = convo.RedisConversationStore(request.getfixturevalue("redis_url"), prefix=f"w{uuid.uuid4().hex[:6]}:")
    else:
        pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
        store = convo.PostgresConversationStore(request.getfixturevalue("postgres_dsn"), prefix=f"w{uuid.uuid4().hex[:6]}_")
    conv = store.create(model=MODEL)
    conv.add_user("first")
    once = store._append

    def resent(id, write):
        once(id, write)  # applied; its reply lost
        return once(id, write)  # the same write again, as a retrying client library sends it

    monkeypatch.setattr(store, "_append", resent)
    conv.add_assistant("sent twice")
    monkeypatch.undo()
    conv.add_user("after")
    assert [m.text for m in store.open(conv.id).messages] == ["first", "sent twice", "after"]
    other = store.open(conv.id)
    other.add_assistant("from another handle")
    with pytest.raises(ConflictError):  # a real conflict is still one
        conv.add_assistant("stale")
    store.close()


def test_every_redis_client_probes_idle_connections_after_a_minute(redis_url, tmp_path):
    """The conversation store, the shared limits and budgets, and the response cache: each Redis
    connection sends TCP keepalives within a minute idle, not after the system's two hours, on
    every supported redis-py (8 does by itself; 5 to 7 leave it off) (white-box: a connection
    each client's pool makes)."""
    import socket

    if not hasattr(socket, "TCP_KEEPIDLE"):
        pytest.skip("no TCP_KEEPIDLE on this platform")
    clients = {
        "conversation store": convo.RedisConversationStore(redis_url, prefix=f"k{uuid.uuid4().hex[:6]}:")._redis,
        "shared store": convo.RedisStore(redis_url).redis,
        "cache": convo.RedisCache(redis_url)._redis,
    }
    for name, client in clients.items():
        conn = client.connection_pool.make_connection()
        conn.connect()
        try:
            sock = conn._sock
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1, name
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) <= 60, name
        finally:
            conn.disconnect()
