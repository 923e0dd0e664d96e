"""The ``convo`` command, run as users run it: ``python -m convo`` and the console script in a
subprocess (and, for the many small error cases, ``convo.cli.main`` in this process).

No test has an API key: the commands use their embedded simulator, or one of the tests' own
through ``--base-url``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest

from convo import PriceTable, chunk_text, count_tokens
from convo.cli import main
from convo.models import DEFAULT_MODEL
from convo.sim import Simulator

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "python-docs.txt"
MODEL = DEFAULT_MODEL
SECRET = "sk-ant-api03-test-secret-never-printed"
SCRIPT = Path(sys.executable).with_name("convo")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")}
    env.update(extra)
    return env


def convo(*args: str, stdin: str = "", cwd: Path | None = None, env: dict[str, str] | None = None,
          script: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the command and wait for it; stdin is a pipe (so chat reads lines, not a terminal)."""
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "convo"]
    return subprocess.run([*command, *args], check=False, input=stdin, capture_output=True, text=True, cwd=cwd,
                          env=env if env is not None else _env(), timeout=120)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("convo: error: "), stderr
    return lines[0]


@pytest.fixture(scope="module")
def sim():
    with Simulator(seed=0) as server:
        yield server


# -- chat ----------------------------------------------------------------------------------------


def test_chat_through_a_pipe_answers_saves_and_reloads(tmp_path):
    first = convo(
        "chat", "--system", "You are terse.", "--budget", "4000",
        stdin="Hello, my name is Ada and I study graph theory.\n/tokens\nWhat is the capital of France?\n"
              "/undo\n/tokens\n/save chat.json\n/quit\nthis line is never sent\n",
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    out, err = first.stdout.splitlines(), first.stderr.splitlines()
    # stdout: the two replies only; stderr: the simulator's SIMULATED notice, then what commands print
    assert len(out) == 2, first.stdout
    assert re.match(r"convo: SIMULATED \(no ANTHROPIC_API_KEY\): requests go to the embedded simulator at "
                    r"http://127\.0\.0\.1:\d+", err[0])
    assert 'Here is what I took from it: "Hello, my name is Ada and I study graph theory"' in out[0]
    assert re.fullmatch(r"next request: \d+ input tokens \(estimate\) \+ 1,024 for the reply = [\d,]+ of the "
                        r"4,000-token budget \(\d+%\)", err[1])
    assert "history: 2 messages" in err[2]
    assert "capital" in out[1] and "France" in out[1]
    assert err[4] == "removed the last exchange (2 messages); 2 left"
    assert "history: 2 messages" in err[6]
    assert err[8] == "saved 2 messages to chat.json"
    assert "never sent" not in first.stdout
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert saved["system"] == "You are terse." and saved["budget"] == 4000

    second = convo(
        "chat", "--load", "chat.json",
        stdin="/tokens\nsummarize our conversation\n/reset\n/tokens\n/load chat.json\n/tokens\n",
        cwd=tmp_path,
    )
    assert second.returncode == 0, second.stderr
    out, err = second.stdout.splitlines(), second.stderr.splitlines()[1:]  # after the SIMULATED line
    assert "of the 4,000-token budget" in err[0] and "history: 2 messages" in err[1]
    assert len(out) == 1 and "Ada" in out[0] and "graph theory" in out[0]  # the reply draws on the restored history
    assert err[3] == "the history is empty (the system prompt stays)"
    assert "history: 0 messages" in err[5]
    assert err[7] == f"loaded 2 messages from chat.json ({MODEL}, budget 4,000 tokens)"
    assert "history: 2 messages" in err[9]


def test_chat_joins_lines_into_one_message_and_says_when_turns_are_dropped(tmp_path):
    words = " ".join(f"word{i}" for i in range(60))
    script = ['"""', "line one", "line two", '"""', "first \\", "second",
              *(f"Message {i}: {words}" for i in range(8)), "/save chat.json"]
    run = convo("chat", "--budget", "1400", "--max-tokens", "200", stdin="\n".join(script) + "\n", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    messages = json.loads((tmp_path / "chat.json").read_text())["messages"]
    assert messages[0]["content"] == "line one\nline two"
    assert messages[2]["content"] == "first \nsecond"
    assert len(run.stdout.splitlines()) == 10  # one line per reply: nothing else on stdout
    dropped = [line for line in run.stderr.splitlines() if "were dropped" in line]
    assert dropped and "the 1,400-token budget" in dropped[0] and "--strategy summarize" in dropped[0]


def test_chat_stats_and_summarize_strategy_in_process(sim, tmp_path, monkeypatch, capsys):
    lines = [f"Message {i}: the quick brown fox number {i} jumps over the lazy dog near the river bank." for i in range(12)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join([*lines, "/stats", "/tokens"]) + "\n"))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["chat", "--base-url", sim.base_url, "--strategy", "summarize", "--budget", "700", "--max-tokens", "150"])
    assert exit_.value.code == 0
    out, err = capsys.readouterr()
    assert "summarized the first" in err
    assert len(out.splitlines()) == 12  # the replies; /stats and /tokens print on stderr
    assert re.search(r"^requests +1[3-9]$", err, re.MULTILINE)  # 12 replies and at least one summary
    assert re.search(r"the first \d+ turns are summarized", err)


def test_chat_errors_end_a_piped_run_with_one_line(sim, monkeypatch, capsys):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    for script, message in (
        ("/load missing.json\n", "missing.json does not exist"),
        ("/undo\n", "nothing to undo"),
        ("/frobnicate\n", "unknown command /frobnicate"),
        ("/save\n", "/save needs a file name"),
    ):
        monkeypatch.setattr(sys, "stdin", io.StringIO(script + "hello\n"))
        with pytest.raises(SystemExit) as exit_:
            main(["chat", "--base-url", sim.base_url])
        out, err = capsys.readouterr()
        assert exit_.value.code != 0 and out == ""
        assert message in one_error_line(err)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_chat_in_tmux_streams_replies_and_saves(tmp_path):
    server = f"convo-test-{os.getpid()}"  # a private tmux server, killed at the end
    tmux = ["tmux", "-L", server]
    command = f"cd {tmp_path} && env -u ANTHROPIC_API_KEY {sys.executable} -m convo chat; sleep 60"
    env = _env(TERM="xterm-256color")
    subprocess.run([*tmux, "new-session", "-d", "-s", "chat", "-x", "160", "-y", "40", command], env=env, check=True)

    def pane() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "chat"], check=False, capture_output=True,
                              text=True).stdout

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 60
        while text not in (screen := pane()):
            assert time.monotonic() < deadline, f"{text!r} never appeared:\n{screen}"
            time.sleep(0.1)
        return screen

    try:
        wait_for("you>")  # capture-pane drops trailing spaces
        subprocess.run([*tmux, "send-keys", "-t", "chat", "Hello from tmux, my name is Ada", "Enter"], check=True)
        screen = wait_for("This is turn 1 of our conversation.")
        assert 'Here is what I took from it: "Hello from tmux, my name is Ada"' in screen
        subprocess.run([*tmux, "send-keys", "-t", "chat", "/save chat.json", "Enter"], check=True)
        wait_for("saved 2 messages to chat.json")
        subprocess.run([*tmux, "send-keys", "-t", "chat", "/quit", "Enter"], check=True)
        assert "convo: SIMULATED (no ANTHROPIC_API_KEY): requests go to the embedded simulator" in pane()
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)
    assert json.loads((tmp_path / "chat.json").read_text())["messages"][0]["content"] == "Hello from tmux, my name is Ada"


# -- summarize and count -------------------------------------------------------------------------------


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed (pip install -e .)")
def test_summarize_prints_a_summary_and_its_cost_with_the_console_script(tmp_path):
    # --sim: the simulator even though a key is set; the key is never printed
    run = convo("summarize", "--sim", str(SAMPLE), "--chunk-tokens", "4000", script=True,
                env=_env(ANTHROPIC_API_KEY=SECRET))
    assert run.returncode == 0, run.stderr
    assert SECRET not in run.stdout + run.stderr
    document = SAMPLE.read_text(encoding="utf-8")
    summary = run.stdout.strip()
    assert summary.startswith("Summary: ") and len(summary) > 300
    sentences = re.split(r"(?<=[.!?])\s+", summary.removeprefix("Summary: "))
    assert sum(s.removeprefix("Summary: ") in document for s in sentences) >= len(sentences) // 2  # extractive
    chunks = len(chunk_text(document, max_tokens=4000))
    assert f"{count_tokens(document):,} tokens in {chunks} chunks of at most 4,000" in run.stderr
    assert "convo: SIMULATED (--sim): requests go to the embedded simulator" in run.stderr
    cost = re.search(rf"{chunks + 1} requests, [\d,]+ input \+ [\d,]+ output tokens, cost \$(\d+\.\d{{4}}) "
                     rf"\(SIMULATED: what {MODEL} would charge for the simulator's tokens\)", run.stderr)
    assert cost is not None, run.stderr
    # the worst case priced before the run is an upper bound of what it cost
    too_low = convo("summarize", "--sim", str(SAMPLE), "--chunk-tokens", "4000", "--max-usd", cost.group(1),
                    env=_env(ANTHROPIC_API_KEY=SECRET))
    assert too_low.returncode == 1 and too_low.stdout == ""
    assert "above --max-usd" in too_low.stderr and "nothing was sent" in too_low.stderr


def test_count_from_stdin():
    document = SAMPLE.read_text(encoding="utf-8")[:40_000]
    run = convo("count", "-", "--chunk-tokens", "1000", stdin=document)
    assert run.returncode == 0 and run.stderr == ""  # counting needs no backend
    tokens, chunks = count_tokens(document), len(chunk_text(document, max_tokens=1000))
    assert run.stdout.splitlines()[0] == f"<stdin>: {len(document):,} characters"
    assert re.search(rf"^  tokens +{tokens:,}  \(offline estimate\)$", run.stdout, re.MULTILINE)
    assert re.search(rf"^  chunks +{chunks}  \(at most 1,000 tokens each\)$", run.stdout, re.MULTILINE)
    table = PriceTable.default()
    for model in table.models:
        cost = table.cost({"input_tokens": tokens}, model)
        assert re.search(rf"^  {model} +\${cost:,.4f}$", run.stdout, re.MULTILINE)


def test_count_exact_as_json(sim, tmp_path, monkeypatch, capsys):
    document = SAMPLE.read_text(encoding="utf-8")[:40_000]
    (tmp_path / "doc.txt").write_text(document, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["count", "doc.txt", "--exact", "--json", "--base-url", sim.base_url])
    out, err = capsys.readouterr()
    assert exit_.value.code == 0 and err == ""
    data = json.loads(out)
    assert data["tokens_estimate"] == count_tokens(document)
    assert data["chunks"] == len(chunk_text(document, max_tokens=2000))
    exact = anthropic.Anthropic(base_url=sim.base_url, api_key="test").messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": document}]
    ).input_tokens
    assert data["tokens_exact"] == exact and data["exact_model"] == MODEL and data["backend"] == "server"
    assert data["input_cost_usd"][MODEL] == pytest.approx(exact * PriceTable.default().price(MODEL).input / 1e6)


def test_count_several_files_with_a_total(tmp_path):
    texts = {"a.txt": SAMPLE.read_text(encoding="utf-8")[:30_000], "b.md": "# Title\n\nA short note, in Markdown.\n"}
    for name, text in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    run = convo("count", "a.txt", "b.md", "--chunk-tokens", "1000", cwd=tmp_path)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    counts = {name: (len(t), count_tokens(t), len(chunk_text(t, max_tokens=1000))) for name, t in texts.items()}
    for name, (chars, tokens, chunks) in counts.items():
        assert re.search(rf"^{re.escape(name)} +{chars:,} +{tokens:,} +{chunks}$", run.stdout, re.MULTILINE), run.stdout
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    assert re.search(rf"^total +{total[0]:,} +{total[1]:,} +{total[2]}$", run.stdout, re.MULTILINE)
    assert f"estimated input cost of {total[1]:,} tokens" in run.stdout
    data = json.loads(convo("count", "a.txt", "b.md", "--json", cwd=tmp_path).stdout)
    assert [f["file"] for f in data["files"]] == ["a.txt", "b.md"] and data["backend"] == "offline"
    assert data["tokens_estimate"] == total[1] and data["tokens_exact"] is None


def test_exact_on_the_simulator_needs_sim_and_is_labelled(tmp_path):
    (tmp_path / "x.txt").write_text("Some text to count, exactly.", encoding="utf-8")
    refused = convo("count", "x.txt", "--exact", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "--exact asks the API's count_tokens, but there is no ANTHROPIC_API_KEY" in one_error_line(refused.stderr)
    run = convo("count", "x.txt", "--exact", "--sim", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["backend"] == "simulator" and data["tokens_exact"] > 0
    assert run.stderr.startswith("convo: SIMULATED (--sim): ")
    table = convo("count", "x.txt", "--exact", "--sim", cwd=tmp_path).stdout
    assert "SIMULATED" in table


class _Terminal(io.StringIO):
    """Standard input that says it is a terminal, with the user's typed answers."""

    def isatty(self) -> bool:
        return True


def _worst_case_doc(tmp_path: Path) -> str:
    (tmp_path / "doc.txt").write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    return "doc.txt"  # 60k tokens in chunks of 500: a worst case over $1 at Sonnet prices


@pytest.mark.parametrize("answer", ["n", "y"])
def test_a_terminal_is_asked_before_spending_more_than_a_dollar(answer, fresh, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setattr(sys, "stdin", _Terminal(answer + "\n"))
    args = ["summarize", _worst_case_doc(tmp_path), "--chunk-tokens", "500", "--no-progress", "--base-url", fresh.base_url]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out, err = capsys.readouterr()
    assert re.search(r"this summary may cost at most \$\d+\.\d{4} for 13\d requests \(worst case, server\)\. Go on\?", err)
    sent = [r for r in fresh.requests if r.path.endswith("/messages")]
    if answer == "n":
        assert exit_.value.code == 1 and out == "" and sent == []
        assert "not confirmed; nothing was sent" in err
    else:
        assert exit_.value.code == 0 and out.startswith("Summary: ") and len(sent) > 100


def test_no_question_under_max_usd_or_on_the_simulator(fresh, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    doc = _worst_case_doc(tmp_path)
    for extra in (["--max-usd", "50", "--base-url", fresh.base_url], ["--sim"]):
        monkeypatch.setattr(sys, "stdin", _Terminal(""))  # any question would read EOF and abort
        with pytest.raises(SystemExit) as exit_:
            main(["summarize", doc, "--chunk-tokens", "2000", "--no-progress", *extra])
        out, err = capsys.readouterr()
        assert exit_.value.code == 0 and "Go on?" not in err and out.startswith("Summary: "), err


def test_timeout_gives_up_on_a_slow_server(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    (tmp_path / "x.txt").write_text("A short text to summarize.", encoding="utf-8")
    with Simulator(seed=0, latency=30) as slow:
        url = slow.base_url
        start = time.monotonic()
        with pytest.raises(SystemExit) as exit_:
            main(["summarize", "x.txt", "--no-progress", "--base-url", slow.base_url, "--timeout", "0.3"])
        elapsed = time.monotonic() - start
    _, err = capsys.readouterr()
    assert exit_.value.code == 1 and elapsed < 20
    assert f"could not reach {url}; check --base-url" in err


# -- sim ---------------------------------------------------------------------------------------------


def test_sim_serves_an_sdk_request_until_sigint():
    proc = subprocess.Popen([sys.executable, "-m", "convo", "sim", "--port", "0", "--rpm", "1000"],
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        line = proc.stderr.readline()
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line).group(1)
        sdk = anthropic.Anthropic(base_url=url, api_key="test", max_retries=0)
        reply = sdk.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": 'say "pong"'}])
        assert reply.content[0].text == "pong"
        headers = sdk.messages.with_raw_response.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]).headers
        assert headers["anthropic-ratelimit-requests-limit"] == "1000"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stderr.read() and "Traceback" not in line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- user errors -------------------------------------------------------------------------------------


def test_a_user_error_exits_non_zero_with_one_line_and_no_traceback(tmp_path):
    run = convo("summarize", "no-such-file.txt", cwd=tmp_path)
    assert run.returncode == 1
    assert one_error_line(run.stderr) == "convo: error: no-such-file.txt: no such file; check the path"
    assert run.stdout == ""


@pytest.mark.parametrize("args, status, message", [
    (["count"], 2, "Missing argument 'FILE|-...'"),
    (["count", "x.txt", "--chunk-tokens", "0"], 2, "Invalid value for '--chunk-tokens'"),
    (["count", "x.txt", "y.txt"], 1, "y.txt: no such file"),
    (["chat", "--strategy", "forget"], 2, "Invalid value for '--strategy'"),
    (["nope"], 2, "No such command 'nope'"),
    (["count", "binary.bin"], 1, "binary.bin"),
    (["count", "empty.txt"], 1, "empty.txt is empty"),
    (["chat", "--budget", "5", "--system", "You are a very careful assistant with many rules to follow."], 1,
     "does not fit in budget=5"),
    (["chat", "--load", "bad.json"], 1, "bad.json is not valid JSON"),
    (["sim", "--faults", "429=0.1,500"], 1, "give either a schedule"),
    (["count", "x.txt", "--exact", "--base-url", "http://127.0.0.1:9"], 1, "the exact count of x.txt failed"),
    (["count", "x.txt", "--exact", "--base-url", "http://127.0.0.1:9", "--timeout", "1"], 1,
     "could not reach http://127.0.0.1:9; check --base-url"),
    (["summarize", "x.txt", "--chunk-tokens", "5"], 2, "5 is below 100: every chunk is one request"),
    (["count", "x.txt", "--chunk-tokens", "99"], 2, "99 is below 100"),
    (["summarize", "x.txt", "--timeout", "0"], 2, "Invalid value for '--timeout'"),
])
def test_user_errors_in_process(args, status, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    (tmp_path / "x.txt").write_text("Some text to count.", encoding="utf-8")
    (tmp_path / "binary.bin").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(SystemExit) as exit_:
        main(args)
    _, err = capsys.readouterr()
    assert exit_.value.code == status
    line = one_error_line(err)
    assert message in line and SECRET not in line


def test_without_the_sim_extra_the_error_says_how_to_install_it(tmp_path):
    (tmp_path / "x.txt").write_text("A short text to summarize.", encoding="utf-8")
    code = ("import sys; sys.modules['aiohttp'] = None  # as if convo[sim] were not installed\n"
            "from convo.cli import main; main(['summarize', 'x.txt'])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=_env(),
                         timeout=120, check=False)
    assert run.returncode == 1 and run.stdout == ""
    assert "pip install 'convo[sim]'" in one_error_line(run.stderr.splitlines()[-1])


def test_a_wrong_key_or_model_error_names_the_variable_or_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("Some text to count.", encoding="utf-8")
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    with Simulator(seed=0, api_key="another-key-entirely") as locked:
        for args, fix in ((["count", "x.txt", "--exact"], "check ANTHROPIC_API_KEY (the key sent to "),
                          (["summarize", "x.txt", "--no-progress"], "or use --sim to run offline")):
            with pytest.raises(SystemExit) as exit_:
                main([*args, "--base-url", locked.base_url])
            _, err = capsys.readouterr()
            line = one_error_line(err.splitlines()[-1])
            assert exit_.value.code == 1 and "401" in line and fix in line and SECRET not in line


def test_sim_with_a_bad_fault_spec_says_what_is_wrong(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["sim", "--port", "0", "--faults", "bogus@x"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "bogus@x" in err and "must be a number" in err and "Traceback" not in err


def test_the_worst_case_allows_for_the_newer_tokenizer():
    from convo.cli.document import ESTIMATE_MARGIN, NEW_TOKENIZER, estimate_margin, worst_case

    assert estimate_margin("claude-sonnet-4-6") == ESTIMATE_MARGIN  # the older tokenizer
    assert estimate_margin("claude-sonnet-5-5") == pytest.approx(ESTIMATE_MARGIN * NEW_TOKENIZER)
    assert estimate_margin("claude-opus-4-7") == estimate_margin("claude-sonnet-5-5")  # 4.7 brought it
    assert estimate_margin("some-future-model") == estimate_margin("claude-sonnet-5-5")  # unknown: the larger
    older = worst_case([2000] * 10, 20, 500, margin=estimate_margin("claude-sonnet-4-6"))
    newer = worst_case([2000] * 10, 20, 500, margin=estimate_margin("claude-sonnet-5-5"))
    assert newer[1] > older[1] * 1.2 and newer[0] == older[0] and newer[2] == older[2]
