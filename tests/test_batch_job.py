"""Submit now, collect later: BatchJob against the simulator over real HTTP, in virtual time."""

import asyncio
import inspect
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anthropic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convo
from convo import (
    APIError,
    AsyncBatchJob,
    AsyncClient,
    BatchJob,
    BatchStatus,
    BatchTimeoutError,
    Budget,
    Client,
    InvalidConfigError,
    OverloadedError,
)
from convo.sim import ManualClock, Simulator

MODEL = "claude-sonnet-4-6"
ROOT = Path(__file__).resolve().parent.parent


def ask(i, extra=""):
    return {"messages": [{"role": "user", "content": f'say "item {i}"{extra}'}], "max_tokens": 20}


def asks(n):
    return [ask(i) for i in range(n)]


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def timed(clock):
    """Batches of 2 h (the batches' clock runs with the simulator's, which moves when told)."""
    with Simulator(seed=0, clock=clock, batch_seconds=7200) as s:
        yield s


def client(sim, clock, **kw):
    return Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=clock.advance, **kw)


def creates(sim):
    """The bodies of the batches created, in order: [[custom_id, ...], ...]."""
    return [[r["custom_id"] for r in rec.body["requests"]] for rec in sim.requests
            if rec.method == "POST" and rec.path == "/v1/messages/batches"]


def outcomes(sim, ids):
    """custom_id -> the result types it had in each batch, in order (read back with the SDK)."""
    raw = anthropic.Anthropic(api_key="test", base_url=sim.base_url)
    seen: dict[str, list[str]] = {}
    for batch_id in ids:
        for line in raw.messages.batches.results(batch_id):
            seen.setdefault(line.custom_id, []).append(line.result.type)
    return seen


def test_wait_false_returns_at_once_and_results_come_in_order(timed, clock):
    c = client(timed, clock)
    job = c.batch(asks(30), via="batches_api", wait=False)
    assert isinstance(job, BatchJob) and job.id.startswith("msgbatch_") and job.ids == [job.id]
    assert [(r.method, r.path) for r in timed.requests] == [("POST", "/v1/messages/batches")]
    assert clock.now == ManualClock().now  # nothing waited
    state = job.status()
    assert isinstance(state, BatchStatus) and state.processing_status == "in_progress" and not state.ended
    assert state.request_counts["processing"] == 30
    results = job.results()
    assert [r.index for r in results] == list(range(30))
    assert [r.text for r in results] == [f"item {i}" for i in range(30)]
    assert all(r.message.usage.service_tier == "batch" for r in results)
    assert job.status().ended and job.status() == "ended" and str(job.status()) == "ended"
    assert job.results() is results  # collected once
    assert c.stats.requests == 30


def test_errored_and_expired_items_are_sent_again_none_lost_none_twice(timed, clock):
    timed.batch_faults = {"errored": 0.25, "expired": 0.15}
    job = client(timed, clock).batch(asks(60), via="batches_api", wait=False)
    results = job.results(retries=2)
    assert [r.index for r in results] == list(range(60))
    seen = outcomes(timed, job.ids)
    assert sorted(seen, key=int) == [str(i) for i in range(60)]
    for i, r in enumerate(results):
        history = seen[str(i)]
        assert len(history) <= 3  # sent once, then again at most twice
        assert all(t in ("errored", "expired") for t in history[:-1])  # sent again only after a failure
        assert r.ok == (history[-1] == "succeeded")
        assert r.attempts == len(history)
        if r.ok:
            assert r.text == f"item {i}"
        else:
            assert len(history) == 3
            assert isinstance(r.error, APIError)
    assert len(job.ids) > 1 and sum(not r.ok for r in results) < 10
    sent = Counter(cid for batch in creates(timed) for cid in batch)
    assert all(sent[str(i)] == len(seen[str(i)]) for i in range(60))


def test_marked_items_fail_every_time_and_end_with_typed_errors(timed, clock):
    items = asks(6)
    items[1] = ask(1, " [sim:errored]")
    items[4] = ask(4, " [sim:expired]")
    results = client(timed, clock).batch(items, via="batches_api", wait=False).results(retries=1)
    assert isinstance(results[1].error, OverloadedError) and "batch_faults" in str(results[1].error)
    assert isinstance(results[4].error, APIError) and results[4].error.error_type == "expired"
    assert [r.ok for r in results] == [True, False, True, True, False, True]
    assert creates(timed) == [[str(i) for i in range(6)], ["1", "4"]]  # one retry batch of the two


def test_failed_items_can_be_sent_one_by_one_instead(timed, clock):
    items = asks(5)
    items[2] = ask(2, " [sim:expired]")
    job = client(timed, clock).batch(items, via="batches_api", wait=False)
    results = job.results(retry_via="messages")
    assert [r.text for r in results] == [f"item {i}" for i in range(5)]
    assert results[2].message.usage.service_tier != "batch"
    posts = [r for r in timed.requests if r.path == "/v1/messages"]
    assert len(posts) == 1 and "item 2" in posts[0].body["messages"][0]["content"]
    assert len(creates(timed)) == 1


def test_the_wait_is_bounded_and_the_job_goes_on(timed, clock):
    job = client(timed, clock).batch(asks(4), via="batches_api", wait=False)
    with pytest.raises(BatchTimeoutError, match="max_wait") as info:
        job.results(max_wait=600)
    assert info.value.batch_ids == [job.id] and info.value.waited == pytest.approx(600)
    assert [r.text for r in job.results()] == [f"item {i}" for i in range(4)]


def test_cancel_ends_unfinished_items_canceled_and_they_are_not_resent(timed, clock):
    job = client(timed, clock).batch(asks(8), via="batches_api", wait=False)
    assert job.cancel().processing_status == "canceling"
    results = job.results()
    assert all(isinstance(r.error, APIError) and r.error.error_type == "canceled" for r in results)
    assert len(creates(timed)) == 1


def test_a_resumed_job_holds_anew_and_settles_into_the_budget(timed, clock, tmp_path):
    path = tmp_path / "job.ckpt"
    first = client(timed, clock, budget=Budget(5)).batch(asks(10), via="batches_api", wait=False, checkpoint=path)
    first.close()  # this process gives up; the holds go back
    budget = Budget(5)
    c = client(timed, clock, budget=budget)
    job = BatchJob.resume(path, client=c)
    assert job.id == first.id and budget.as_dict()["held"] > 0
    results = job.results()
    assert [r.text for r in results] == [f"item {i}" for i in range(10)]
    assert budget.as_dict()["held"] == pytest.approx(0)
    cost = sum(batch_cost(r) for r in results)
    assert budget.spent == pytest.approx(cost) and c.stats.requests == 10
    timed.clear_requests()
    again = BatchJob.resume(path, client=c).results()  # everything is settled: loaded, nothing sent
    assert [r.text for r in again] == [r.text for r in results] and all(r.from_checkpoint for r in again)
    assert timed.requests == []


def batch_cost(result):
    return convo.PriceTable.default().cost(result.message.usage, MODEL, batch=True)


def test_resume_by_id_settles_each_item_at_its_cost(timed, clock):
    job = client(timed, clock).batch(asks(7), via="batches_api", wait=False)
    budget = Budget(5)
    c = client(timed, clock, budget=budget)
    results = BatchJob.resume(job.id, client=c).results()
    assert [r.text for r in results] == [f"item {i}" for i in range(7)]
    assert budget.spent == pytest.approx(sum(batch_cost(r) for r in results)) and budget.spent > 0
    assert c.stats.requests == 7


SUBMIT = """
import sys
from convo import Client
url, path = sys.argv[1], sys.argv[2]
client = Client(api_key="test", base_url=url, model="claude-sonnet-4-6")
asks = [{"messages": [{"role": "user", "content": f'say "item {i}"'}], "max_tokens": 20} for i in range(12)]
job = client.batch(asks, via="batches_api", wait=False, checkpoint=path)
print(job.id)
"""

COLLECT = """
import json, sys
from convo import BatchJob, Client
url, source = sys.argv[1], sys.argv[2]
client = Client(api_key="test", base_url=url, model="claude-sonnet-4-6")
job = BatchJob.resume(source, client=client)
print(json.dumps({"id": job.id, "status": job.status().processing_status,
                  "texts": [r.text if r.ok else None for r in job.results()]}))
"""


def run_script(tmp_path, name, code, *args):
    script = tmp_path / name
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("by", ["checkpoint", "id"])
def test_submit_in_one_process_collect_in_another(timed, clock, tmp_path, by):
    path = tmp_path / "job.ckpt"
    batch_id = run_script(tmp_path, "submit.py", SUBMIT, timed.base_url, path)
    assert batch_id.startswith("msgbatch_") and len(creates(timed)) == 1
    clock.advance(3 * 3600)  # hours later
    timed.clear_requests()
    got = json.loads(run_script(tmp_path, "collect.py", COLLECT, timed.base_url, path if by == "checkpoint" else batch_id))
    assert got["id"] == batch_id and got["status"] == "ended"
    assert got["texts"] == [f"item {i}" for i in range(12)]
    assert creates(timed) == []  # collected, not sent again


def test_async_twin(timed, clock):
    async def advance(seconds):
        clock.advance(seconds)

    async def main():
        async with AsyncClient(api_key="test", base_url=timed.base_url, model=MODEL, sleep=advance) as c:
            job = await c.batch(asks(9), via="batches_api", wait=False)
            assert isinstance(job, AsyncBatchJob)
            assert (await job.status()).processing_status == "in_progress"
            results = await job.results()
            again = await AsyncBatchJob.resume(job.id, client=c).results()
            return results, again

    results, again = asyncio.run(main())
    assert [r.text for r in results] == [r.text for r in again] == [f"item {i}" for i in range(9)]


def test_the_job_classes_are_twins():
    def public(cls):
        return {n: m for n, m in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}

    sync, asyn = public(BatchJob), public(AsyncBatchJob)
    assert set(sync) == set(asyn) == {"status", "results", "cancel", "close"}
    for name, fn in sync.items():
        assert inspect.signature(fn).parameters.keys() == inspect.signature(asyn[name]).parameters.keys()
        assert not inspect.iscoroutinefunction(fn) and inspect.iscoroutinefunction(asyn[name]), name
    assert inspect.signature(BatchJob.resume).parameters.keys() == inspect.signature(AsyncBatchJob.resume).parameters.keys()


def test_bad_uses_say_what_to_do(timed, clock, tmp_path):
    c = client(timed, clock)
    with pytest.raises(InvalidConfigError, match="via='batches_api'"):
        c.batch(asks(2), wait=False)
    with pytest.raises(InvalidConfigError, match="neither a batch id"):
        BatchJob.resume(tmp_path / "nope.ckpt", client=c)
    with pytest.raises(InvalidConfigError, match="AsyncClient"):
        AsyncBatchJob.resume("msgbatch_x", client=c)
    job = c.batch(asks(2), via="batches_api", wait=False)
    with pytest.raises(InvalidConfigError, match="retry_via"):
        job.results(retry_via="carrier pigeon")
    with pytest.raises(InvalidConfigError, match="retries"):
        job.results(retries=-1)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(errored=st.floats(0, 0.6), expired=st.floats(0, 0.3), retries=st.integers(0, 2), n=st.integers(1, 25))
def test_every_item_ends_exactly_once(timed, clock, errored, expired, retries, n):
    timed.batch_faults = {"errored": errored, "expired": expired}
    timed.clear_requests()
    job = client(timed, clock).batch(asks(n), via="batches_api", wait=False)
    results = job.results(retries=retries)
    assert [r.index for r in results] == list(range(n))
    seen = outcomes(timed, job.ids)
    for i, r in enumerate(results):
        history = seen[str(i)]
        assert len(history) <= retries + 1 and r.ok == (history[-1] == "succeeded")
        assert r.ok or r.error is not None


def test_the_simulator_runs_batches_on_a_faster_clock_of_their_own(clock):
    with Simulator(seed=0, clock=clock, batch_seconds=3600, batch_speed=4 * 3600) as sim:
        raw = anthropic.Anthropic(api_key="test", base_url=sim.base_url)
        made = raw.messages.batches.create(requests=[{"custom_id": "a", "params": {"model": MODEL, "max_tokens": 9,
                                                      "messages": [{"role": "user", "content": "hi"}]}}])
        clock.advance(0.2)  # 0.2 s of the simulator's clock: 48 minutes of the batches'
        assert raw.messages.batches.retrieve(made.id).processing_status == "in_progress"
        clock.advance(0.05)
        done = raw.messages.batches.retrieve(made.id)
        assert done.processing_status == "ended" and (done.ended_at - done.created_at).total_seconds() == 3600
    with pytest.raises(ValueError, match="batch_faults takes rates"):
        Simulator(batch_faults={"lost": 0.5})
    with pytest.raises(ValueError, match="batch_speed must be positive"):
        Simulator(batch_speed=0)


def test_resuming_a_checkpoint_sends_again_what_did_not_succeed(timed, clock, tmp_path):
    path = tmp_path / "job.ckpt"
    timed.batch_faults = {"errored": 1.0}
    first = client(timed, clock).batch(asks(5), via="batches_api", wait=False, checkpoint=path).results(retries=0)
    assert all(isinstance(r.error, OverloadedError) for r in first)
    timed.batch_faults = None
    job = BatchJob.resume(path, client=client(timed, clock))
    assert job.ids == []  # nothing in flight: the failed items wait to be sent again
    results = job.results()
    assert [r.text for r in results] == [f"item {i}" for i in range(5)]
    assert creates(timed) == [[str(i) for i in range(5)]] * 2
