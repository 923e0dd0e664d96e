"""Threads sharing one PostgreSQL conversation store: a threaded chatbot server's requests (open a
100-message conversation, append a turn) from 1, 4 and 8 threads of one process, side by side with
LangChain's ``PostgresChatMessageHistory`` on one shared psycopg connection (its documented setup).

Sides, on the same data (see ``stores.py`` for the fill):

- convo: ``PostgresConversationStore(dsn)`` (``max_connections=4``: a connection per call in flight);
- convo, one connection: ``max_connections=1`` (every call of the process queues for one connection,
  as LangChain's do and as convo's store did before the pool);
- LangChain: a history object per request on one ``psycopg`` connection, ``.messages`` then
  ``add_messages`` (what ``RunnableWithMessageHistory`` asks per call).

Each thread serves its own conversations (no two writers on one); every run gets a new set of 32
(filled on loopback beforehand), so every run starts at 100 messages; garbage collection is off
while a run is timed, as in ``stores.py``. Two networks: loopback, and the
server a hop away through ``bench/_delay_proxy.py`` (a proxy process on this machine holding each
chunk 0.25 ms each way, about a database in the same data centre; the table gives the round trip
measured through it). Medians of three rounds, the sides taking turns.
Run: ``.venv/bin/python bench/store_threads.py`` (``--quick`` for a smoke run that writes nothing).
Writes ``bench/results/store_threads.md``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import _machine
import stores

import convo

RESULTS = Path(__file__).parent / "results" / "store_threads.md"
PROXY = Path(__file__).parent / "_delay_proxy.py"


def _served(threads: int, requests: int, work: Callable[[int, int], None]) -> tuple[float, list[float]]:
    """(requests per second, per-request seconds): ``threads`` threads, ``requests`` in all."""
    times: list[float] = []
    lock = threading.Lock()

    def run(k: int) -> None:
        mine = []
        for j in range(requests // threads):
            t = time.perf_counter()
            work(k, j)
            mine.append(time.perf_counter() - t)
        with lock:
            times.extend(mine)

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    gc.collect()
    gc.disable()  # as in stores.py: neither side pays for the other's garbage
    try:
        start = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return len(times) / elapsed, times


def _round_trip_ms(dsn: str) -> float:
    """Median ms of ``SELECT 1`` on one connection: the network's round trip, as the client sees it."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        times = []
        for _ in range(300):
            t = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


class Sides:
    """The three sides on one server: ``fresh(name)`` gives a side's request (thread k, its j-th)
    on a new set of conversations of 100 messages, so every run starts from the same lengths."""

    def __init__(self, fill_dsn: str, dsn: str, seed: int, per_set: int = 32) -> None:
        rng = random.Random(seed)
        self.histories = [stores._history(rng, 100, 20, 120) for _ in range(per_set)]
        self.turns = [stores._history(rng, 2, 20, 120) for _ in range(64)]
        self.lc_turns = [stores._lc_messages(t) for t in self.turns]
        self.filler = convo.PostgresConversationStore(fill_dsn, prefix="bt_")  # fills on loopback
        self.stores = {"convo": convo.PostgresConversationStore(dsn, prefix="bt_"),
                       "convo, one connection": convo.PostgresConversationStore(dsn, prefix="bt_", max_connections=1)}
        self.lc_fill = stores.LangChainSide("postgres", fill_dsn)
        self.lc = stores.LangChainSide("postgres", dsn)
        self.names = [*self.stores, "LangChain"]

    @staticmethod
    def _pick(k: int, j: int, n: int) -> int:  # thread k's conversations: k, k + 8, ... (none shared)
        mine = list(range(k, n, 8))
        return mine[j % len(mine)]

    def fresh(self, name: str) -> Callable[[int, int], None]:
        n = len(self.histories)
        if name == "LangChain":
            sids = [self.lc.new_session() for _ in self.histories]
            self.lc_fill.bulk(list(zip(sids, self.histories, strict=True)))
            lc, turns = self.lc, self.lc_turns
            return lambda k, j: stores._lc_request(lc.make(sids[self._pick(k, j, n)]), turns[j % 64])
        ids = []
        for h in self.histories:
            conv = self.filler.create(model=stores.MODEL)
            stores._by_turns(conv, h)
            ids.append(conv.id)
        store, plain = self.stores[name], self.turns
        return lambda k, j: store.open(ids[self._pick(k, j, n)]).extend(plain[j % 64])

    def close(self) -> None:
        for store in (self.filler, *self.stores.values()):
            store.close()
        self.lc.close()
        self.lc_fill.close()


def run(quick: bool) -> tuple[list[dict], str]:
    workdir = tempfile.mkdtemp(prefix="convo-bench-threads-")
    os.chmod(workdir, 0o755)
    rows: list[dict] = []
    rtts: dict[str, float] = {}
    requests, rounds = (80, 1) if quick else (240, 3)
    try:
        with stores.servers(workdir) as (_redis, dsn):
            port = int(re.search(r":(\d+)/", dsn).group(1))  # type: ignore[union-attr]
            far = stores._free_port()
            proxy = subprocess.Popen([sys.executable, str(PROXY), str(far), str(port), "0.25"])
            try:
                time.sleep(0.5)
                for network, where in (("loopback", dsn), ("proxy", dsn.replace(f":{port}/", f":{far}/"))):
                    sides = Sides(dsn, where, seed=15)
                    rtts[network] = _round_trip_ms(where)
                    for threads in (1, 4, 8):
                        got: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in sides.names}
                        for r in range(rounds):
                            for name in (sides.names if r % 2 == 0 else sides.names[::-1]):
                                got[name].append(_served(threads, requests, sides.fresh(name)))
                        for name, results in got.items():
                            lat = sorted(t for _, ts in results for t in ts)
                            rows.append({"network": network, "threads": threads, "side": name,
                                         "rate": statistics.median(rate for rate, _ in results),
                                         "p50": lat[len(lat) // 2] * 1000, "p99": lat[int(len(lat) * 0.99)] * 1000})
                        print(f"  {network}, {threads} threads: " + ", ".join(
                            f"{r['side']} {r['rate']:.0f}/s" for r in rows[-3:]), file=sys.stderr)
                    sides.close()
            finally:
                proxy.kill()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for r in rows:
        r["rtt"] = rtts[r["network"]]
    return rows, f"load average at the end {os.getloadavg()[0]:.1f}, reference loop {_machine.reference_ms():.2f} ms"


def report(rows: list[dict], header: str, end: str) -> str:
    out = ["# Threads sharing one PostgreSQL conversation store", "", header + f" ({end})", "",
           ("Requests (open a 100-message conversation, append a turn) from N threads of one process; "
            "medians of three rounds (see bench/store_threads.py)."), "",
           "| network (SELECT 1) | threads | side | requests/s | p50 ms | p99 ms | convo / this side |",
           "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        mine = next(x for x in rows if x["network"] == r["network"] and x["threads"] == r["threads"] and x["side"] == "convo")
        ratio = "" if r["side"] == "convo" else f"{mine['rate'] / r['rate']:.1f}x"
        out.append(f"| {r['network']} ({r['rtt']:.2f} ms) | {r['threads']} | {r['side']} | {r['rate']:.0f} | {r['p50']:.2f} | "
                   f"{r['p99']:.2f} | {ratio} |")
    out += ["", "Notes:", "",
            ("- This machine has 2 CPUs shared by the threads, the server and (second network) the proxy: on "
             "loopback the work is CPU-bound, so more connections add little throughput; what they change is "
             "that a call no longer waits behind the others (a slow or locked one included)."),
            ("- With the server a network hop away, one connection waits for each answer in turn; a connection "
             "per call in flight overlaps those waits.")]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run that writes nothing")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    header = _machine.machine("langchain-postgres", "psycopg")
    rows, end = run(args.quick)
    text = report(rows, header, end)
    print(text)
    if not args.quick:
        RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
