"""Sync and async calls on a Conversation: the wrong client is refused at the call, changing nothing.

Each of send / stream / asend / astream is tried with a Client and with an AsyncClient on the
simulator: the matching pair talks to the model, the other raises ClientMismatchError naming
what to use, before any request is sent and with the history, summary and receipts unchanged.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import warnings

import pytest

import convo
from convo import ClientMismatchError, Conversation, Summarize
from convo._talk import is_async_client

from .helpers import MODEL, quick_aclient, quick_client

SYNC, ASYNC = "Client", "AsyncClient"


def make_client(sim, kind):
    return quick_client(sim) if kind == SYNC else quick_aclient(sim)


def call(conv, method, text):
    """Run one turn with ``method``, the way a user would; returns the reply text."""
    if method == "send":
        return conv.send(text, max_tokens=30)
    if method == "stream":
        return "".join(conv.stream(text, max_tokens=30))

    async def main():
        if method == "asend":
            return await conv.asend(text, max_tokens=30)
        return "".join([t async for t in conv.astream(text, max_tokens=30)])

    return asyncio.run(main())


def snapshot(conv):
    return (conv.to_dict(), list(conv.receipts), conv.summary, conv.summary_error, conv.last_selection)


def seeded(sim, kind):
    """A conversation of two exchanges, a stored summary and two receipts, got with a ``kind`` client."""
    conv = Conversation("Be brief.", model=MODEL, budget=4000, strategy=Summarize(keep_last=1),
                        client=make_client(sim, kind))
    for text in ("Remember: the river is 40 km long.", "And the lake is 3 km wide."):
        call(conv, "send" if kind == SYNC else "asend", text)
    data = conv.to_dict()
    data["summary"] = {"text": "The user said the river is 40 km long.", "turns": 1}
    again = Conversation.from_dict(data)
    again.client, again.receipts = conv.client, list(conv.receipts)
    return again


RIGHT = {"send": SYNC, "stream": SYNC, "asend": ASYNC, "astream": ASYNC}
ADVICE = {"send": "await conv.asend", "stream": "conv.astream", "asend": "conv.send", "astream": "conv.stream"}


@pytest.mark.parametrize("method", ["send", "stream", "asend", "astream"])
@pytest.mark.parametrize("kind", [SYNC, ASYNC])
def test_each_method_with_each_client(fresh, method, kind):
    conv = seeded(fresh, kind)
    before, sent = snapshot(conv), len(fresh.requests)
    if RIGHT[method] == kind:
        reply = call(conv, method, "How long is the river?")
        assert reply and conv.messages[-1].text == reply
        assert len(conv.receipts) == 3 and len(fresh.requests) > sent
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ClientMismatchError) as info:
            call(conv, method, "How long is the river?")
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    message = str(info.value)
    assert ADVICE[method] in message and kind in message
    assert ("convo.Client(" if kind == ASYNC else "convo.AsyncClient(") in message
    assert snapshot(conv) == before  # history, summary, receipts: as they were
    assert len(fresh.requests) == sent  # nothing reached the API


def test_stream_and_astream_are_refused_at_the_call_not_at_the_first_item(fresh):
    conv = Conversation(model=MODEL, budget=4000, client=quick_aclient(fresh))
    with pytest.raises(ClientMismatchError, match="astream"):
        conv.stream("hi")  # no iteration needed
    conv.client = quick_client(fresh)
    with pytest.raises(ClientMismatchError, match=r"conv\.stream"):
        conv.astream("hi")
    assert len(conv) == 0 and conv.receipts == []


def test_the_error_is_a_config_error_under_convo_error(fresh):
    conv = Conversation(model=MODEL, budget=4000, client=quick_aclient(fresh))
    with pytest.raises(convo.InvalidConfigError):
        conv.send("hi")
    assert issubclass(ClientMismatchError, convo.ConvoError) and issubclass(ClientMismatchError, ValueError)


def test_compact_with_an_async_client_says_to_await_acompact(fresh):
    conv = seeded(fresh, ASYNC)
    conv._summary = None  # something to fold
    before, sent = snapshot(conv), len(fresh.requests)
    with pytest.raises(ClientMismatchError, match="acompact"):
        conv.compact(force=True)
    assert snapshot(conv) == before and len(fresh.requests) == sent
    assert asyncio.run(conv.acompact(force=True)) is True  # the async twin folds


def test_a_missing_client_is_still_its_own_error():
    conv = Conversation(model=MODEL, budget=1000)
    for method in ("send", "stream", "asend", "astream"):
        with pytest.raises(convo.InvalidConfigError, match="no client") as info:
            call(conv, method, "hi")
        assert not isinstance(info.value, ClientMismatchError)
    assert len(conv) == 0


class _AsyncFake:
    async def create(self, **kw):  # pragma: no cover - never awaited
        return None


class _SyncFake:
    def create(self, **kw):  # pragma: no cover - never called
        return None


def test_clients_are_told_apart_by_class_or_by_their_create(fresh):
    assert is_async_client(quick_aclient(fresh)) and not is_async_client(quick_client(fresh))
    assert is_async_client(_AsyncFake()) and not is_async_client(_SyncFake())
    conv = Conversation(model=MODEL, budget=1000, client=_AsyncFake())
    with pytest.raises(ClientMismatchError):
        conv.send("hi")
    assert len(conv) == 0


def test_sync_and_async_twins_take_the_same_arguments():
    for sync, twin in (("send", "asend"), ("stream", "astream"), ("compact", "acompact")):
        a = inspect.signature(getattr(Conversation, sync))
        b = inspect.signature(getattr(Conversation, twin))
        assert list(a.parameters) == list(b.parameters), sync
