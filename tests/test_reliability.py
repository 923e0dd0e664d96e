"""Reliability: a small fault soak, many streams at once, kill -9 at random points, a budget
under concurrent faulty streams. The long versions with the report are in ``bench/soak.py``.

What the other suites already cover is not repeated here: one fault at a time per stream
(test_client), a batch killed at a fixed point (test_batch), spend under concurrent ``create``
calls (test_budget).
"""

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convo import AsyncClient, Budget, BudgetExceededError, Client, Conversation, InvalidConfigError, RetryPolicy
from convo.checkpoint import Checkpoint
from convo.sim import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import soak

MODEL = "claude-sonnet-4-6"


# -- 1. every fault kind at once ---------------------------------------------------------------


def test_a_small_soak_loses_nothing_and_doubles_nothing():
    report = soak.soak(100, 30, seed=3)
    assert sum(report.faults.values()) >= 20  # the faults really happened
    assert {k.split("@")[0] for k in report.faults} >= {"429", "500", "drop", "hang", "malformed", "sse_error"}
    assert report.lost == 0 and report.duplicated == 0 and report.answered_twice == 0
    assert report.chars_twice == 0 and report.chars_missing == 0 and report.final_mismatch == 0
    assert report.untyped == 0 and report.failed == 0, report.errors
    always_fail = sum(n for k, n in report.faults.items() if k.split("@")[0] in ("429", "500", "529", "drop", "hang"))
    assert report.returned == 130 and report.retries >= always_fail  # stream faults spare a plain create
    assert report.budget_refused == 0


# -- 6. many streams at once ---------------------------------------------------------------------


def test_async_client_holds_100_concurrent_streams():
    report = soak.load(100, 1, token_latency=0.002, trace=False)
    assert report.errors == 0 and report.wrong_text == 0
    assert report.peak_open == 100  # all of them were open together


# -- 2. kill -9 at random points ---------------------------------------------------------------

BATCH = """
import sys
from convo import Client
url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = Client(api_key="test", base_url=url, model="claude-sonnet-4-6", max_concurrency=4)
asks = ({"messages": [{"role": "user", "content": f'say "item {i}"'}], "max_tokens": 20} for i in range(n))
client.batch(asks, checkpoint=path, progress=False)
"""

MAPREDUCE = """
import sys
from convo import Client, map_reduce
url, path, doc = sys.argv[1], sys.argv[2], sys.argv[3]
client = Client(api_key="test", base_url=url, model="claude-sonnet-4-6", max_concurrency=2)
map_reduce(open(doc, encoding="utf-8").read(), "Summarize this part.", client=client, chunk_tokens=400,
           max_tokens=60, checkpoint=path, progress=False)
"""


def _spawn(tmp_path, code, *args):
    script = tmp_path / "job.py"
    script.write_text(code)
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stderr=subprocess.PIPE)


def _kill_at(proc, path, target, rng):
    """kill -9 once the checkpoint holds ``target`` entries (plus a random instant), or at exit."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if path.exists():
            # the child may be creating it right now
            with contextlib.suppress(InvalidConfigError, sqlite3.Error), Checkpoint(path) as ckpt:
                if len(ckpt) >= target:
                    break
        time.sleep(0.01)
    time.sleep(rng.random() * 0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def _posts(sim):
    return [r for r in sim.requests if r.path == "/v1/messages"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_killed_at_a_random_point_resumes_without_resending(tmp_path, seed):
    rng, n = random.Random(seed), 40
    path = tmp_path / "run.ckpt"
    item = re.compile(r'say "item (\d+)"')
    with Simulator(seed=0, latency=0.01) as sim:
        _kill_at(_spawn(tmp_path, BATCH, sim.base_url, path, n), path, rng.randrange(n), rng)
        sent_before = {int(item.search(r.body["messages"][0]["content"]).group(1)) for r in _posts(sim) if r.body}
        sim.clear_requests()
        client = Client(api_key="test", base_url=sim.base_url, model=MODEL, max_concurrency=8)
        results = client.batch(({"messages": [{"role": "user", "content": f'say "item {i}"'}], "max_tokens": 20}
                                for i in range(n)), checkpoint=path, progress=False)
        resent = [int(item.search(r.body["messages"][0]["content"]).group(1)) for r in _posts(sim)]
    assert [r.index for r in results] == list(range(n)) and all(r.ok and r.text == f"item {r.index}" for r in results)
    finished = {r.index for r in results if r.from_checkpoint}
    assert finished <= sent_before
    assert sorted(resent) == sorted(set(range(n)) - finished)  # nothing finished was sent again


def _document():
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics))[:24_000]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_map_reduce_killed_at_a_random_point_resumes_without_resending(tmp_path, seed):
    from convo import map_reduce

    rng = random.Random(seed)
    doc = tmp_path / "doc.txt"
    doc.write_text(_document(), encoding="utf-8")
    path = tmp_path / "run.ckpt"
    part = re.compile(r'<document part="(\d+) of (\d+)">')
    with Simulator(seed=0, latency=0.02) as sim:
        client = Client(api_key="test", base_url=sim.base_url, model=MODEL, max_concurrency=4)
        clean = map_reduce(doc.read_text("utf-8"), "Summarize this part.", client=client, chunk_tokens=400,
                           max_tokens=60, progress=False)
        n = len(clean.partials)
        sim.clear_requests()
        _kill_at(_spawn(tmp_path, MAPREDUCE, sim.base_url, path, doc), path, rng.randrange(n), rng)
        sent_before = {int(m.group(1)) - 1 for r in _posts(sim) if r.body
                       and (m := part.search(r.body["messages"][-1]["content"]))}
        sim.clear_requests()
        result = map_reduce(doc.read_text("utf-8"), "Summarize this part.", client=client, chunk_tokens=400,
                            max_tokens=60, checkpoint=path, progress=False)
        resent = [int(m.group(1)) - 1 for r in _posts(sim) if (m := part.search(r.body["messages"][-1]["content"]))]
    assert result.ok and len(result.partials) == n
    assert [p.text for p in result.partials] == [p.text for p in clean.partials] and result.text == clean.text
    finished = {i for i, p in enumerate(result.partials) if p.cached}
    assert finished <= sent_before
    assert sorted(resent) == sorted(set(range(n)) - finished)


SAVER = """
import sys
from convo import Conversation
path = sys.argv[1]
def big(tag):
    conv = Conversation("system " + tag, model="claude-sonnet-4-6", budget=200_000)
    for i in range(150):
        conv.add_user(f"{tag} question {i} " + "x" * 400)
        conv.add_assistant(f"{tag} answer {i} " + "y" * 400)
    return conv
a, b = big("A"), big("B")
a.save(path)
print("ready", flush=True)
while True:
    b.save(path)
    a.save(path)
"""


def test_conversation_save_killed_mid_write_leaves_the_old_or_the_new_file(tmp_path):
    path = tmp_path / "chat.json"
    rng = random.Random(7)
    outcomes = set()
    for _ in range(3):
        script = tmp_path / "saver.py"
        script.write_text(SAVER)
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.random() * 0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        conv = Conversation.load(path)  # never torn: loads, and is one of the two whole
        assert conv.system in ("system A", "system B")
        tag = conv.system[-1]
        assert len(conv.messages) == 300 and all(m.text.startswith(tag) for m in conv.messages)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for tmp in tmp_path.glob(".chat.json.*.tmp"):  # a temp file left by the kill is private too
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
        outcomes.add(tag)
    assert json.loads(path.read_text("utf-8"))["format"] == "convo.conversation"


# -- 5. budget under concurrent streams that fail ----------------------------------------------


def test_spend_never_exceeds_the_cap_with_faulty_concurrent_streams():
    budget = Budget(usd=0.03)
    refused, done = [], []

    async def main(sim):
        async def nap(s):
            await asyncio.sleep(0)

        client = AsyncClient(api_key="k", base_url=sim.base_url, model=MODEL, budget=budget, max_concurrency=16,
                             sleep=nap, retry=RetryPolicy(max_attempts=6))

        async def one(i):
            try:
                if i % 2:
                    async with client.stream([{"role": "user", "content": f"Tell me about item {i} " * 10}],
                                             max_tokens=300) as s:
                        done.append(await s.get_final_text())
                else:
                    msg = await client.create([{"role": "user", "content": f"Tell me about item {i} " * 10}],
                                              max_tokens=300)
                    done.append(msg.content[0].text)
            except BudgetExceededError:
                refused.append(i)

        await asyncio.gather(*(one(i) for i in range(64)))
        await client.close()
        return client

    faults = {"sse_error@3": 0.15, "drop@2": 0.1, "500": 0.1, "429@0": 0.05}
    with Simulator(latency=0.005, faults=faults) as sim:
        client = asyncio.run(main(sim))
    assert budget.spent <= budget.usd
    assert done and refused and len(done) + len(refused) == 64
    assert client.stats.retries > 0
    assert budget.spent == pytest.approx(client.stats.cost_usd)  # every attempt charged, failed ones too


def test_a_resumed_streams_final_message_serializes_without_warnings():
    import warnings

    with Simulator(seed=0, faults=["sse_error@3"]) as sim:
        client = Client(api_key="k", base_url=sim.base_url, model=MODEL, sleep=lambda s: None)
        with client.stream([{"role": "user", "content": "Tell me a story."}], max_tokens=200) as s:
            final = s.get_final_message()
    assert client.stats.stream_resumes == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain TextBlock stitched into a ParsedMessage warned here
        assert final.model_dump()["content"][0]["text"] == final.content[0].text
