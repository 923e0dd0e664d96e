"""The request pipeline under a scripted driver: every flow (create, count_tokens, stream, both
batch paths) carried out effect by effect by hand — no network, no sleeping — so the order of
the guards, what each attempt reserves and settles, and what a cancellation leaves are visible.

Real-HTTP checks of the same paths against the simulator are at the end.
"""

from __future__ import annotations

import asyncio
import types

import anthropic
import httpx2
import pytest

import convo
from convo import Budget, Client, MemoryCache, RateLimits, Redactor, RetryPolicy
from convo._calls import call_flow
from convo._flow import Call, Close, Do, Emit, Final, Gather, Next, Now, Open, Outcome, Raw, Relay, Sleep
from convo._resume import stream_flow
from convo.batch import batch_flow
from tests.helpers import MODEL, quick_aclient, quick_client

KEY = "sk-ant-test"
EMAIL = "ann@example.com"
ASK = [{"role": "user", "content": f"Write to {EMAIL} about the plan"}]


def message(text: str, model: str = MODEL, stop: str = "end_turn", output: int = 7) -> anthropic.types.Message:
    return anthropic.types.Message.model_validate({
        "id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": 40, "output_tokens": output},
    })


def overloaded(retry_after: str = "2") -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "https://api.anthropic.com/v1/messages")
    response = httpx2.Response(529, request=request, headers={"retry-after": retry_after},
                               json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    return anthropic.APIStatusError("Overloaded", response=response, body=response.json())


class Scripted:
    """A stream as the driver hands it to a flow: events, then the final message."""

    def __init__(self, pieces, final, fail=None):
        self.events = [types.SimpleNamespace(type="content_block_delta", delta=types.SimpleNamespace(type="text_delta", text=p))
                       for p in pieces]
        self.fail = fail
        self.final = final
        seen = "".join(pieces)
        snapshot = final.model_copy(update={"content": [final.content[0].model_copy(update={"text": seen})]})
        self.stream = types.SimpleNamespace(response=types.SimpleNamespace(headers={}), current_message_snapshot=snapshot)


class Driver:
    """Carries out a flow's effects by hand. ``answers`` are taken in order by each ``Call`` and
    ``Open``: a value, an exception (raised into the flow) or a callable of the request's kwargs.
    ``log`` records every effect; ``emitted`` what the flow handed to its consumer."""

    def __init__(self, answers, now: float = 100.0, on_call=None):
        self.answers = list(answers)
        self.now = now
        self.on_call = on_call
        self.log: list[str] = []
        self.sent: list[dict] = []
        self.emitted: list = []
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """The driver's clock, for the client (one clock for everything, as the real drivers)."""
        return self.now

    def _answer(self, kwargs):
        answer = self.answers.pop(0)
        if callable(answer) and not isinstance(answer, BaseException):
            answer = answer(kwargs)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def step(self, effect):
        if isinstance(effect, Now):
            return self.now
        if isinstance(effect, Sleep):
            self.sleeps.append(effect.seconds)
            self.now += effect.seconds
            self.log.append("sleep")
            return None
        if isinstance(effect, Do):
            self.log.append(f"do:{effect.fn.__name__}")
            return effect.fn(*effect.args)
        if isinstance(effect, Call):
            self.log.append(f"call:{effect.method}")
            self.sent.append(effect.kwargs)
            if self.on_call is not None:
                self.on_call(effect)
            value = self._answer(effect.kwargs)
            return Raw(value, {}) if effect.raw else value
        if isinstance(effect, Open):
            self.log.append("open")
            self.sent.append(effect.kwargs)
            if self.on_call is not None:
                self.on_call(effect)
            return self._answer(effect.kwargs)
        if isinstance(effect, Relay):
            for event in effect.handle.events:
                out = effect.take(event.delta.text)
                if out:
                    self.emitted.append(out)
            if effect.handle.fail is not None:
                raise effect.handle.fail
            return True
        if isinstance(effect, Final):
            return effect.handle.final
        if isinstance(effect, Close):
            self.log.append("close")
            return None
        if isinstance(effect, Emit):
            self.emitted.append(effect.value)
            return None
        if isinstance(effect, Next):
            return next(effect.handle.iterator, None)
        if isinstance(effect, Gather):
            outcomes = []
            for index, flow in enumerate(effect.flows):
                try:
                    outcome = Outcome(value=self.run(flow))
                except Exception as exc:  # noqa: BLE001 -- a sub-flow's failure is its outcome
                    outcome = Outcome(error=exc)
                if effect.on_done is not None:
                    effect.on_done(index, outcome)
                outcomes.append(outcome)
            return outcomes
        raise TypeError(f"unexpected effect {effect!r}")

    def run(self, flow, stop_at: str | None = None):
        """Run to the end (the flow's value), or until an effect logged as ``stop_at``."""
        send, error = None, None
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(send)
            except StopIteration as stop:
                return stop.value
            send, error = None, None
            if stop_at is not None and isinstance(effect, (Call, Open)) and (
                stop_at == "open" or stop_at == f"call:{getattr(effect, 'method', '')}"
            ):
                self.log.append(f"stopped:{stop_at}")
                return flow
            try:
                send = self.step(effect)
            except Exception as exc:  # noqa: BLE001 -- handed back to the flow, as the real drivers do
                error = exc


def guarded_client(**kw) -> Client:
    options = {"redactor": Redactor(mode="placeholder"), "cache": MemoryCache(), "budget": Budget(usd=5.0),
               "limits": RateLimits(rpm=1000, input_tpm=1_000_000), **kw}
    return Client(api_key=KEY, model=MODEL, **options)


def echo(kwargs):
    """A reply that repeats the (redacted) request, as a model quoting its prompt would."""
    return message("Sent: " + kwargs["messages"][0]["content"])


# -- create -----------------------------------------------------------------------------------


def test_create_passes_the_guards_in_their_documented_order():
    c = guarded_client()
    held_at_call = []
    driver = Driver([echo], on_call=lambda e: held_at_call.append(c.budget.as_dict()["held"]))
    reply = driver.run(call_flow(c._request(ASK, None, 50, None, {"temperature": 0}), c._ctx))
    # redact (no effect) -> cache lookup -> budget hold (no effect) -> rate limiter -> attempt
    # -> settle (limiter) -> cache store -> restore
    assert driver.log == ["do:get", "do:reserve", "call:create", "do:settle", "do:set"]
    assert EMAIL not in str(driver.sent) and "[EMAIL_1]" in str(driver.sent)  # redacted before it left
    assert held_at_call[0] > 0  # the worst case was held while the call was out
    assert c.budget.as_dict()["held"] == 0 and c.budget.spent == pytest.approx(c.stats.cost_usd) and c.stats.cost_usd > 0
    assert EMAIL in reply.content[0].text  # restored for the caller
    assert EMAIL not in str(list(c.cache._items.values())) and "[EMAIL_1]" in str(list(c.cache._items.values()))

    again = Driver([])  # the same request again: answered by the cache, nothing reserved or sent
    assert again.run(call_flow(c._request(ASK, None, 50, None, {"temperature": 0}), c._ctx)).content[0].text == reply.content[0].text
    assert again.log == ["do:get"] and c.stats.cache_hits == 1


def test_retries_and_fallback_reserve_and_settle_each_attempt():
    driver = Driver([overloaded(), overloaded("3"), message("done", "claude-haiku-4-5")])
    c = guarded_client(fallback_models=["claude-haiku-4-5"], cache=None, clock=driver.clock)
    result = driver.run(call_flow(c._request([{"role": "user", "content": "hi"}], None, 20, None, {}), c._ctx))
    assert result.content[0].text == "done" and driver.sleeps[:2] == [2.0, 3.0]  # the server's retry-after
    assert [s.get("model") for s in driver.sent] == [MODEL, MODEL, "claude-haiku-4-5"]
    assert driver.log.count("do:reserve") == 3 and driver.log.count("do:settle") == 3
    assert c.stats.retries == 2 and c.stats.fallbacks == 1 and c.budget.as_dict()["held"] == 0

    c.retry = RetryPolicy(max_attempts=2)  # a live setting: the next call sees it
    with pytest.raises(convo.OverloadedError) as info:
        driver.answers = [overloaded(), overloaded()]
        driver.run(call_flow(c._request([{"role": "user", "content": "hi"}], None, 20, None, {}), c._ctx))
    assert info.value.attempts == 2 and isinstance(info.value.__cause__, anthropic.APIStatusError)
    assert c.budget.as_dict()["held"] == 0


def test_a_budget_refusal_sends_nothing_and_holds_nothing():
    c = Client(api_key=KEY, model=MODEL, budget=Budget(usd=1e-6), limits=RateLimits(rpm=10))
    driver = Driver([message("never")])
    with pytest.raises(convo.BudgetExceededError):
        driver.run(call_flow(c._request(ASK, None, 500, None, {}), c._ctx))
    assert driver.sent == [] and c.budget.as_dict()["held"] == 0 and "do:reserve" not in driver.log


def test_a_cancelled_call_gives_its_hold_and_its_reservation_back():
    c = guarded_client(cache=None)
    driver = Driver([message("late")])
    flow = driver.run(call_flow(c._request(ASK, None, 500, None, {}), c._ctx), stop_at="call:create")
    assert c.budget.as_dict()["held"] > 0
    flow.close()  # what a driver does when its caller is cancelled or times out
    assert c.budget.as_dict()["held"] == 0 and c.budget.spent == 0
    assert c.limiter is not None and driver.log[-1] == "stopped:call:create"
    assert c.stats.requests == 1 and c.stats.failures == {"Cancelled": 1}


def test_count_tokens_is_redacted_but_neither_held_nor_cached():
    c = guarded_client()
    driver = Driver([types.SimpleNamespace(input_tokens=12)])
    request = c._request(ASK, None, 1, None, {}, method="count_tokens")
    assert driver.run(call_flow(request, c._ctx, "count_tokens")).input_tokens == 12
    assert driver.log == ["call:count_tokens"] and EMAIL not in str(driver.sent)
    assert c.budget.as_dict() == {**c.budget.as_dict(), "held": 0, "spent": 0}


# -- stream -----------------------------------------------------------------------------------


def test_a_stream_passes_the_same_guards_and_restores_as_it_goes():
    c = guarded_client(cache=None)

    def opened(kwargs):
        text = "Sent: " + kwargs["messages"][0]["content"]
        return Scripted(text.split(" "), message(text.replace(" ", "")))

    driver = Driver([opened])
    final = driver.run(stream_flow(c._request(ASK, None, 50, None, {}), c._ctx, can_restart=False))
    assert driver.log == ["do:reserve", "open", "close", "do:settle"]
    assert EMAIL not in str(driver.sent)
    assert EMAIL in "".join(driver.emitted) and EMAIL in final.content[0].text
    assert c.budget.as_dict()["held"] == 0 and c.stats.successes == 1


def test_a_broken_stream_is_continued_and_every_attempt_settled():
    c = Client(api_key=KEY, model="claude-sonnet-4-6", budget=Budget(usd=5.0))
    first = Scripted(["Once ", "upon "], message("Once upon "), fail=overloaded())
    second = Scripted(["a time."], message("a time."))
    driver = Driver([first, second])
    final = driver.run(stream_flow(c._request([{"role": "user", "content": "story"}], None, 50, None, {}), c._ctx,
                                   can_restart=False))
    assert "".join(x for x in driver.emitted if isinstance(x, str)) == "Once upon a time."
    assert final.content[0].text == "Once upon a time."
    continuation = driver.sent[1]["messages"]
    assert continuation[-2] == {"role": "assistant", "content": "Once upon"}  # 4.6+: no prefill
    assert continuation[-1]["role"] == "user"
    assert c.budget.as_dict()["held"] == 0 and c.budget.spent > 0 and c.stats.stream_resumes == 1


def test_a_stream_closed_early_settles_what_it_used():
    c = Client(api_key=KEY, model=MODEL, budget=Budget(usd=5.0))
    driver = Driver([Scripted(["a", "b"], message("ab"))])
    flow = driver.run(stream_flow(c._request(ASK, None, 800, None, {}), c._ctx, can_restart=False), stop_at="open")
    assert c.budget.as_dict()["held"] > 0
    flow.close()
    assert c.budget.as_dict()["held"] == 0 and c.stats.failures == {"Cancelled": 1}


# -- batches ----------------------------------------------------------------------------------


def test_a_batch_through_messages_guards_each_item():
    c = guarded_client(cache=None)
    items = [{"messages": ASK, "max_tokens": 30}, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 30}]
    driver = Driver([echo, echo])
    results = driver.run(batch_flow(c._ctx, items, concurrency=1, progress=False))
    assert [r.ok for r in results] == [True, True] and EMAIL in results[0].text
    assert EMAIL not in str(driver.sent) and driver.log.count("do:reserve") == 2
    assert c.budget.as_dict()["held"] == 0 and c.stats.successes == 2


def batch_answers(item_text):
    """The Batches API as a script: create -> retrieve (ended) -> results."""
    created = types.SimpleNamespace(id="msgbatch_1", processing_status="in_progress", ended_at=None, created_at=None)

    def ended(kwargs):
        import datetime

        now = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
        return types.SimpleNamespace(id="msgbatch_1", processing_status="ended", created_at=now,
                                     ended_at=now + datetime.timedelta(minutes=5))

    def lines(kwargs):
        return [types.SimpleNamespace(custom_id=str(i), result=types.SimpleNamespace(type="succeeded", message=message(t)))
                for i, t in enumerate(item_text)]

    return [created, ended, lines]


def test_a_batch_through_the_batches_api_is_redacted_held_and_settled_at_batch_prices():
    c = guarded_client(cache=None)
    items = [{"messages": ASK, "max_tokens": 30}]
    held = []
    driver = Driver(batch_answers(["Sent to [EMAIL_1]"]), on_call=lambda e: held.append(c.budget.as_dict()["held"]))
    results = driver.run(batch_flow(c._ctx, items, concurrency=1, progress=False, via="batches_api"))
    assert driver.log == ["call:messages.batches.create", "sleep", "call:messages.batches.retrieve",
                          "call:messages.batches.results"]
    assert EMAIL not in str(driver.sent) and held[0] > 0
    assert results[0].text == f"Sent to {EMAIL}"
    full = c.prices.cost(results[0].message.usage, MODEL, batch=False)
    assert c.budget.spent == pytest.approx(full * c.prices.batch_discount) and c.budget.as_dict()["held"] == 0
    assert c.stats.requests == 1


# -- max_tokens=0: cache warming ----------------------------------------------------------------


def test_max_tokens_zero_warms_the_cache_on_the_simulator(fresh):
    c = quick_client(fresh)
    reply = c.create([{"role": "user", "content": "a long shared prompt " * 50}], max_tokens=0)
    assert reply.content == [] and reply.stop_reason == "max_tokens" and reply.usage.output_tokens == 0
    with pytest.raises(convo.InvalidConfigError, match="cannot be streamed"):
        c.stream(ASK, max_tokens=0)
    with pytest.raises(convo.InvalidConfigError, match="thinking"):
        c.create(ASK, max_tokens=0, thinking={"type": "adaptive"})
    with pytest.raises(convo.InvalidConfigError, match="max_tokens"):
        c.create(ASK, max_tokens=-1)


# -- the same over real HTTP ------------------------------------------------------------------


def test_breaking_out_of_a_stream_leaves_no_hold_and_charges_what_was_used(fresh):
    c = quick_client(fresh, budget=Budget(usd=5.0))
    with c.stream([{"role": "user", "content": "Tell me a long story about the sea"}], max_tokens=800) as s:
        for _ in s.text_stream:
            break
    assert c.budget.as_dict()["held"] == 0
    assert c.stats.failures.get("Cancelled") == 1


def test_a_timed_out_async_call_gives_its_hold_back(fresh):
    from convo.sim import Faults

    fresh.faults = Faults(["hang@0"], stall_seconds=5.0)

    async def main():
        async with quick_aclient(fresh, budget=Budget(usd=5.0)) as c:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(c.create(ASK, max_tokens=500), timeout=0.5)
            return c.budget.as_dict()

    state = asyncio.run(main())
    assert state["held"] == 0 and state["spent"] == 0
