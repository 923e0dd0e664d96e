"""map_reduce(mode="batch"): the map step and every combining level as Message Batches, on the
simulator over real HTTP, in virtual time; killed with SIGKILL and run again, nothing is sent twice."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from convo import AsyncClient, Client, InvalidConfigError, PriceTable, amap_reduce, map_reduce
from convo.sim import ManualClock, Simulator

MODEL = "claude-sonnet-4-6"
ASK = "Summarize this part of the Python reference."
ROOT = Path(__file__).resolve().parent.parent
ARGS = {"chunk_tokens": 1500, "max_tokens": 150, "progress": False}


def document() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics))[:40_000]


DOC = document()


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def timed(clock):
    with Simulator(seed=0, clock=clock, batch_seconds=3600) as s:
        yield s


def client(sim, clock, **kw):
    return Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=clock.advance, **kw)


def created(sim):
    """Every batch created: a list of its requests' params."""
    return [[r["params"] for r in rec.body["requests"]] for rec in sim.requests
            if rec.method == "POST" and rec.path == "/v1/messages/batches" and rec.body is not None]


def messages_posts(sim):
    return [r for r in sim.requests if r.path == "/v1/messages"]


def test_batch_mode_sends_batches_only_at_half_price_with_the_same_answers(timed, clock):
    batch = map_reduce(DOC, ASK, client=client(timed, clock), mode="batch", **ARGS)
    assert messages_posts(timed) == []
    batches = created(timed)
    n = len(batch.partials)
    assert n > 3 and [len(b) for b in batches] == [n, 1]  # the map, then the final combine as a batch of one
    assert batch.ok and batch.mode == "batch" and batch.usage["requests"] == n + 1
    discount = PriceTable.default().batch_discount
    assert batch.cost == pytest.approx(batch.sync_cost * discount) and batch.cost > 0
    with Simulator(seed=0) as plain:
        sync = map_reduce(DOC, ASK, client=Client(api_key="test", base_url=plain.base_url, model=MODEL), **ARGS)
        assert len(messages_posts(plain)) == n + 1
    assert sync.mode == "sync" and sync.cost == pytest.approx(sync.sync_cost)
    assert [p.text for p in batch.partials] == [p.text for p in sync.partials] and batch.text == sync.text
    assert batch.usage == sync.usage and batch.cost == pytest.approx(sync.cost * discount)


def test_each_combining_level_is_a_batch(timed, clock):
    result = map_reduce(DOC, ASK, client=client(timed, clock), mode="batch", context_tokens=700, **ARGS)
    batches = created(timed)
    assert result.ok and result.levels >= 1 and messages_posts(timed) == []
    assert len(batches) == result.levels + 2 and len(batches[-1]) == 1
    assert all("answer part=" in b[0]["messages"][0]["content"] for b in batches[1:])
    assert result.usage["requests"] == sum(map(len, batches))


def test_async_twin_gives_the_same_result(timed, clock):
    async def advance(seconds):
        clock.advance(seconds)

    async def main():
        async with AsyncClient(api_key="test", base_url=timed.base_url, model=MODEL, sleep=advance) as c:
            return await amap_reduce(DOC, ASK, client=c, mode="batch", context_tokens=700, **ARGS)

    got = asyncio.run(main())
    timed.clear_requests()
    want = map_reduce(DOC, ASK, client=client(timed, clock), mode="batch", context_tokens=700, **ARGS)
    assert got.text == want.text and got.levels == want.levels and got.cost == pytest.approx(want.cost)


def test_failed_chunks_are_sent_again_in_a_new_batch(timed, clock):
    chunks = [f"Part {i}: the reference describes statement number {i} in detail." for i in range(6)]
    chunks[2] += " [sim:expired]"  # this one always expires
    timed.batch_faults = {"errored": 0.3}
    result = map_reduce(chunks, ASK, client=client(timed, clock), mode="batch", progress=False)
    assert [p.chunk.index for p in result.failed] == [2]
    assert result.failed[0].error.error_type == "expired"
    sent = Counter(json.dumps(p, sort_keys=True) for b in created(timed)[:-1] for p in b)
    assert sent[json.dumps(created(timed)[0][2], sort_keys=True)] == 3  # sent, then twice again


def test_bad_mode(timed, clock):
    with pytest.raises(InvalidConfigError, match="mode must be"):
        map_reduce(DOC, ASK, client=client(timed, clock), mode="bulk")


SCRIPT = """
import sys
from pydoc_data.topics import topics
from convo import Client, map_reduce
url, path = sys.argv[1], sys.argv[2]
doc = "\\n\\n".join(topics[k].strip() for k in sorted(topics))[:40_000]
client = Client(api_key="test", base_url=url, model="claude-sonnet-4-6")
map_reduce(doc, "Summarize this part of the Python reference.", client=client, mode="batch", checkpoint=path,
           chunk_tokens=1500, max_tokens=150, context_tokens=700, progress=False)
"""


def start(tmp_path, url, path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, str(script), url, str(path)], stderr=subprocess.PIPE, env=env)


def wait_for(proc, ready, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run made no progress")
        time.sleep(0.01)


def polled_after_create(sim, creates):
    """The run has created ``creates`` batches and polled the last one."""
    seen = 0
    for r in sim.requests:
        if r.method == "POST" and r.path == "/v1/messages/batches":
            seen += 1
        elif seen == creates and r.method == "GET" and r.path.startswith("/v1/messages/batches/"):
            return True
    return False


@pytest.mark.parametrize("stage", ["map", "level"])
def test_killed_and_run_again_it_resumes_the_same_batches_and_sends_nothing_twice(timed, clock, tmp_path, stage):
    path = tmp_path / "run.ckpt"
    proc = start(tmp_path, timed.base_url, path)
    wait_for(proc, lambda: polled_after_create(timed, 1))  # the map batch is submitted, and waited for
    if stage == "level":
        clock.advance(2 * 3600)  # the map batch ends; the first combining level goes out
        wait_for(proc, lambda: polled_after_create(timed, 2))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    before = created(timed)
    assert len(before) == (1 if stage == "map" else 2)
    clock.advance(2 * 3600)
    result = map_reduce(DOC, ASK, client=client(timed, clock), mode="batch", checkpoint=path, context_tokens=700, **ARGS)
    assert result.ok and result.levels >= 1 and messages_posts(timed) == []
    every = [json.dumps(p, sort_keys=True) for b in created(timed) for p in b]
    assert len(every) == len(set(every))  # no request went out twice, in any batch of any level
    assert len(created(timed)) == result.levels + 2  # the batches of before were resumed, not made again
    count = len(created(timed))
    again = map_reduce(DOC, ASK, client=client(timed, clock), mode="batch", checkpoint=path, context_tokens=700, **ARGS)
    assert len(created(timed)) == count and again.text == result.text  # all from the checkpoints
    assert again.usage["requests"] == 0 and again.cost == 0
