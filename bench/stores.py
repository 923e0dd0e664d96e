"""Conversation stores: append one turn and open one conversation among 10,000, per backend, side
by side with LangChain's chat-message histories on the same data.

Backends (each on its own real server, started here on a free loopback port and stopped at the
end; PostgreSQL with fsync off, for both sides alike):

- SQLite: ``convo.SQLiteConversationStore`` vs langchain-community's ``SQLChatMessageHistory``
  (SQLAlchemy engine on a file; its default settings);
- Redis: ``convo.RedisConversationStore`` vs langchain-community's ``RedisChatMessageHistory``;
- PostgreSQL: ``convo.PostgresConversationStore`` vs langchain-postgres's
  ``PostgresChatMessageHistory`` (one shared psycopg connection, as its docs advise).

Data: fillers of 10 messages (alternating user/assistant, 10-40 words, fixed seed) up to 1,000
and then 10,000 stored conversations; at each size, fresh probe conversations of 100 and 1,000
messages (20-120 words). Both sides hold the same messages: convo's through its public API
one turn per write as a chatbot writes them (``create``, then ``extend`` of each user/assistant
pair: a stored chunk per turn), LangChain's bulk-inserted in LangChain's own schema and serialization
(``message_to_dict``), exactly the rows its ``add_messages`` writes.

- *append one turn*: one user + one assistant message, new text each time. convo: ``conv.extend``
  on an open handle (one version-checked append); LangChain: ``history.add_messages`` on a history
  object made once.
- *open one conversation*: a 100-message probe, each of 40 opened in turn, 3 rounds. convo:
  ``store.open(id)`` (a whole Conversation: messages validated, token counts, pins, summary,
  receipts); LangChain: the history object made for that session, then ``.messages``.
- *one request* (not a target; what a stateless chatbot worker pays the store per message it
  serves): open the conversation, then append the turn. convo: ``store.open(id)`` then
  ``conv.extend``; LangChain, as ``RunnableWithMessageHistory`` does per call: a history object
  for the session, ``.messages`` for the prompt, then ``add_messages``. Each 100-message probe
  3 times, growing by a turn per request on both sides.

Medians of per-call times (``time.perf_counter``, gc off), the two sides taking turns in blocks of 10 calls. Run: ``.venv/bin/python bench/stores.py``
(``--quick`` for a small smoke run that writes nothing). Writes ``bench/results/stores.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import glob
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _machine

import convo

RESULTS = Path(__file__).parent / "results" / "stores.md"
MODEL = "claude-sonnet-4-6"
WORDS = ["the", "a", "river", "city", "light", "table", "window", "garden", "mountain", "north", "south", "quick",
         "slow", "report", "meeting", "budget", "plan", "order", "invoice", "team", "customer", "answer", "question",
         "data", "model", "train", "station", "bridge"]


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _history(rng: random.Random, n: int, lo: int, hi: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": _text(rng, lo, hi)} for i in range(n)]


# -- servers -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def servers(workdir: str) -> Iterator[tuple[str, str]]:
    """(redis url, postgres dsn): private servers on free loopback ports, stopped at the end."""
    rport, pport = _free_port(), _free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    bins = shutil.which("initdb")
    folder = os.path.dirname(os.path.realpath(bins)) if bins else max(glob.glob("/usr/lib/postgresql/*/bin"))
    as_user: dict[str, Any] = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
    pgdir = os.path.join(workdir, "pg")
    os.mkdir(pgdir)
    if as_user:
        shutil.chown(pgdir, "postgres", "postgres")
    data = os.path.join(pgdir, "data")
    subprocess.run([os.path.join(folder, "initdb"), "-D", data, "-U", "bench", "--auth=trust", "--no-sync"],
                   check=True, capture_output=True, **as_user)
    pg_proc = subprocess.Popen(
        [os.path.join(folder, "postgres"), "-D", data, "-p", str(pport), "-k", pgdir, "-c",
         "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **as_user,
    )
    try:
        for _ in range(300):
            ready = subprocess.run([os.path.join(folder, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(pport)],
                                   check=False).returncode == 0
            if ready:
                break
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{rport}/0", f"postgresql://bench@127.0.0.1:{pport}/postgres"
    finally:
        redis_proc.terminate()
        pg_proc.send_signal(signal.SIGINT)
        redis_proc.wait(10)
        pg_proc.wait(20)


# -- the two sides -------------------------------------------------------------------------------


def _lc_messages(history: list[dict[str, str]]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    return [(HumanMessage if m["role"] == "user" else AIMessage)(content=m["content"]) for m in history]


class LangChainSide:
    """One LangChain history backend: bulk fill in its own schema, then its public API."""

    def __init__(self, kind: str, where: str) -> None:
        self.kind, self.where = kind, where
        if kind == "sqlite":
            from langchain_community.chat_message_histories import SQLChatMessageHistory
            from sqlalchemy import create_engine

            self.engine = create_engine(f"sqlite:///{where}")
            probe = SQLChatMessageHistory("setup", connection=self.engine)  # creates its table
            self.table = probe.sql_model_class.__table__
            self.make: Callable[[str], Any] = lambda sid: SQLChatMessageHistory(sid, connection=self.engine)
        elif kind == "redis":
            import redis
            from langchain_community.chat_message_histories import RedisChatMessageHistory

            self.redis = redis.Redis.from_url(where)
            self.make = lambda sid: RedisChatMessageHistory(sid, url=where)
        else:
            import psycopg
            from langchain_postgres import PostgresChatMessageHistory

            self.conn = psycopg.connect(where, autocommit=True)
            PostgresChatMessageHistory.create_tables(self.conn, "lc_messages")
            self.make = lambda sid: PostgresChatMessageHistory("lc_messages", sid, sync_connection=self.conn)

    @staticmethod
    def new_session() -> str:
        return str(uuid.uuid4())  # langchain-postgres wants UUIDs; the others take any string

    def bulk(self, sessions: list[tuple[str, list[dict[str, str]]]]) -> None:
        from langchain_core.messages import message_to_dict

        rows = [(sid, json.dumps(message_to_dict(m))) for sid, h in sessions for m in _lc_messages(h)]
        if self.kind == "sqlite":
            with self.engine.begin() as c:
                c.execute(self.table.insert(), [{"session_id": s, "message": m} for s, m in rows])
        elif self.kind == "redis":
            pipe = self.redis.pipeline(transaction=False)
            for sid, m in rows:
                pipe.lpush(f"message_store:{sid}", m)  # what add_message does
            pipe.execute()
        else:
            with self.conn.cursor() as cur, cur.copy("COPY lc_messages (session_id, message) FROM STDIN") as cp:
                for sid, m in rows:
                    cp.write_row((sid, m))

    def close(self) -> None:
        if self.kind == "sqlite":
            self.engine.dispose()
        elif self.kind == "redis":
            self.redis.close()
        else:
            self.conn.close()


def _convo_store(kind: str, where: str) -> Any:
    if kind == "sqlite":
        return convo.SQLiteConversationStore(where)
    if kind == "redis":
        return convo.RedisConversationStore(where, prefix="bench:")
    return convo.PostgresConversationStore(where, prefix="bench_")


# -- measuring -----------------------------------------------------------------------------------


def _median_ms(calls: list[Callable[[], Any]]) -> float:
    return _paired_ms(calls)[0]


def _paired_ms(*sides: list[Callable[[], Any]], block: int = 10) -> list[float]:
    """Median ms per call of each side, the sides taking turns in blocks of ``block`` calls: both
    meet the same stretches of this machine's noise, and a call seldom follows the other side's
    (whose garbage and I/O would be charged to it)."""
    times: list[list[float]] = [[] for _ in sides]
    n = len(sides[0])
    assert all(len(calls) == n for calls in sides)
    gc.disable()
    try:
        for start in range(0, n, block):
            for side, calls in enumerate(sides):
                for call in calls[start : start + block]:
                    t = time.perf_counter()
                    call()
                    times[side].append(time.perf_counter() - t)
    finally:
        gc.enable()
    return [statistics.median(t) * 1000 for t in times]


def _lc_request(history: Any, turn: list[Any]) -> None:
    """What RunnableWithMessageHistory asks of a history per call: the messages, then the new turn."""
    assert history.messages
    history.add_messages(turn)


def _by_turns(conv: Any, history: list[dict[str, str]]) -> None:
    """Write a history as a chatbot does, one turn (a user and an assistant message) per write."""
    for i in range(0, len(history), 2):
        conv.extend(history[i : i + 2])


def run_backend(kind: str, where: dict[str, str], sizes: list[int], reps: int, probes: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    store = _convo_store(kind, where["convo"])
    lc = LangChainSide(kind, where["lc"])
    stored, rows = 0, []
    for size in sizes:
        fill = []
        while stored < size - probes - 2:
            fill.append(_history(rng, 10, 10, 40))
            stored += 1
        t = time.perf_counter()
        for h in fill:
            _by_turns(store.create(model=MODEL, user=f"u{stored % 500}"), h)
        lc.bulk([(lc.new_session(), h) for h in fill])
        print(f"  {kind}: filled to {stored:,} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
        # probes: opened (100 messages) and appended to (100 and 1,000 messages)
        open_ids = []
        for _ in range(probes):
            h = _history(rng, 100, 20, 120)
            conv = store.create(model=MODEL, user="probe")
            _by_turns(conv, h)
            sid = lc.new_session()
            lc.bulk([(sid, h)])
            open_ids.append((conv.id, sid))
        stored += probes
        random.Random(seed).shuffle(open_ids)
        calls_c = [(lambda i=i: store.open(i)) for i, _ in open_ids] * 3
        calls_l = [(lambda s=s: lc.make(s).messages) for _, s in open_ids] * 3
        got = store.open(open_ids[0][0])
        assert [m.text for m in got.messages] == [m.content for m in lc.make(open_ids[0][1]).messages]
        mine, theirs = _paired_ms(calls_c, calls_l)
        rows.append({"kind": kind, "stored": stored, "op": "open", "history": 100, "convo": mine, "lc": theirs})
        turns = [_history(rng, 2, 20, 120) for _ in range(3 * len(open_ids))]
        lc_turns = [_lc_messages(t) for t in turns]
        mine, theirs = _paired_ms(
            [(lambda i=i, t=t: store.open(i).extend(t)) for (i, _), t in zip(open_ids * 3, turns, strict=True)],
            [(lambda s=s, t=t: _lc_request(lc.make(s), t)) for (_, s), t in zip(open_ids * 3, lc_turns, strict=True)],
        )
        rows.append({"kind": kind, "stored": stored, "op": "request", "history": 100, "convo": mine, "lc": theirs})
        i, s = open_ids[0]
        assert [m.text for m in store.open(i).messages] == [m.content for m in lc.make(s).messages]
        for length in (100, 1000):
            h = _history(rng, length, 20, 120)
            conv = store.create(model=MODEL, user="probe")
            _by_turns(conv, h)
            sid = lc.new_session()
            lc.bulk([(sid, h)])
            stored += 1
            hist = lc.make(sid)
            turns = [_history(rng, 2, 20, 120) for _ in range(reps)]
            lc_turns = [_lc_messages(t) for t in turns]
            plain = convo.Conversation(model=MODEL)  # the same turns with no store: what is not the write
            plain.extend(h)
            memory = _median_ms([(lambda t=t, c=plain: c.extend(t)) for t in turns])
            mine, theirs = _paired_ms([(lambda t=t, c=conv: c.extend(t)) for t in turns],
                                      [(lambda t=t, x=hist: x.add_messages(t)) for t in lc_turns])
            rows.append({"kind": kind, "stored": stored, "op": "append", "history": length,
                         "convo": mine, "lc": theirs, "memory": memory})
            assert len(store.open(conv.id)) == length + 2 * reps == len(hist.messages)
    if kind == "redis":  # the floor of any server write: one round trip on this machine's loopback
        rows.append({"kind": kind, "op": "rtt", "ms": _median_ms([lc.redis.ping] * 300)})
    elif kind == "postgres":
        rows.append({"kind": kind, "op": "rtt", "ms": _median_ms([lambda: lc.conn.execute("SELECT 1").fetchone()] * 300)})
    store.close()
    lc.close()
    return rows


def report(rows: list[dict], header: str, sizes: list[int]) -> str:
    names = {"sqlite": ("SQLite", "SQLChatMessageHistory"), "redis": ("Redis", "RedisChatMessageHistory"),
             "postgres": ("PostgreSQL", "PostgresChatMessageHistory")}
    intro = ("Append one turn (a user and an assistant message), open one 100-message conversation, and the two "
             "as one request (open, then append), with "
             f"{sizes[0]:,} and then {sizes[-1]:,} conversations stored; same messages on both sides, each backend "
             "on its own local server (see bench/stores.py). Medians per call.")
    columns = ("| backend | LangChain class | operation | history | stored | convo ms | of which in memory "
               "| LangChain ms | LangChain / convo |")
    out = ["# Conversation stores: convo vs LangChain's chat-message histories", "", header, "", intro, "",
           columns, "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    rtts = {r["kind"]: r["ms"] for r in rows if r["op"] == "rtt"}
    rows = [r for r in rows if r["op"] != "rtt"]
    for r in rows:
        backend, cls = names[r["kind"]]
        memory = f"{r['memory']:.3f}" if "memory" in r else ""
        out.append(f"| {backend} | {cls} | {r['op']} | {r['history']:,} | ~{r['stored']:,} | {r['convo']:.3f} | "
                   f"{memory} | {r['lc']:.3f} | {r['lc'] / r['convo']:.1f}x |")
    out += ["", "Flatness (convo should not grow with the stored count, nor an append with the history):", ""]
    for kind in names:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        parts = []
        for op, hist in (("open", 100), ("append", 100), ("append", 1000)):
            pair = [r for r in mine if r["op"] == op and r["history"] == hist]
            if len(pair) >= 2:
                a, b = pair[0], pair[-1]
                parts.append(f"{op} {hist}: convo {a['convo']:.3f} -> {b['convo']:.3f} ms "
                             f"({b['convo'] / a['convo']:.2f}x), LangChain {a['lc']:.3f} -> {b['lc']:.3f} ms "
                             f"({b['lc'] / a['lc']:.2f}x)")
        last = {r["history"]: r for r in mine if r["op"] == "append" and r["stored"] >= sizes[-1] - 10}
        if 100 in last and 1000 in last:
            parts.append(f"append at 100 vs 1,000 messages: convo {last[1000]['convo'] / last[100]['convo']:.2f}x, "
                         f"LangChain {last[1000]['lc'] / last[100]['lc']:.2f}x")
        out.append(f"- {names[kind][0]}: " + "; ".join(parts))
    notes = [
        ("convo's open builds a whole `Conversation` (messages validated, running token totals, pins, summary, "
         "receipts) in one indexed read; LangChain's returns a list of message objects. convo stores each "
         "message's token count beside it, so opening does not re-tokenize. convo keeps a chunk of messages per "
         "write: the probes, written a turn at a time as a chatbot writes them, are 50 rows (list items) each, "
         "LangChain's 100."),
        ("`SQLChatMessageHistory` has no index on `session_id` (its table is `id, session_id, message`), so "
         "its reads scan the table and grow with the stored count; its engine keeps SQLite's defaults (rollback "
         "journal, a full sync per commit), where convo's file is WAL with `synchronous=NORMAL`."),
        ("`RedisChatMessageHistory` takes a URL, not a client: each history object opens its own connection "
         "pool, as its users do; `add_messages` is one `LPUSH` round trip per message."),
        ("*of which in memory*: the same `extend` on a `Conversation` with no store (validating both messages "
         "and counting their tokens, which the conversation needs to fit its budget; LangChain's histories do "
         "neither). The rest is the store's write."),
        ("convo's append checks the version and writes in one round trip (a Lua script; one SQL statement in "
         "PostgreSQL; one transaction in SQLite)."),
        ("Where the target is not met: a server append costs at least one round trip on either side, and a "
         "round trip here is " + ", ".join(f"{ms:.3f} ms ({'Redis PING' if k == 'redis' else 'PostgreSQL SELECT 1'})"
                                          for k, ms in rtts.items())
         + " (measured in this run). convo's append is one version-checked round trip (a Lua script, one SQL "
         "statement); LangChain's is a blind write: one `LPUSH` per message (two per turn), or one pipelined "
         "`INSERT` batch (one). A write that must tell the second of two writers it lost cannot be answered "
         "without the server's reply, so against those no design can be 5x faster here: the bound is ~2x on "
         "Redis and ~1x on PostgreSQL. Opening from PostgreSQL reads the same 100 rows on both sides, which "
         "alone costs several round trips' worth. What convo guarantees instead: one round trip per turn "
         "whatever the history length or the stored count, and no lost or silently overwritten turn under "
         "concurrent writers (LangChain's histories have no version and interleave them)."),
    ]
    requests = [r for r in rows if r["op"] == "request"]
    if requests:
        out += ["", "One request (open, then append a turn; not a target, see the docstring):", ""]
        for kind in names:
            ratios = [r["lc"] / r["convo"] for r in requests if r["kind"] == kind]
            if ratios:
                out.append(f"- {names[kind][0]}: {min(ratios):.1f}x to {max(ratios):.1f}x")
    out += ["", "Against the target (>= 5x faster than each LangChain history):", ""]
    for kind in names:
        for op in ("open", "append"):
            ratios = [r["lc"] / r["convo"] for r in rows if r["kind"] == kind and r["op"] == op]
            if ratios:
                verdict = "met" if min(ratios) >= 5 else "not met"
                out.append(f"- {names[kind][0]} {op}: {min(ratios):.1f}x to {max(ratios):.1f}x, {verdict}")
    out += ["", "Notes:", "", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def _rows_from(results: str) -> list[dict]:
    """The measured rows back from a results file (to re-render it after a change of wording)."""
    kinds = {"SQLite": "sqlite", "Redis": "redis", "PostgreSQL": "postgres"}
    rows = []
    for line in results.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 9 and cells[0] in kinds:
            row = {"kind": kinds[cells[0]], "op": cells[2], "history": int(cells[3].replace(",", "")),
                   "stored": int(cells[4].strip("~").replace(",", "")), "convo": float(cells[5]),
                   "lc": float(cells[7])}
            if cells[6]:
                row["memory"] = float(cells[6])
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run that writes nothing")
    parser.add_argument("--only", choices=["sqlite", "redis", "postgres"])
    parser.add_argument("--rerender", action="store_true", help="rewrite the results file's text from its numbers")
    args = parser.parse_args()
    if args.rerender:
        old = RESULTS.read_text(encoding="utf-8")
        header = old.splitlines()[2]
        sizes = [1_000, 10_000]
        RESULTS.write_text(report(_rows_from(old), header, sizes), encoding="utf-8")
        return
    warnings.filterwarnings("ignore")
    sizes, reps, probes = ([300, 1_000], 20, 10) if args.quick else ([1_000, 10_000], 100, 40)
    kinds = [args.only] if args.only else ["sqlite", "redis", "postgres"]
    workdir = tempfile.mkdtemp(prefix="convo-bench-stores-")
    os.chmod(workdir, 0o755)  # the postgres user reaches its folder inside
    rows: list[dict] = []
    header = _machine.machine("langchain-community", "langchain-postgres", "sqlalchemy", "redis", "psycopg")
    try:
        with servers(workdir) as (redis_url, dsn):
            where = {
                "sqlite": {"convo": os.path.join(workdir, "convo.db"), "lc": os.path.join(workdir, "lc.db")},
                "redis": {"convo": redis_url, "lc": redis_url},
                "postgres": {"convo": dsn, "lc": dsn},
            }
            for kind in kinds:
                print(f"{kind} ...", file=sys.stderr)
                rows += run_backend(kind, where[kind], sizes, reps, probes, seed=15)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header += f" (at the end: load average {os.getloadavg()[0]:.1f}, reference loop {_machine.reference_ms():.2f} ms)"
    text = report(rows, header, sizes)
    print(text)
    if not args.quick:
        RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
