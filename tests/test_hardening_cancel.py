"""Issue 19, item 10 (verified): holds are settled on every exit, including a cancellation at any
point. Scripted flows closed after a random number of effects (hypothesis), and real calls over
HTTP cut by random timeouts, cancelled tasks and streams left early."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo import Budget, RateLimits
from convo._calls import call_flow
from convo._resume import stream_flow
from convo.sim import Simulator
from tests.helpers import quick_aclient
from tests.test_pipeline import ASK, Driver, Scripted, guarded_client, message, overloaded


def run_until(driver: Driver, flow, cut: int) -> str:
    """Drive ``flow`` and close it when it yields its ``cut``-th effect (before that effect is
    carried out: the call is in flight); "done" when it finished first."""
    send, error = None, None
    for _ in range(cut):
        try:
            effect = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration:
            return "done"
        except Exception:  # noqa: BLE001 -- the call failed for good: also an exit to check
            return "failed"
        send, error = None, None
        try:
            send = driver.step(effect)
        except Exception as exc:  # noqa: BLE001 -- handed back to the flow, as the real drivers do
            error = exc
    try:
        flow.throw(error) if error is not None else flow.send(send)
    except StopIteration:
        return "done"
    except Exception:  # noqa: BLE001
        return "failed"
    flow.close()
    return "closed"


def settled(client) -> None:
    snapshot = client.budget.as_dict()
    assert snapshot["held"] == pytest.approx(0.0, abs=1e-12), snapshot
    assert snapshot["spent"] == pytest.approx(client.stats.cost_usd)
    assert client.stats.requests <= 1


ANSWERS = st.lists(st.sampled_from(["ok", "529", "500"]), min_size=1, max_size=4).map(lambda xs: [*xs, "ok"])


def _answer(kind: str):
    if kind == "ok":
        return message("done")
    if kind == "529":
        return overloaded("0")
    import anthropic
    import httpx2

    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    response = httpx2.Response(500, request=request, json={"type": "error", "error": {"type": "api_error", "message": "x"}})
    return anthropic.InternalServerError("boom", response=response, body=response.json())


@given(answers=ANSWERS, cut=st.integers(0, 40), temperature=st.sampled_from([None, 0]))
@settings(max_examples=200, deadline=None)
def test_item10_a_create_cancelled_at_any_point_holds_nothing(answers, cut, temperature):
    client = guarded_client(fallback_models=["claude-haiku-4-5"])
    driver = Driver([_answer(a) for a in answers], on_call=None)
    params = {} if temperature is None else {"temperature": temperature}
    run_until(driver, call_flow(client._request(ASK, None, 300, None, params), client._ctx), cut)
    settled(client)


@given(pieces=st.lists(st.text("abc ", min_size=1, max_size=4), min_size=1, max_size=6), cut=st.integers(0, 30),
       fail_first=st.booleans())
@settings(max_examples=200, deadline=None)
def test_item10_a_stream_cancelled_at_any_point_holds_nothing(pieces, cut, fail_first):
    client = guarded_client(cache=None)
    final = message("".join(pieces))
    answers = ([overloaded("0")] if fail_first else []) + [Scripted(pieces, final)]
    driver = Driver(answers)
    flow = stream_flow(client._request(ASK, None, 400, None, {}), client._ctx, can_restart=False)
    run_until(driver, flow, cut)
    settled(client)


def test_item10_real_calls_cut_by_timeouts_cancellation_and_early_breaks():
    rng = random.Random(19)

    async def main(sim) -> None:
        budget = Budget(usd=5.0)
        client = quick_aclient(sim, budget=budget, limits=RateLimits(rpm=10_000, input_tpm=10_000_000))
        for _ in range(12):
            how = rng.choice(["timeout", "cancel", "break"])
            if how == "timeout":
                try:
                    await asyncio.wait_for(client.create(messages=ASK, max_tokens=200), timeout=rng.uniform(0.0, 0.4))
                except TimeoutError:
                    pass
            elif how == "cancel":
                task = asyncio.create_task(client.create(messages=ASK, max_tokens=200))
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            else:
                stop = rng.randint(1, 6)
                async with client.stream(messages=ASK, max_tokens=200) as s:
                    n = 0
                    async for _ in s.text_stream:
                        n += 1
                        if n >= stop:
                            break
            await asyncio.sleep(0)  # let a cancelled attempt's clean-up run
            snapshot = budget.as_dict()
            assert snapshot["held"] == pytest.approx(0.0, abs=1e-12), (how, snapshot)
        assert budget.spent == pytest.approx(client.stats.cost_usd)
        assert budget.spent > 0  # the partial and whole costs were recorded, not lost

    with Simulator(latency=0.05, token_latency=0.02) as sim:
        asyncio.run(main(sim))
