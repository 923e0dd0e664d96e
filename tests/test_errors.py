"""The error tree: every public error is in it (and in its drawing), and an error translated from
the SDK keeps the SDK's exception as ``__cause__`` with its ``status_code`` and ``request_id``."""

from __future__ import annotations

import asyncio
import re

import anthropic
import pytest

import convo
from convo import Conversation, RetryPolicy, Summarize
from convo import _exceptions as tree_module

from .helpers import MODEL, quick_aclient, quick_client

ASK = [{"role": "user", "content": "Tell me about lighthouses."}]


# -- the tree ----------------------------------------------------------------------------------


def _drawing() -> dict[str, str]:
    """``{class name: parent name}`` read from the tree drawn in convo/_exceptions.py's docstring."""
    doc = tree_module.__doc__ or ""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (column of the name, name)
    for line in doc.splitlines():
        found = re.match(r"^(\s*(?:[│├└─ ]*[├└]── )?)([A-Z][A-Za-z]+)\b", line)
        if found is None or not line.startswith("    ") or not found.group(2).endswith("Error"):
            continue
        column, name = len(found.group(1)), found.group(2)
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[name] = stack[-1][1] if stack else ""
        stack.append((column, name))
    return parents


def _public_errors() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name in convo.__all__
        if isinstance(value := getattr(convo, name), type) and issubclass(value, BaseException)
    }


def test_every_public_error_is_in_the_tree_and_drawn_under_its_base():
    drawing = _drawing()
    errors = _public_errors()
    assert drawing.get("ConvoError") == ""
    assert {"BudgetExceededError", "CacheError", "TextFileError", "UnknownModelError"} <= set(errors)  # defined elsewhere
    for name, cls in errors.items():
        assert issubclass(cls, convo.ConvoError), name
        assert name in drawing, f"{name} is missing from the tree in convo/_exceptions.py"
        if cls is not convo.ConvoError:
            assert getattr(convo, drawing[name]) in cls.__bases__, f"{name} is drawn under {drawing[name]}"
    assert set(drawing) == set(errors), "the drawing names an error convo does not export"


def test_the_errors_page_documents_every_public_error():
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs" / "api" / "errors.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: convo\.(\w+)$", page, flags=re.MULTILINE))
    tree = {name for name in dir(tree_module) if isinstance(getattr(tree_module, name), type)}
    exported_from_tree = {name for name in _public_errors() if name in tree}
    assert exported_from_tree <= documented


# -- translated API errors ---------------------------------------------------------------------


def _last_request_id(sim) -> str:
    return sim.requests[-1].request_id


def test_a_404_keeps_the_sdk_error_status_and_request_id(fresh):
    with pytest.raises(convo.NotFoundError) as info:
        quick_client(fresh).create(ASK, model="claude-no-such-model", max_tokens=20)
    err = info.value
    assert err.status_code == 404 and err.error_type == "not_found_error"
    assert err.request_id == _last_request_id(fresh) and err.request_id.startswith("req_")
    assert isinstance(err.__cause__, anthropic.NotFoundError)
    assert err.__cause__.request_id == err.request_id


def test_a_400_is_not_retried_and_keeps_its_cause(fresh):
    fresh.faults = ["400"]
    with pytest.raises(convo.BadRequestError) as info:
        quick_client(fresh).create(ASK, max_tokens=20)
    err = info.value
    assert (err.status_code, err.attempts, len(fresh.requests)) == (400, 1, 1)
    assert err.request_id == _last_request_id(fresh)
    assert isinstance(err.__cause__, anthropic.BadRequestError) and err.__cause__.status_code == 400


def test_after_retries_the_request_id_is_the_last_attempts(fresh):
    fresh.faults = ["500", "503"]
    with pytest.raises(convo.ServerError) as info:
        quick_client(fresh, retry=RetryPolicy(max_attempts=2)).create(ASK, max_tokens=20)
    err = info.value
    assert (err.status_code, err.attempts) == (503, 2)
    ids = [r.request_id for r in fresh.requests]
    assert len(set(ids)) == 2 and err.request_id == ids[-1]
    assert isinstance(err.__cause__, anthropic.APIStatusError) and err.__cause__.status_code == 503


def test_the_async_client_chains_the_same_way(fresh):
    with pytest.raises(convo.NotFoundError) as info:
        asyncio.run(quick_aclient(fresh).create(ASK, model="claude-no-such-model", max_tokens=20))
    assert info.value.request_id == _last_request_id(fresh)
    assert isinstance(info.value.__cause__, anthropic.NotFoundError)


def test_count_tokens_errors_keep_their_cause(fresh):
    with pytest.raises(convo.NotFoundError) as info:
        quick_client(fresh).count_tokens(ASK, model="claude-no-such-model")
    assert info.value.request_id == _last_request_id(fresh)
    assert isinstance(info.value.__cause__, anthropic.NotFoundError)


def test_a_batch_items_error_keeps_its_cause(fresh):
    good = {"messages": ASK, "max_tokens": 20}
    results = quick_client(fresh).batch([good, {**good, "model": "claude-no-such-model"}], progress=False)
    assert results[0].ok and not results[1].ok
    err = results[1].error
    assert isinstance(err, convo.NotFoundError) and isinstance(err.__cause__, anthropic.NotFoundError)
    failed = [r.request_id for r in fresh.requests if "claude-no-such-model" in str(r.body)]
    assert err.request_id == failed[-1]


def test_a_connection_error_keeps_the_sdk_error():
    client = convo.Client(api_key="test", base_url="http://127.0.0.1:9", model=MODEL, sleep=lambda s: None,
                          retry=RetryPolicy(max_attempts=1))
    with pytest.raises(convo.APIConnectionError) as info:
        client.create(ASK, max_tokens=20)
    assert isinstance(info.value.__cause__, anthropic.APIConnectionError)


def test_a_mid_stream_error_carries_the_failing_responses_request_id(fresh):
    fresh.faults = ["sse_error@2"] * 2
    client = quick_client(fresh, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(convo.StreamError) as info:
        "".join(client.stream(ASK, max_tokens=50).text_stream)
    err = info.value
    assert err.partial  # text had reached the caller
    assert isinstance(err.__cause__, anthropic.APIStatusError)
    assert err.status_code == 200  # the error event arrived on a 200 stream
    assert err.request_id == _last_request_id(fresh)


# -- distinct causes, distinct classes ---------------------------------------------------------


def test_a_summary_that_is_never_shorter_raises_summary_error(fresh):
    def verbose(previous, turns):
        return " ".join(m.text for m in turns) * 2

    conv = Conversation(model=MODEL, budget=700, max_tokens=150, client=quick_client(fresh),
                        strategy=Summarize(keep_last=1, summarizer=verbose, max_calls=2))
    for i in range(4):
        conv.add_user(f"Fact {i}: the lighthouse number {i} stands on a rocky island near the harbor town. " * 4)
        conv.add_assistant(f"Noted fact {i} about lighthouse {i}.")
    before = conv.to_dict(strategy=False)
    with pytest.raises(convo.SummaryError, match="not shorter") as info:
        conv.compact(force=True)
    assert isinstance(info.value, convo.ConvoError) and "not shorter" in conv.summary_error
    assert conv.summary is None and conv.to_dict(strategy=False) == before


def test_a_failed_token_count_carries_the_responses_request_id(fresh):
    counter = convo.ExactCounter(quick_client(fresh).sdk, model="claude-no-such-model")
    with pytest.raises(convo.TokenCountError) as info:
        counter.count_text("hello")
    err = info.value
    assert isinstance(err.__cause__, anthropic.NotFoundError)
    assert (err.status_code, err.request_id) == (404, _last_request_id(fresh))
