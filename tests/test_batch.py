"""client.batch against the simulator, over real HTTP: order, faults, checkpoints, Batches API."""

import asyncio
import inspect
import io
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections import Counter

import anthropic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convo import APIError, AsyncClient, BadRequestError, Client, InvalidConfigError, InvalidInputError, RetryPolicy
from convo.batch import Result
from convo.checkpoint import Checkpoint, digest
from convo.sim import ManualClock, Simulator

MODEL = "claude-sonnet-4-6"
ITEM = re.compile(r'say "item (\d+)"')


def ask(i, **kw):
    return {"messages": [{"role": "user", "content": f'say "item {i}"'}], "max_tokens": 20, **kw}


def asks(n):
    return (ask(i) for i in range(n))


def client(sim, **kw):
    kw.setdefault("sleep", lambda s: None)
    return Client(api_key="test", base_url=sim.base_url, model=MODEL, **kw)


def aclient(sim, **kw):
    async def no_wait(seconds):
        pass

    kw.setdefault("sleep", no_wait)
    return AsyncClient(api_key="test", base_url=sim.base_url, model=MODEL, **kw)


def item_of(rec):
    """The item index a recorded POST /v1/messages asked for."""
    return int(ITEM.search(rec.body["messages"][0]["content"]).group(1))


def posts(sim):
    return [r for r in sim.requests if r.path == "/v1/messages"]


def assert_complete(results, n):
    assert [r.index for r in results] == list(range(n))
    assert all(isinstance(r, Result) for r in results)
    for r in results:
        assert r.ok, r.error
        assert r.text == f"item {r.index}"


# -- one request per item ---------------------------------------------------------------------


def test_2000_items_with_20_percent_faults_come_back_in_order(fresh):
    fresh.faults = {"500": 0.1, "529": 0.05, "429@0": 0.05}
    # budget=0: this test is about ordering and loss, not about the retry quota failing fast
    c = client(fresh, retry=RetryPolicy(max_attempts=12, budget=0), max_concurrency=8)
    results = c.batch(asks(2000))
    assert_complete(results, 2000)
    sent = posts(fresh)
    assert 0.15 < len(fresh.faults.seen) / len(sent) < 0.25
    # no duplicates, none lost: each item was answered exactly once, and retried only after a fault
    answered = Counter(item_of(r) for r in sent if r.status == 200)
    assert answered == Counter(range(2000))
    assert sum(r.attempts for r in results) == len(sent)
    assert max(r.attempts for r in results) > 1 and all(r.latency >= 0 for r in results)


def test_a_permanent_failure_stays_with_its_item(fresh):
    fresh.faults = {"400": 0.1}
    results = client(fresh, max_concurrency=4).batch([ask(i) for i in range(300)])
    rejected = {item_of(r) for r in posts(fresh) if r.fault == "400"}
    assert 10 < len(rejected) < 60
    assert {r.index for r in results if not r.ok} == rejected
    for r in results:
        if r.ok:
            assert r.text == f"item {r.index}" and r.attempts == 1
        else:
            assert isinstance(r.error, BadRequestError) and r.error.status_code == 400 and r.attempts == 1
            with pytest.raises(BadRequestError):
                _ = r.text


def test_an_unusable_item_fails_alone_without_being_sent(fresh):
    items = [ask(0), "not a dict", {"max_tokens": 5}, ask(3, max_tokens=-1), ask(4, model="claude-haiku-4-5")]
    results = client(fresh).batch(items)
    assert [r.ok for r in results] == [True, False, False, False, True]
    for r in results[1:4]:
        assert isinstance(r.error, InvalidInputError) and r.attempts == 0
    assert "request 1" in str(results[1].error) and "messages" in str(results[2].error)
    assert sorted(item_of(r) for r in posts(fresh)) == [0, 4]
    assert {r.body["model"] for r in posts(fresh)} == {MODEL, "claude-haiku-4-5"}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(["ok", "ok", "ok", "invalid", "rejected"]), max_size=25), window=st.integers(1, 6))
def test_results_line_up_with_requests(fresh, kinds, window):
    """Whatever the mix and the window: one Result per request, at its own index, right outcome."""
    items = [ask(i, temperature=5) if k == "rejected" else ask(i) if k == "ok" else {"max_tokens": 3} for i, k in enumerate(kinds)]
    results = client(fresh).batch(iter(items), concurrency=window)
    assert [r.index for r in results] == list(range(len(kinds)))
    for r, kind in zip(results, kinds, strict=True):
        if kind == "ok":
            assert r.text == f"item {r.index}"
        else:
            assert isinstance(r.error, BadRequestError if kind == "rejected" else InvalidInputError)


def test_a_generator_is_read_only_as_the_window_frees(fresh):
    """5,000 items from a generator: it is never ahead of the server by more than the window."""
    lead = []

    def gen():
        for i in range(5000):
            lead.append(i - len(fresh.state.recorded))  # pulled but not yet received by the server
            yield ask(i)

    results = client(fresh, max_concurrency=8).batch(gen(), concurrency=8)
    assert len(results) == 5000 and all(r.ok for r in results[::97])
    assert max(lead) <= 8


def test_async_twin_gives_the_same_results(fresh):
    items = [ask(i, temperature=5) if i % 7 == 3 else ask(i) for i in range(120)]
    sync = client(fresh).batch(items, concurrency=5)

    async def main():
        async with aclient(fresh) as c:
            return await c.batch(iter(items), concurrency=5)

    asyn = asyncio.run(main())
    assert [(r.index, r.ok) for r in sync] == [(r.index, r.ok) for r in asyn]
    assert [r.text for r in sync if r.ok] == [r.text for r in asyn if r.ok]
    assert [type(r.error) for r in sync] == [type(r.error) for r in asyn]
    assert list(inspect.signature(Client.batch).parameters) == list(inspect.signature(AsyncClient.batch).parameters)


def test_bad_arguments_say_what_to_pass(fresh):
    c = client(fresh)
    with pytest.raises(InvalidConfigError, match="via"):
        c.batch([ask(0)], via="files")
    with pytest.raises(InvalidConfigError, match="concurrency"):
        c.batch([ask(0)], concurrency=0)
    with pytest.raises(InvalidInputError, match="iterable of request dicts"):
        c.batch(ask(0))
    assert posts(fresh) == []


def test_progress_bar_only_on_a_terminal(fresh, monkeypatch, capsys):
    client(fresh).batch([ask(i) for i in range(5)])
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    client(fresh).batch([ask(i) for i in range(5)])
    assert "5/5" in term.getvalue()
    term.truncate(0)
    client(fresh).batch([ask(i) for i in range(5)], progress=False)
    assert term.getvalue().strip("\x00") == ""


# -- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_rerun_sends_only_what_did_not_succeed(fresh, tmp_path):
    path = tmp_path / "run.ckpt"
    c = client(fresh, max_concurrency=1)
    fresh.faults = ["ok", "400"]  # item 1 is rejected once
    first = c.batch(asks(20), checkpoint=path)
    assert [r.ok for r in first].count(False) == 1 and not first[1].ok
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    fresh.clear_requests()
    items = [ask(i) for i in range(25)]
    items[5] = ask(5, max_tokens=30)  # a changed request is not answered from the checkpoint
    again = c.batch(items, checkpoint=path)
    assert_complete(again, 25)
    assert sorted(item_of(r) for r in posts(fresh)) == [1, 5, *range(20, 25)]
    assert [r.index for r in again if r.from_checkpoint] == [i for i in range(20) if i not in (1, 5)]
    assert again[0].message == first[0].message and again[0].attempts == first[0].attempts

    fresh.clear_requests()
    assert_complete(c.batch(items, checkpoint=path), 25)
    assert posts(fresh) == []


SCRIPT = """
import sys
from convo import Client
url, path, n, via = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = Client(api_key="test", base_url=url, model="claude-sonnet-4-6", max_concurrency=4)
asks = ({"messages": [{"role": "user", "content": f'say "item {i}"'}], "max_tokens": 20} for i in range(n))
client.batch(asks, checkpoint=path, via=via)
"""


def start_batch(tmp_path, url, path, n, via="messages"):
    script = tmp_path / "run_batch.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), url, str(path), str(n), via], stderr=subprocess.PIPE)


def kill_when(proc, ready, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the batch process ended early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the batch process made no progress")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def test_a_batch_killed_half_way_resumes_without_resending(tmp_path):
    n = 600
    path = tmp_path / "run.ckpt"
    with Simulator(seed=0, latency=0.01) as sim:
        proc = start_batch(tmp_path, sim.base_url, path, n)
        while not path.exists():
            time.sleep(0.01)
        with Checkpoint(path) as ckpt:
            kill_when(proc, lambda: len(ckpt) >= 60)
        with Checkpoint(path) as ckpt:
            saved = len(ckpt)
        assert 60 <= saved < n
        # A request cut off by the kill may be logged without a body: it never arrived whole.
        before = {item_of(r) for r in posts(sim) if r.body is not None}
        sim.clear_requests()
        results = client(sim, max_concurrency=8).batch(asks(n), checkpoint=path)
        assert_complete(results, n)
        loaded = {r.index for r in results if r.from_checkpoint}
        assert len(loaded) == saved and loaded <= before
        resent = [item_of(r) for r in posts(sim)]
        assert sorted(resent) == sorted(set(range(n)) - loaded)  # finished items were not sent again


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.tuples(st.text(max_size=6), st.recursive(st.none() | st.integers() | st.text(max_size=5), lambda c: st.lists(c, max_size=3))),
        max_size=8,
    )
)
def test_checkpoint_entries_come_back_only_for_their_input(tmp_path_factory, entries):
    path = tmp_path_factory.mktemp("ck") / "c.ckpt"
    with Checkpoint(path) as ckpt:
        ckpt.put_many((name, digest(inp), value) for name, (inp, value) in entries.items())
    with Checkpoint(path) as ckpt:  # reopened: it was on disk
        assert len(ckpt) == len(entries)
        for name, (inp, value) in entries.items():
            assert ckpt.get(name, digest(inp)) == value
            assert ckpt.get(name, digest(inp + "!")) is None


def test_checkpoint_meta_and_foreign_files(tmp_path):
    with Checkpoint(tmp_path / "a.ckpt") as ckpt:
        ckpt.set_meta("job", {"id": "msgbatch_1"})
        assert ckpt.meta("job") == {"id": "msgbatch_1"}
        ckpt.put_many([("0", "d", 1)], meta={"job": None})
        assert ckpt.meta("job") is None and ckpt.get("0", "d") == 1
    (tmp_path / "junk.ckpt").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InvalidConfigError, match="not a convo checkpoint"):
        Checkpoint(tmp_path / "junk.ckpt")


# -- through the Message Batches API --------------------------------------------------------------


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def timed(clock):
    """A simulator whose batches take 120 s of a clock that moves only when the client sleeps."""
    with Simulator(seed=0, clock=clock, batch_seconds=120) as s:
        yield s


def batch_calls(sim):
    return [(r.method, r.path.removeprefix("/v1/messages/batches")) for r in sim.requests if "/batches" in r.path]


def test_batches_api_end_to_end(timed, clock):
    items = [ask(i, temperature=5) if i in (3, 17) else ask(i) for i in range(40)]
    results = client(timed, sleep=clock.advance).batch(items, via="batches_api")
    assert [r.index for r in results] == list(range(40))
    for r in results:
        if r.index in (3, 17):
            assert isinstance(r.error, BadRequestError) and "temperature" in str(r.error)
        else:
            assert r.text == f"item {r.index}" and r.message.usage.service_tier == "batch"
            assert r.latency == pytest.approx(120)
    calls = batch_calls(timed)
    assert calls[0] == ("POST", "") and calls[-1][1].endswith("/results")
    assert 3 <= len(calls) <= 15  # polled with a growing interval, not in a tight loop
    created = timed.requests[0].body["requests"]
    assert [r["custom_id"] for r in created] == [str(i) for i in range(40)]
    assert created[0]["params"] == {"model": MODEL, "max_tokens": 20, "messages": items[0]["messages"]}
    assert posts(timed) == []


def test_batches_api_canceled_items_are_errors_and_a_rerun_sends_them(timed, clock, tmp_path):
    path = tmp_path / "b.ckpt"
    raw = anthropic.Anthropic(api_key="test", base_url=timed.base_url)
    canceled = []

    def cancel_then_wait(seconds):
        if not canceled:  # the first wait comes right after the create: cancel the batch
            canceled.append(raw.messages.batches.list(limit=1).data[0].id)
            raw.messages.batches.cancel(canceled[0])
        clock.advance(seconds)

    results = client(timed, sleep=cancel_then_wait).batch(asks(10), via="batches_api", checkpoint=path)
    assert all(isinstance(r.error, APIError) and r.error.error_type == "canceled" for r in results)
    assert "canceled" in str(results[0].error)
    timed.clear_requests()
    again = client(timed, sleep=clock.advance).batch(asks(10), via="batches_api", checkpoint=path)
    assert_complete(again, 10)
    assert [m for m, _ in batch_calls(timed)].count("POST") == 1  # a new batch, not the canceled one


def test_batches_api_resumes_the_same_batch_after_kill_9(timed, clock, tmp_path):
    path = tmp_path / "b.ckpt"
    proc = start_batch(tmp_path, timed.base_url, path, 30, via="batches_api")
    kill_when(proc, lambda: any(m == "GET" for m, _ in batch_calls(timed)))  # created, recorded, polling
    assert [m for m, _ in batch_calls(timed)].count("POST") == 1
    batch_id = next(p for m, p in batch_calls(timed) if m == "GET").strip("/")
    timed.clear_requests()
    results = client(timed, sleep=clock.advance).batch(asks(30), via="batches_api", checkpoint=path)
    assert_complete(results, 30)
    calls = batch_calls(timed)
    assert all(m == "GET" and batch_id in p for m, p in calls)  # no new batch: the old one was resumed
    timed.clear_requests()
    assert_complete(client(timed).batch(asks(30), via="batches_api", checkpoint=path), 30)
    assert timed.requests == []  # all loaded from the checkpoint


def test_batches_api_async_twin(timed, clock):
    async def advance(seconds):
        clock.advance(seconds)

    async def main():
        async with aclient(timed, sleep=advance) as c:
            return await c.batch(asks(25), via="batches_api")

    assert_complete(asyncio.run(main()), 25)
