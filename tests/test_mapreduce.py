"""map_reduce / amap_reduce on the simulator over a long real document (the stdlib's pydoc topics)."""

import asyncio
import inspect
import os
import stat

import pytest

import convo
from convo import InvalidConfigError
from convo.chunking import chunk_text
from convo.mapreduce import MapReduceResult, amap_reduce, map_reduce

from .helpers import quick_aclient, quick_client

MODEL = "claude-sonnet-4-6"
ASK = "Summarize this part of the Python reference."


def _document() -> str:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k].strip() for k in sorted(topics))
    return text[:60_000]


DOC = _document()


client, aclient = quick_client, quick_aclient


def posts(sim):
    return [r.body for r in sim.requests if r.path == "/v1/messages"]


def content(body):
    return body["messages"][-1]["content"]


def run(sim, **kw):
    kw.setdefault("chunk_tokens", 1500)
    kw.setdefault("max_tokens", 150)
    kw.setdefault("progress", False)
    return map_reduce(kw.pop("doc", DOC), ASK, client=kw.pop("c", None) or client(sim), **kw)


def test_partials_come_back_in_document_order(fresh, capfd):
    result = run(fresh, progress=True)  # stderr is not a terminal here: no bar
    assert capfd.readouterr().err == ""
    chunks = chunk_text(DOC, max_tokens=1500, counter=convo.tokens.default_counter())
    assert isinstance(result, MapReduceResult) and result.ok and result.levels == 0
    assert [p.chunk.text for p in result.partials] == [c.text for c in chunks] and len(chunks) > 5
    vocab = [set(c.text.split()) for c in chunks]
    for i, p in enumerate(result.partials):  # the offline model's summary is extractive: made of its chunk
        assert p.text.startswith("Summary: ")
        words = p.text.removeprefix("Summary: ").split()
        overlap = [sum(w in v for w in words) for v in vocab]
        assert overlap.index(max(overlap)) == i and overlap[i] > 0.9 * len(words)
    bodies = posts(fresh)
    assert len(bodies) == len(chunks) + 1 == result.usage["requests"]
    final = content(bodies[-1])  # the combining request lists the answers in order
    positions = [final.index(p.text) for p in result.partials]
    assert positions == sorted(positions)
    assert result.text and result.usage["input_tokens"] > 0 and result.usage["output_tokens"] > 0
    assert result.cost is not None and result.cost > 0


def test_answers_that_do_not_fit_are_combined_level_by_level(fresh):
    c = client(fresh)
    result = run(fresh, c=c, context_tokens=700)
    assert result.ok and result.levels >= 1 and result.text
    n = len(result.partials)
    combining = posts(fresh)[n:]
    assert len(combining) >= 3 and result.usage["requests"] == n + len(combining)
    for body in combining:  # every combining request fits the context budget
        assert c._ctx.estimate_input(body) + body["max_tokens"] <= 700
    assert "answer part=" in content(combining[-1])


def test_resume_sends_only_the_unfinished_chunks(fresh, tmp_path):
    path = tmp_path / "run.ckpt"
    fresh.faults = ["ok"] * 3 + ["400", "400"]  # chunks 4 and 5 fail; 400 is never retried
    first = run(fresh, checkpoint=path, concurrency=1)
    n = len(first.partials)
    assert [p.chunk.index for p in first.failed] == [3, 4]
    assert all(isinstance(p.error, convo.BadRequestError) for p in first.failed)
    assert first.text and not first.ok  # combined from the chunks that succeeded
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    fresh.clear_requests()
    second = run(fresh, checkpoint=path)
    assert second.ok
    resent = [content(b) for b in posts(fresh)[:-1]]
    assert len(resent) == 2
    assert f'part="4 of {n}"' in resent[0] + resent[1] and f'part="5 of {n}"' in resent[0] + resent[1]
    assert [p.cached for p in second.partials] == [i not in (3, 4) for i in range(n)]
    assert [p.text for p in second.partials if p.cached] == [p.text for p in first.partials if p.ok]
    assert second.usage["requests"] == 3

    fresh.clear_requests()  # another instruction (or document) never reuses the stored answers
    other = map_reduce(DOC, "Analyze this part.", client=client(fresh), chunk_tokens=1500, max_tokens=150,
                       checkpoint=path, progress=False)
    assert not any(p.cached for p in other.partials) and len(posts(fresh)) == n + 1


def test_retries_apply_to_every_chunk(fresh):
    fresh.faults = ["500", "529", "ok", "429@0"]
    c = client(fresh)
    result = run(fresh, c=c)
    assert result.ok and c.stats.retries == 3


def test_when_every_chunk_fails_the_error_is_raised(fresh):
    fresh.faults = ["400"] * 3
    with pytest.raises(convo.BadRequestError):
        run(fresh, doc=DOC[:4000], chunk_tokens=500, concurrency=1)


def test_chunks_given_as_strings_and_a_single_chunk(fresh):
    parts = [p for p in DOC[:6000].split("\n\n") if p.strip()][:4]
    result = run(fresh, doc=parts)
    assert [p.chunk.text for p in result.partials] == parts and [p.chunk.index for p in result.partials] == [0, 1, 2, 3]
    fresh.clear_requests()
    one = run(fresh, doc=[DOC[:3000]])
    assert one.text == one.partials[0].text and one.usage["requests"] == len(posts(fresh)) == 1


def test_async_twin_gives_the_same_result(fresh):
    sync = run(fresh, context_tokens=900)

    async def main():
        return await amap_reduce(DOC, ASK, client=aclient(fresh), chunk_tokens=1500, max_tokens=150,
                                 context_tokens=900, progress=False)

    result = asyncio.run(main())
    assert result.text == sync.text and result.levels == sync.levels
    assert [p.text for p in result.partials] == [p.text for p in sync.partials]
    assert result.usage == sync.usage


def test_signatures_match():
    assert inspect.signature(map_reduce).parameters.keys() == inspect.signature(amap_reduce).parameters.keys()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"instruction": " "}, "instruction"),
        ({"doc": ""}, "empty"),
        ({"doc": []}, "empty"),
        ({"doc": ["ok", " "]}, "chunk 1"),
        ({"chunk_tokens": 0}, "chunk_tokens"),
        ({"concurrency": 0}, "concurrency"),
        ({"context_tokens": 200}, "context_tokens"),
    ],
)
def test_bad_arguments_say_what_to_do(fresh, kwargs, fragment):
    instruction = kwargs.pop("instruction", ASK)
    doc = kwargs.pop("doc", DOC[:8000])
    with pytest.raises(InvalidConfigError, match=fragment):
        map_reduce(doc, instruction, client=client(fresh), chunk_tokens=kwargs.pop("chunk_tokens", 1000),
                   max_tokens=150, progress=False, **kwargs)


def test_wrong_client_kind(fresh):
    with pytest.raises(InvalidConfigError, match="amap_reduce"):
        map_reduce(DOC, ASK, client=aclient(fresh))
    with pytest.raises(InvalidConfigError, match="map_reduce"):
        asyncio.run(amap_reduce(DOC, ASK, client=client(fresh)))


def test_progress_bar_on_a_terminal(fresh, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    run(fresh, doc=DOC[:8000], chunk_tokens=1000, progress=True)
    assert "map" in screen.getvalue() and "chunk" in screen.getvalue()
    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    run(fresh, doc=DOC[:8000], chunk_tokens=1000, progress=False)
    assert quiet.getvalue() == ""
