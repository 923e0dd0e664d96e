"""Message Batches through the SDK's batches methods, in virtual time."""

from __future__ import annotations

from datetime import datetime, timedelta

import anthropic
import pytest

from convo.sim import ManualClock, Simulator

MODEL = "claude-sonnet-4-6"


def params(text: str, **kw):
    return {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": text}], **kw}


@pytest.fixture(scope="module")
def clock():
    return ManualClock(1_800_000_000)


@pytest.fixture(scope="module")
def sim(clock):
    with Simulator(seed=0, clock=clock, batch_seconds=10) as s:
        yield s


@pytest.fixture(scope="module")
def client(sim):
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        yield c


def test_batch_lifecycle(client, clock):
    requests = [
        {"custom_id": "first", "params": params("Hello there, tell me about Kyoto.")},
        {"custom_id": "second", "params": params('Please say "two"')},
        {"custom_id": "broken", "params": {"model": MODEL, "messages": [{"role": "user", "content": "no max"}]}},
    ]
    batch = client.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_01") and batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.model_dump() == {
        "processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0
    }  # fmt: skip
    assert batch.results_url is None and batch.ended_at is None
    assert batch.expires_at - batch.created_at == timedelta(hours=24)

    with pytest.raises(anthropic.AnthropicError, match="finished processing"):
        client.messages.batches.results(batch.id)

    clock.advance(9)
    assert client.messages.batches.retrieve(batch.id).request_counts.processing == 3  # all or nothing
    clock.advance(1)
    done = client.messages.batches.retrieve(batch.id)
    assert done.processing_status == "ended" and done.ended_at is not None
    assert done.request_counts.succeeded == 2 and done.request_counts.errored == 1
    assert done.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")

    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {"first", "second", "broken"}
    assert results["second"].type == "succeeded"
    assert results["second"].message.content[0].text == "two"
    assert results["second"].message.usage.service_tier == "batch"
    direct = client.messages.create(**params("Hello there, tell me about Kyoto."))
    assert results["first"].message.content[0].text == direct.content[0].text
    assert results["broken"].type == "errored"
    assert results["broken"].error.error.type == "invalid_request_error"
    assert "max_tokens" in results["broken"].error.error.message


def test_cancel(client, clock):
    requests = [{"custom_id": f"r{i}", "params": params(f"Request number {i}")} for i in range(4)]
    batch = client.messages.batches.create(requests=requests)
    clock.advance(3)  # request 0 finished at 2.5 s; the others are still running
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    clock.advance(2.5)  # the cancel takes a quarter of batch_seconds
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 1 and ended.request_counts.canceled == 3
    kinds = sorted(r.result.type for r in client.messages.batches.results(batch.id))
    assert kinds == ["canceled", "canceled", "canceled", "succeeded"]
    assert client.messages.batches.cancel(batch.id).processing_status == "ended"  # a no-op once ended


def test_list_pages_newest_first(sim, client, clock):
    ids = [client.messages.batches.create(requests=[{"custom_id": "a", "params": params("hi")}]).id for _ in range(5)]
    newest_first = ids[::-1]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2]
    assert page.has_more and page.first_id == newest_first[0] and page.last_id == newest_first[1]
    following = client.messages.batches.list(limit=2, after_id=page.last_id)
    assert [b.id for b in following.data] == newest_first[2:4]
    previous = client.messages.batches.list(limit=2, before_id=newest_first[2])
    assert [b.id for b in previous.data] == newest_first[:2] and not previous.has_more
    everything = [b.id for b in client.messages.batches.list(limit=2)]  # auto-pagination
    assert everything[:5] == newest_first and len(everything) == len(set(everything))


def test_delete_only_when_ended(client, clock):
    batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": params("hi")}])
    with pytest.raises(anthropic.BadRequestError, match="only ended batches"):
        client.messages.batches.delete(batch.id)
    clock.advance(10)
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_unknown_batch_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.batches.retrieve("msgbatch_nope")
    assert info.value.type == "not_found_error"


@pytest.mark.parametrize(
    ("requests", "fragment"),
    [
        ([], "non-empty list"),
        ([{"custom_id": "a", "params": params("x")}, {"custom_id": "a", "params": params("y")}], "unique"),
        ([{"custom_id": "has space", "params": params("x")}], "custom_id"),
        ([{"custom_id": "a", "params": params("x", stream=True)}], "streaming"),
    ],
)
def test_invalid_batches(client, requests, fragment):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.batches.create(requests=requests)
    assert fragment in info.value.api_message


def test_async_batches(sim, clock):
    import asyncio

    async def main():
        async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
            batch = await c.messages.batches.create(requests=[{"custom_id": "x", "params": params('say "ok"')}])
            clock.advance(10)
            results = [r async for r in await c.messages.batches.results(batch.id)]
            return results

    (result,) = asyncio.run(main())
    assert result.custom_id == "x" and result.result.message.content[0].text == "ok"


def test_batch_times_follow_the_clock(client, clock):
    batch = client.messages.batches.create(requests=[{"custom_id": "a", "params": params("hi")}])
    assert batch.created_at == datetime.fromtimestamp(clock.now, tz=batch.created_at.tzinfo)
