"""Progress of map_reduce and batches: ``on_progress(done, total)`` for programs, and a
``tqdm.auto`` bar only where someone sees it (a terminal, or a Jupyter kernel)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from convo import InvalidConfigError, amap_reduce, chunk_text, map_reduce
from convo._progress import Progress

from .helpers import quick_aclient, quick_client

DOC = " ".join(f"Sentence {i} says something about topic {i % 7}." for i in range(1500))


def test_map_reduce_reports_every_chunk_then_resumes_from_the_checkpoint(fresh, tmp_path):
    calls: list[tuple[int, int | None]] = []
    n = len(chunk_text(DOC, max_tokens=800))
    client = quick_client(fresh)
    result = map_reduce(DOC, "Summarize.", client=client, chunk_tokens=800, max_tokens=100, progress=False,
                        checkpoint=tmp_path / "run.db", on_progress=lambda done, total: calls.append((done, total)))
    assert result.ok and n > 3
    assert calls == [(i, n) for i in range(1, n + 1)]  # one call per chunk, in order of completion
    again: list[tuple[int, int | None]] = []
    map_reduce(DOC, "Summarize.", client=client, chunk_tokens=800, max_tokens=100, progress=False,
               checkpoint=tmp_path / "run.db", on_progress=lambda done, total: again.append((done, total)))
    assert again == [(i, n) for i in range(1, n + 1)]  # every chunk came from the checkpoint, each reported


def test_amap_reduce_reports_too(fresh):
    calls: list[int] = []
    result = asyncio.run(amap_reduce(DOC, "Summarize.", client=quick_aclient(fresh), chunk_tokens=800,
                                     max_tokens=100, progress=False, on_progress=lambda d, t: calls.append(d)))
    assert result.ok and calls == list(range(1, len(result.partials) + 1))


def test_a_batch_reports_each_item_and_an_unknown_total_for_a_generator(fresh):
    client = quick_client(fresh)
    requests = [{"messages": [{"role": "user", "content": f"item {i}"}], "max_tokens": 20} for i in range(12)]
    calls: list[tuple[int, int | None]] = []
    results = client.batch(requests, progress=False, on_progress=lambda d, t: calls.append((d, t)))
    assert all(r.ok for r in results) and calls == [(i, 12) for i in range(1, 13)]
    streamed: list[tuple[int, int | None]] = []
    client.batch(iter(requests), progress=False, on_progress=lambda d, t: streamed.append((d, t)))
    assert streamed == [(i, None) for i in range(1, 13)]


def test_a_failing_callback_is_logged_once_and_the_run_goes_on(fresh, caplog):
    calls: list[int] = []

    def boom(done: int, total: int | None) -> None:
        calls.append(done)
        raise RuntimeError("the application's own bug")

    result = map_reduce(DOC, "Summarize.", client=quick_client(fresh), chunk_tokens=800, progress=False,
                        on_progress=boom)
    assert result.ok and result.text and calls == [1]
    warnings = [r for r in caplog.records if "on_progress raised" in r.getMessage()]
    assert len(warnings) == 1 and "own bug" in str(warnings[0].exc_info[1])


def test_on_progress_must_be_callable():
    with pytest.raises(InvalidConfigError, match="on_progress must be a callable"):
        Progress(3, desc="map", unit="chunk", on_progress=42)  # type: ignore[arg-type]


def test_the_bar_shows_on_a_terminal_or_in_jupyter_and_not_in_a_log(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert Progress(3, desc="map", unit="chunk")._bar is None  # redirected: nothing
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # as inside a Jupyter kernel
    shown = Progress(3, desc="map", unit="chunk")
    assert shown._bar is not None and type(shown._bar).__module__.startswith("tqdm")
    shown.update(2)
    assert shown._bar.n == 2 and shown.done == 2
    shown.close()
    assert Progress(3, desc="map", unit="chunk", bar=False)._bar is None  # progress=False
