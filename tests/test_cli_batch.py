"""``convo batch submit|status|collect`` and ``convo summarize --batch``, run as users run them
(``python -m convo`` in a subprocess), against simulators of the tests' own through --base-url."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convo.sim import ManualClock, Simulator

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "python-docs.txt"
MODEL = "claude-sonnet-4-6"


def convo(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "convo", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def jsonl(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "requests.jsonl"
    rows = [{"messages": [{"role": "user", "content": f'say "{text}"'}], "max_tokens": 20, "model": MODEL}
            for text in lines]
    rows[0] = {"custom_id": "mine", "params": rows[0]}  # the API's own form is read too
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def created(sim):
    return [rec for rec in sim.requests if rec.method == "POST" and rec.path == "/v1/messages/batches"]


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def timed(clock):
    with Simulator(seed=0, clock=clock, batch_seconds=3600) as s:
        yield s


def test_submit_status_collect_across_commands(timed, clock, tmp_path):
    words = ["alpha", "bravo", "charlie", "delta"]
    sub = convo("batch", "submit", str(jsonl(tmp_path, words)), "--base-url", timed.base_url)
    assert sub.returncode == 0, sub.stderr
    batch_id = sub.stdout.strip()
    assert batch_id.startswith("msgbatch_") and "4 of 4 requests submitted" in sub.stderr
    assert [r["custom_id"] for r in created(timed)[0].body["requests"]] == ["0", "1", "2", "3"]

    state = convo("batch", "status", batch_id, "--base-url", timed.base_url)
    assert state.returncode == 0, state.stderr
    got = json.loads(state.stdout)
    assert got["processing_status"] == "in_progress" and got["request_counts"]["processing"] == 4
    assert got["ids"] == [batch_id] and got["backend"] == "server"

    clock.advance(2 * 3600)  # hours later
    assert json.loads(convo("batch", "status", batch_id, "--base-url", timed.base_url).stdout)["processing_status"] == "ended"
    out = convo("batch", "collect", batch_id, "--base-url", timed.base_url)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2, 3]
    assert [line["text"] for line in lines] == words
    assert all(line["result"]["type"] == "succeeded" for line in lines)
    assert "4 succeeded, 0 failed" in out.stderr and "at batch prices" in out.stderr
    assert len(created(timed)) == 1


def test_collect_from_a_checkpoint_sends_failed_items_again(tmp_path):
    # a real clock, batches 7200 times faster: an hour of batch processing in half a second
    with Simulator(seed=0, batch_seconds=3600, batch_speed=7200) as sim:
        path = jsonl(tmp_path, ["one", "two [sim:errored]", "three"])
        ckpt = tmp_path / "job.ckpt"
        sub = convo("batch", "submit", str(path), "--checkpoint", str(ckpt), "--base-url", sim.base_url)
        assert sub.returncode == 0, sub.stderr
        out = convo("batch", "collect", str(ckpt), "--retries", "1", "--base-url", sim.base_url)
        assert out.returncode == 1  # one request failed for good
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [line["text"] for line in lines] == ["one", None, "three"]
        assert lines[1]["result"]["error"]["type"] == "overloaded_error"
        assert [len(r.body["requests"]) for r in created(sim)] == [3, 1]  # sent again once, alone


def test_max_usd_refuses_what_it_cannot_cover_and_sends_nothing(timed, tmp_path):
    sub = convo("batch", "submit", str(jsonl(tmp_path, ["a", "b"])), "--max-usd", "0.000001", "--base-url", timed.base_url)
    assert sub.returncode == 1
    assert "request 0 was not sent" in sub.stderr and "budget" in sub.stderr
    assert created(timed) == [] and sub.stdout == ""


def test_a_bad_line_is_one_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": []}\nnot json\n')
    done = convo("batch", "submit", str(path), "--sim")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "line 2: not JSON" in done.stderr.splitlines()[-1]


def test_summarize_batch_goes_through_the_batches_endpoint(tmp_path):
    with Simulator(seed=0, batch_seconds=3600, batch_speed=7200) as sim:
        done = convo("summarize", str(SAMPLE), "--batch", "--chunk-tokens", "20000", "--no-progress",
                     "--base-url", sim.base_url, "--model", MODEL)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()
        assert "at batch prices" in done.stderr and "through messages.create" in done.stderr
        assert [r for r in sim.requests if r.path == "/v1/messages"] == []
        assert len(created(sim)) == 2  # the map, then the final combine as a batch of one
