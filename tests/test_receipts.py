"""Context receipts: one per request sent through a Conversation (convo/receipts.py)."""

from __future__ import annotations

import asyncio

import pytest

import convo
from convo import AsyncClient, Client, Conversation, Summarize
from convo.prices import PriceTable
from convo.receipts import Receipt
from convo.tokens import calibration_of

MODEL = "claude-sonnet-4-6"



@pytest.fixture
def client(sim):
    return Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=lambda s: None)


def test_each_send_yields_a_receipt_that_matches_the_request(sim, client):
    conv = Conversation("You are terse.", model=MODEL, budget=600, max_tokens=200, client=client)
    conv.add_user("Remember the code word: heron.", pinned=True)
    conv.add_assistant("Noted: heron.")
    for i in range(8):
        conv.send(f"Message {i}: tell me about rivers, valleys, glaciers and the sea, in a few words.")
    assert len(conv.receipts) == 8 and conv.last_receipt is conv.receipts[-1]
    r = conv.last_receipt
    body = sim.requests[-1].body
    assert r.kept_messages == len(body["messages"])
    everything = [m.to_api() for m in conv.messages[:-1]]
    assert client.count_tokens(everything, system="You are terse.") + 200 > 600  # by the server's count, all would not fit
    assert r.dropped_messages > 0 and r.dropped_tokens > 0  # so the budget forced trimming
    assert r.pinned_messages == 2 and body["messages"][0]["content"] == "Remember the code word: heron."
    assert r.kept_messages + r.dropped_messages == len(conv) - 1  # all but the reply just added
    # input_tokens is the server's count of what was sent; the estimate is convo's own
    assert r.input_tokens == client.count_tokens(body["messages"], system=body["system"])
    assert r.estimated_input == convo.count_tokens(body["messages"], system=body["system"], counter=conv.counter)
    cal = calibration_of(conv.counter)
    assert cal is not None and cal.samples(MODEL) >= 8
    # corrected by what the responses taught, the estimate is the server's count within the margin
    assert r.input_tokens * (1 - cal.margin) <= cal.apply(MODEL, r.estimated_input) <= r.input_tokens * 1.10
    assert r.input_tokens + 200 <= 600 / (1 - cal.margin)  # and so the request fits the budget within it
    assert r.cache_read == r.cache_write == 0 and r.breakpoints == ()
    usage = {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens}
    assert r.cost == pytest.approx(PriceTable.default().cost(usage, MODEL))
    line = str(r)
    assert "\n" not in line and f"sent {r.kept_messages} msgs" in line and f"dropped {r.dropped_messages}" in line
    assert "pinned 2" in line and "$" in line


def test_stream_and_async_record_receipts(sim, client):
    conv = Conversation(model=MODEL, budget=4000, client=client, prompt_cache=True)
    assert "".join(conv.stream("Hello there")) and conv.last_receipt.output_tokens > 0
    assert conv.last_receipt.breakpoints == ("messages[0]",)

    async def run():
        aclient = AsyncClient(api_key="test", base_url=sim.base_url, model=MODEL)
        aconv = Conversation(model=MODEL, budget=4000, client=aclient)
        await aconv.asend("Hi")
        async for _ in aconv.astream("Again"):
            pass
        return aconv.receipts

    receipts = asyncio.run(run())
    assert len(receipts) == 2 and all(r.input_tokens and r.cost for r in receipts)


def test_a_failed_request_leaves_no_receipt(sim, client):
    conv = Conversation(model=MODEL, budget=4000, client=Client(api_key="test", base_url=sim.base_url, model=MODEL,
                                                                 sleep=lambda s: None, retry=None))  # fmt: skip
    conv.send("First")
    sim.faults = ["400"]
    with pytest.raises(Exception):  # noqa: B017 - any API error
        conv.send("Second")
    assert len(conv.receipts) == 1


def test_summarized_turns_are_reported(sim, client):
    conv = Conversation(model=MODEL, budget=700, max_tokens=150, client=client,
                        strategy=Summarize(keep_last=1, max_summary_tokens=120))  # fmt: skip
    for i in range(10):
        conv.send(f"Fact {i}: the lighthouse number {i} stands on a rocky island near the harbor town.")
    r = conv.last_receipt
    assert conv.summary is not None
    assert r.summarized_messages > 0 and r.summarized_tokens > r.summary_tokens > 0
    assert "summarized" in str(r) and "->" in str(r)


def test_receipt_is_a_small_frozen_model():
    r = Receipt(model=MODEL, kept_messages=2, kept_tokens=30, estimated_input=40)
    assert str(r).startswith("sent 2 msgs (30 tok)") and "actual ?" in str(r)
    done = r.completed({"input_tokens": 5, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 5,
                        "output_tokens": 7})  # fmt: skip
    assert (done.input_tokens, done.cache_read, done.cache_write) == (40, 30, 5)
    assert done.cache_hit_rate == 0.75 and r.input_tokens is None
    assert Receipt.model_validate_json(done.model_dump_json()) == done
