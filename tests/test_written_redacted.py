"""What convo writes holds what the API saw, never a redacted value: with a Redactor (on the
conversation or on its client), a saved file and every store backend hold placeholders or masks
for the system prompt, the messages and the summary, and no mapping of placeholders to values.
The history in the process stays the user's; a reopened conversation sends the model the same
text as before. Each check reads the raw bytes of the file, the SQLite database, the Redis keys
or the PostgreSQL rows."""

from __future__ import annotations

import glob
import json
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convo
from convo import Conversation, Redactor, Summarize
from tests.helpers import MODEL, quick_client

ANN, BOB, CARL = "ann@example.com", "bob@example.com", "carl@example.com"
CARD = "4111 1111 1111 1111"
RAW = (ANN, BOB, CARL, CARD)


def _store(kind: str, request, tmp_path, tag: str):
    if kind == "sqlite":
        return convo.SQLiteConversationStore(str(tmp_path / "chats.db"))
    if kind == "redis":
        return convo.RedisConversationStore(request.getfixturevalue("redis_url"), prefix=f"w{tag}:")
    pytest.importorskip("psycopg", reason="psycopg (convo[postgres]) is not installed in this environment")
    return convo.PostgresConversationStore(request.getfixturevalue("postgres_dsn"), prefix=f"w{tag}_")


def _files(path: str) -> str:
    """A SQLite database with its WAL and shared-memory files, as text."""
    return b"".join(Path(f).read_bytes() for f in sorted(glob.glob(path + "*"))).decode("utf-8", "replace")


def _raw(kind: str, request, tmp_path, tag: str) -> str:
    """Everything the backend holds for this test, as text."""
    if kind == "sqlite":
        return _files(str(tmp_path / "chats.db"))
    if kind == "redis":
        import redis

        r = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        try:
            keys = list(r.scan_iter(f"w{tag}:*"))
            assert keys
            return " ".join(_redis_value(r, k) for k in keys)
        finally:
            r.close()
    import psycopg

    with psycopg.connect(request.getfixturevalue("postgres_dsn"), autocommit=True) as c:
        tables = [t for (t,) in c.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (f"w{tag}_%",)).fetchall()]
        assert tables
        return "".join(repr(c.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)


def _redis_value(r, key) -> str:
    kind = r.type(key).decode()
    if kind == "string":
        return r.get(key).decode("utf-8", "replace")
    if kind == "list":
        return " ".join(v.decode("utf-8", "replace") for v in r.lrange(key, 0, -1))
    if kind == "hash":
        return " ".join(f"{k.decode()}={v.decode('utf-8', 'replace')}" for k, v in r.hgetall(key).items())
    if kind == "zset":
        return " ".join(v.decode("utf-8", "replace") for v in r.zrange(key, 0, -1))
    if kind == "set":
        return " ".join(v.decode("utf-8", "replace") for v in r.smembers(key))
    raise AssertionError(f"unexpected Redis type {kind}")


def _leaked(text: str) -> list[str]:
    return [v for v in RAW if v in text or json.dumps(v)[1:-1] in text]


def _sent(sim) -> str:
    return " ".join(json.dumps(r.body, ensure_ascii=False) for r in sim.requests if r.body is not None)


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
@pytest.mark.parametrize("mode", ["placeholder", "mask"])
@pytest.mark.parametrize("on", ["conversation", "client"])
def test_a_store_holds_what_the_api_saw_never_the_values(kind, mode, on, request, tmp_path, fresh):
    tag = uuid.uuid4().hex[:8]
    store = _store(kind, request, tmp_path, tag)
    redactor = Redactor(mode=mode)
    client = quick_client(fresh, redactor=redactor if on == "client" else None)
    own = redactor if on == "conversation" else None
    try:
        conv = store.create(f"You help {ANN}.", model=MODEL, user="u1", client=client, redactor=own)
        conv.send(f"Mail {BOB} about the card {CARD}, please")
        conv.add_user(f"And copy {CARL}", pinned=True)
        conv.add_assistant("Noted.")
        assert BOB in conv.messages[0].text  # the history in the process is the user's own
        raw = _raw(kind, request, tmp_path, tag)
        assert "card" in raw and _leaked(raw) == []
        assert ("[EMAIL_" if mode == "placeholder" else "[EMAIL]") in raw

        again = store.open(conv.id, client=client, redactor=own)
        assert again.pinned == conv.pinned and len(again.messages) == len(conv.messages)
        assert _leaked(json.dumps(again.to_dict())) == []
        # Redacted text is counted as it is, not with the stored counts of the original.
        recount = Conversation(again.system, model=MODEL)
        recount.extend(again.messages)
        assert again.total_tokens == recount.total_tokens
        if on == "conversation":  # the model sees the same conversation after the reopen
            assert again.request()["messages"] == conv.request()["messages"]
        again.send(f"Now write to {ANN} too")
        assert _leaked(_sent(fresh)) == []
        assert _leaked(_raw(kind, request, tmp_path, tag)) == []
    finally:
        store.close()


@pytest.mark.parametrize("on", ["conversation", "client"])
def test_a_saved_file_holds_no_value_nor_a_mapping_to_one(on, tmp_path, fresh):
    redactor = Redactor(mode="placeholder")
    client = quick_client(fresh, redactor=redactor if on == "client" else None)
    conv = Conversation(f"You help {ANN}.", model=MODEL, client=client,
                        redactor=redactor if on == "conversation" else None)
    conv.send(f"Mail {BOB} about the card {CARD}")
    conv.add_user([{"type": "text", "text": f"cc {CARL}"}])
    path = tmp_path / "chat.json"
    conv.save(path)
    text = path.read_text()
    assert _leaked(text) == [] and "[EMAIL_" in text and "mapping" not in text
    assert _leaked(json.dumps(conv.to_dict())) == []
    loaded = Conversation.load(path, client=client)
    loaded.redactor = conv.redactor
    if on == "conversation":
        assert loaded.request()["messages"] == conv.request()["messages"]
    loaded.add_assistant("Sure.")
    loaded.send(f"And {ANN}?")
    assert _leaked(_sent(fresh)) == []


def test_a_summary_written_to_the_store_holds_placeholders(tmp_path, fresh):
    store = convo.SQLiteConversationStore(str(tmp_path / "chats.db"))
    client = quick_client(fresh, redactor=Redactor(mode="placeholder"))  # the summary comes back restored
    conv = store.create(model=MODEL, client=client, budget=1400, max_tokens=200,
                        strategy=Summarize(trigger=0.3, keep_last=1))
    for i, who in enumerate((ANN, BOB, CARL, ANN, BOB)):
        conv.send(f"Turn {i}: please remember that {who} owns card {CARD} and the plan for the launch review")
    assert conv.summary is not None, conv.summary_error
    store.close()
    raw = _files(str(tmp_path / "chats.db"))
    assert "launch" in raw and _leaked(raw) == []


_EMAILS = st.from_regex(r"[a-z]{3,8}@[a-z]{3,8}\.(com|org|net)", fullmatch=True)
_WORDS = st.text(alphabet="abcdefghij ,.", min_size=1, max_size=30).filter(lambda s: s.strip() != "")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=st.lists(st.tuples(_WORDS, _EMAILS, st.booleans()), min_size=1, max_size=6),
       mode=st.sampled_from(["placeholder", "mask"]))
def test_no_value_the_redactor_finds_reaches_the_store(tmp_path, turns, mode):
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    store = convo.SQLiteConversationStore(str(path))
    try:
        conv = store.create(model=MODEL, redactor=Redactor(mode=mode))
        values = []
        for words, email, as_blocks in turns:
            values.append(email)
            text = f"{words} {email} {words}"
            conv.add_user([{"type": "text", "text": text}] if as_blocks else text)
            conv.add_assistant(f"I will write to {email}.")
        raw = _files(str(path))
        assert [v for v in values if v in raw] == []
        assert len(store.open(conv.id).messages) == 2 * len(turns)  # nothing lost
    finally:
        store.close()
