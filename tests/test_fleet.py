"""A chatbot served by several worker processes at once: one conversation store and one budget on
the same real redis-server, two conversations shared by every worker, and Redis stopped in the
middle and started again. Turns go to the simulator over HTTP through the official SDK.

What must hold at the end: every turn a worker saw land is in the store exactly once, followed by
its reply; every lost race surfaced as a ConflictError; the books hold what the API charged; and
no worker hung past its timeouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import convo
from convo import Budget, RedisStore
from tests.helpers import MODEL, RedisServer

WORKER = textwrap.dedent("""
    import json, os, sys, time
    import convo
    base, url, store_prefix, budget_prefix, ids, name, turns, progress, cap, procs = sys.argv[1:11]
    budget = convo.Budget(float(cap), store=convo.RedisStore(url, prefix=budget_prefix, timeout=0.5))
    client = convo.Client(api_key="k", base_url=base, model="claude-sonnet-4-6", budget=budget, sleep=lambda s: None)
    store = convo.RedisConversationStore(url, prefix=store_prefix, timeout=0.5)
    handles, counts = {}, {"landed": 0, "conflicts": 0, "store_down": 0, "budget_down": 0}
    landed = []
    with open(os.path.join(progress, name), "w") as f:
        f.write("0")  # ready: the outage waits for every worker to be serving
    while len(os.listdir(progress)) < int(procs):  # and each waits for the others, so they race
        time.sleep(0.01)

    def handle(id):
        while id not in handles:
            try:
                handles[id] = store.open(id, client=client)
            except convo.StoreError:
                counts["store_down"] += 1
                time.sleep(0.05)
        return handles[id]

    def present(conv, text):
        return any(m.role == "user" and m.text == text for m in conv.messages)

    def reload(conv):
        while True:
            try:
                return conv.reload()
            except convo.StoreError:
                counts["store_down"] += 1
                time.sleep(0.05)

    def settle(conv, text):
        # after a write failed: True once the turn is in the store, False if it must be sent again
        while True:
            time.sleep(0.05)
            try:
                conv.flush()
                return True
            except convo.ConflictError:  # another worker wrote meanwhile: did ours land before?
                counts["conflicts"] += 1
                reload(conv)
                return present(conv, text)
            except convo.StoreError:
                counts["store_down"] += 1

    refused = False
    for i in range(int(turns)):
        id = ids.split(",")[i % 2]
        text = f"{name} turn {i}"
        while True:
            conv = handle(id)
            try:
                conv.send(text, max_tokens=30)
                break
            except convo.BudgetExceededError:  # the shared cap is reached: nothing was sent
                refused = True
                break
            except convo.ConflictError:  # another worker wrote first: nothing of this turn was
                counts["conflicts"] += 1  # written; catch up and send it again
                reload(conv)
            except convo.BudgetStoreError:  # the budget's Redis is down: nothing was sent
                counts["budget_down"] += 1
                time.sleep(0.05)
            except convo.StoreError:  # the reply came, the write did not: the handle keeps it
                counts["store_down"] += 1
                if settle(conv, text):
                    break
        if refused:
            break
        landed.append(text)
        counts["landed"] += 1
        with open(os.path.join(progress, name), "w") as f:
            f.write(str(counts["landed"]))
    print(json.dumps({**counts, "turns": landed, "cost": client.stats.cost_usd, "refused": refused}))
""")


def _landed(progress) -> int:
    total = 0
    for f in progress.iterdir():
        text = f.read_text()
        total += int(text) if text else 0
    return total


def _spawn(sim, redis, tag, ids, progress, procs, turns, cap, spawned):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    spawned += [
        subprocess.Popen([sys.executable, "-c", WORKER, sim.base_url, redis.url, f"fleet{tag}:", f"books{tag}:",
                          ",".join(ids), f"w{p}", str(turns), str(progress), str(cap), str(procs)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for p in range(procs)
    ]
    return spawned


def _reports(workers):
    reports = []
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err[-3000:]
        reports.append(json.loads(out))
    return reports


def _check_books_and_turns(store, redis, tag, ids, reports, cap):
    """Each landed turn once in the store with its reply, the books equal to what the API charged."""
    stored = [store.open(i) for i in ids]
    users = [m.text for conv in stored for m in conv.messages if m.role == "user"]
    assert sorted(users) == sorted(t for r in reports for t in r["turns"])
    for conv in stored:
        assert [m.role for m in conv.messages] == ["user", "assistant"] * (len(conv.messages) // 2)
        assert all(m.text for m in conv.messages)
    assert sum(r["conflicts"] for r in reports) >= 1  # workers raced on the shared conversations
    books = Budget(cap, store=RedisStore(redis.url, prefix=f"books{tag}:")).as_dict()
    spent = sum(r["cost"] for r in reports)
    assert books["spent"] == pytest.approx(spent) and books["held"] == pytest.approx(0.0, abs=1e-9)
    return spent


@pytest.fixture
def fleet(tmp_path):
    redis = RedisServer(str(tmp_path), persist=True)
    redis.start()
    tag = uuid.uuid4().hex[:8]
    store = convo.RedisConversationStore(redis.url, prefix=f"fleet{tag}:")
    ids = [store.create("Answer in a few words.", model=MODEL, user=f"user{k}").id for k in range(2)]
    progress = tmp_path / "progress"
    progress.mkdir()
    spawned: list[subprocess.Popen[str]] = []
    yield redis, store, tag, ids, progress, spawned
    for w in spawned:  # a failed check leaves no worker behind
        if w.poll() is None:
            w.kill()
            w.wait()
    store.close()
    redis.stop()


def test_workers_sharing_a_store_and_a_budget_through_a_redis_outage_lose_no_turn(fleet, sim):
    redis, store, tag, ids, progress, spawned = fleet
    procs, turns = 3, 12
    workers = _spawn(sim, redis, tag, ids, progress, procs, turns, 50.0, spawned)
    deadline = time.monotonic() + 120
    while (len(list(progress.iterdir())) < procs or _landed(progress) < procs * turns // 3) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(w.poll() is None for w in workers), "the workers finished before the outage"
    redis.stop()  # in the middle: turns in flight, handles open in every worker
    time.sleep(1.5)
    redis.start()  # same port, the data kept in its append-only file
    reports = _reports(workers)
    assert all(len(r["turns"]) == turns and not r["refused"] for r in reports)
    assert sum(r["store_down"] + r["budget_down"] for r in reports) >= 1  # the outage was seen
    _check_books_and_turns(store, redis, tag, ids, reports, 50.0)


def test_workers_sharing_a_store_and_a_budget_stop_at_the_cap_together(fleet, sim):
    redis, store, tag, ids, progress, spawned = fleet
    cap = 0.02
    reports = _reports(_spawn(sim, redis, tag, ids, progress, 4, 10_000, cap, spawned))
    assert all(r["refused"] for r in reports)  # every worker was stopped by the shared cap
    spent = _check_books_and_turns(store, redis, tag, ids, reports, cap)
    assert 0.5 * cap < spent <= cap  # the cap was used, never passed
