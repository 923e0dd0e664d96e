"""client.batch and map_reduce go through create's guards: redaction, the budget, the stats.

Against the simulator over real HTTP: what reaches ``POST /v1/messages/batches`` (and
``/v1/messages``) never holds a raw value the redactor finds; the budget holds each item's worst
case at batch prices before anything is submitted and ends at the batch-price cost of the
results; ``client.stats`` counts every item; checkpoint files hold placeholders only, and the
caller always gets the restored replies.
"""

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convo import (
    AsyncClient,
    Budget,
    BudgetExceededError,
    Client,
    RateLimits,
    Redactor,
    RequestTooLargeError,
    SQLiteCache,
)
from convo.mapreduce import map_reduce
from convo.prices import PriceTable
from convo.sim import ManualClock, Simulator

MODEL = "claude-sonnet-4-6"
PRICES = PriceTable.default()


def luhn_complete(digits: str) -> str:
    """``digits`` with the check digit that makes the whole number pass the Luhn check."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return digits + str((10 - total % 10) % 10)


emails = st.from_regex(r"[a-z][a-z0-9]{1,10}(\.[a-z0-9]{1,6})?@[a-z][a-z0-9]{1,9}\.(com|org|net|io)", fullmatch=True)
@st.composite
def cards(draw):
    """16-digit Visa or Mastercard numbers with a valid check digit, unbroken or in fours."""
    prefix = draw(st.sampled_from(["4", "51", "52", "53", "54", "55"]))
    number = luhn_complete(prefix + draw(st.text("0123456789", min_size=15 - len(prefix), max_size=15 - len(prefix))))
    return " ".join(number[i : i + 4] for i in range(0, 16, 4)) if draw(st.booleans()) else number


def sentence(email: str, card: str) -> str:
    return f"Mail {email} and pay with {card}."


def ask(text: str, **kw):
    return {"messages": [{"role": "user", "content": f'say "{text}"'}], "max_tokens": 40, **kw}


def raw_forms(email: str, card: str) -> list[str]:
    return [email, card, card.replace(" ", "")]


@pytest.fixture(scope="module")
def clock():
    return ManualClock()


@pytest.fixture(scope="module")
def timed(clock):
    """Batches take 120 s of a clock that moves only when the client sleeps."""
    with Simulator(seed=0, clock=clock, batch_seconds=120) as s:
        yield s


def client(sim, clock, **kw):
    kw.setdefault("sleep", clock.advance)
    return Client(api_key="test", base_url=sim.base_url, model=MODEL, **kw)


def bodies(sim, path="/v1/messages/batches"):
    return [json.dumps(r.body) for r in sim.requests if r.path == path and r.method == "POST"]


def batch_cost(results):
    return sum(PRICES.cost(r.message.usage, MODEL, batch=True) for r in results if r.ok)


def files_of(path):
    """The checkpoint and SQLite's side files (-wal, -shm): everything it wrote to disk."""
    return [p for p in path.parent.iterdir() if p.name.startswith(path.name)]


def assert_no_raw(blobs, secrets):
    for blob in blobs:
        text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
        for secret in secrets:
            assert secret not in text


# -- the Message Batches API ---------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(st.tuples(emails, cards()), min_size=1, max_size=6))
def test_batches_api_sends_no_raw_value_and_restores_every_reply(timed, clock, people):
    timed.clear_requests()
    budget = Budget(usd=1)
    c = client(timed, clock, redactor=Redactor(mode="placeholder"), budget=budget)
    results = c.batch([ask(sentence(e, k)) for e, k in people], via="batches_api", progress=False)
    sent = bodies(timed)
    assert len(sent) == 1 and all("[EMAIL_1]" in s and "[CARD_1]" in s for s in sent)
    assert_no_raw(sent, [s for e, k in people for s in raw_forms(e, k)])
    assert [r.text for r in results] == [sentence(e, k) for e, k in people]  # restored for the caller
    assert budget.spent == pytest.approx(batch_cost(results)) and budget.spent > 0
    assert budget.as_dict()["held"] == pytest.approx(0, abs=1e-12)


def test_budget_spent_and_stats_are_the_batch_price_of_the_results(timed, clock):
    timed.clear_requests()
    budget = Budget(usd=1)
    c = client(timed, clock, budget=budget, user="ann")
    items = [ask(f"item {i}") for i in range(12)] + [ask("bad", temperature=5)]  # the last is errored
    results = c.batch(items, via="batches_api", progress=False)
    assert [r.ok for r in results] == [True] * 12 + [False]
    full = sum(PRICES.cost(r.message.usage, MODEL, batch=False) for r in results if r.ok)
    assert budget.spent == pytest.approx(batch_cost(results)) == pytest.approx(full * PRICES.batch_discount)
    assert budget.user_spent("ann") == pytest.approx(budget.spent)
    stats = c.stats.as_dict()
    assert stats["requests"] == 13 and stats["successes"] == 12 and stats["failures"] == {"BadRequestError": 1}
    assert stats["input_tokens"] == sum(r.message.usage.input_tokens for r in results if r.ok)
    assert stats["output_tokens"] == sum(r.message.usage.output_tokens for r in results if r.ok)
    assert stats["cost_usd"] == pytest.approx(budget.spent)
    assert stats["users"]["ann"]["requests"] == 13 and stats["users"]["ann"]["usd"] == pytest.approx(budget.spent)


@pytest.mark.parametrize("via", ["batches_api", "messages"])
def test_a_tiny_budget_refuses_every_item_before_anything_is_sent(timed, clock, via):
    timed.clear_requests()
    budget = Budget(usd=0.0001)
    c = client(timed, clock, budget=budget)
    results = c.batch([ask(f"item {i}", max_tokens=500) for i in range(5)], via=via, progress=False)
    assert all(isinstance(r.error, BudgetExceededError) and r.attempts == 0 for r in results)
    assert "budget" in str(results[0].error)
    assert timed.requests == []  # no batch created, no message sent
    assert budget.as_dict() | {"by_user": {}} == {"usd": 0.0001, "spent": 0.0, "held": 0.0, "left": 0.0001, "by_user": {}}
    assert c.stats.as_dict()["requests"] == 0


def test_items_hold_their_worst_case_at_batch_prices(timed, clock):
    """A budget between the batch-price and the standard-price worst case of one request: the
    Batches API takes it, one request per item refuses it; two items fit only one."""
    timed.clear_requests()
    max_tokens = 8000
    output_worst = max_tokens * PRICES.price(MODEL).output / 1_000_000
    usd = 0.75 * output_worst  # > the batch worst case (about half), < the standard one
    one = client(timed, clock, budget=Budget(usd=usd)).batch([ask("hi", max_tokens=max_tokens)], via="messages",
                                                              progress=False)
    assert isinstance(one[0].error, BudgetExceededError)
    held = []
    budget = Budget(usd=usd)

    def watch(seconds):  # the client sleeps between polls: the batch is submitted, its items held
        held.append(budget.as_dict()["held"])
        clock.advance(seconds)

    results = client(timed, clock, budget=budget, sleep=watch).batch(
        [ask("one", max_tokens=max_tokens), ask("two", max_tokens=max_tokens)], via="batches_api", progress=False
    )
    assert results[0].text == "one" and isinstance(results[1].error, BudgetExceededError)
    (created,) = [r.body for r in timed.requests if r.path == "/v1/messages/batches" and r.method == "POST"]
    assert [item["custom_id"] for item in created["requests"]] == ["0"]
    assert held and all(output_worst * PRICES.batch_discount < h < usd for h in held)
    assert budget.as_dict()["held"] == pytest.approx(0, abs=1e-12)
    assert budget.spent == pytest.approx(batch_cost(results))


class Interrupt(Exception):
    pass


def test_holds_are_released_when_the_batch_is_interrupted(timed, clock):
    timed.clear_requests()
    budget = Budget(usd=1)

    def interrupt(seconds):
        assert budget.as_dict()["held"] > 0
        raise Interrupt

    c = client(timed, clock, budget=budget, sleep=interrupt)
    with pytest.raises(Interrupt):
        c.batch([ask(f"item {i}") for i in range(4)], via="batches_api", progress=False)
    assert budget.as_dict()["held"] == pytest.approx(0, abs=1e-12) and budget.spent == 0


def test_holds_are_released_when_the_server_refuses_the_batch(clock):
    budget = Budget(usd=1)
    with Simulator(seed=0, clock=clock, max_batch_bytes=2000) as small:
        c = client(small, clock, budget=budget)
        with pytest.raises(RequestTooLargeError):
            c.batch([ask("x" * 100 + str(i)) for i in range(40)], via="batches_api", progress=False)
    assert budget.as_dict()["held"] == pytest.approx(0, abs=1e-12) and budget.spent == 0


def test_holds_are_released_when_an_async_batch_is_cancelled(timed, clock):
    budget = Budget(usd=1)
    seen = []

    async def slow(seconds):
        seen.append(budget.as_dict()["held"])
        await asyncio.sleep(3600)

    async def main():
        async with AsyncClient(api_key="test", base_url=timed.base_url, model=MODEL, budget=budget, sleep=slow) as c:
            task = asyncio.create_task(c.batch([ask(f"item {i}") for i in range(4)], via="batches_api", progress=False))
            while not seen:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert seen[0] > 0 and budget.as_dict()["held"] == pytest.approx(0, abs=1e-12)


def test_async_batches_api_is_guarded_the_same(timed, clock):
    timed.clear_requests()
    email, card = "grace.hopper@navy.mil", "5555 5555 5555 4444"
    budget = Budget(usd=1)

    async def advance(seconds):
        clock.advance(seconds)

    async def main():
        async with AsyncClient(api_key="test", base_url=timed.base_url, model=MODEL, budget=budget, sleep=advance,
                               redactor=Redactor(mode="placeholder")) as c:
            return await c.batch([ask(sentence(email, card))] * 3, via="batches_api", progress=False), c.stats

    results, stats = asyncio.run(main())
    assert [r.text for r in results] == [sentence(email, card)] * 3
    assert_no_raw(bodies(timed), raw_forms(email, card))
    assert budget.spent == pytest.approx(batch_cost(results)) == pytest.approx(stats.as_dict()["cost_usd"])
    assert stats.as_dict()["requests"] == 3


def test_batches_api_items_use_the_response_cache_which_holds_placeholders(timed, clock, tmp_path):
    timed.clear_requests()
    email, card = "alan.turing@example.org", "4000 0566 5566 5556"
    cache = SQLiteCache(tmp_path / "cache.db")
    c = client(timed, clock, redactor=Redactor(mode="placeholder"), cache=cache, budget=Budget(usd=1))
    items = [ask(f"{i} " + sentence(email, card), temperature=0) for i in range(3)]
    first = c.batch(items, via="batches_api", progress=False)
    assert len(bodies(timed)) == 1
    timed.clear_requests()
    again = c.batch(items, via="batches_api", progress=False)  # answered by the cache: nothing submitted
    reply = c.create(items[1]["messages"], max_tokens=40, temperature=0)  # create shares those answers
    assert timed.requests == []
    assert [r.text for r in again] == [r.text for r in first] == [f"{i} " + sentence(email, card) for i in range(3)]
    assert reply.content[0].text == first[1].text
    assert c.stats.as_dict()["cache_hits"] == 4 and c.stats.as_dict()["requests"] == 3
    cache.close()
    assert_no_raw([p.read_bytes() for p in tmp_path.iterdir()], raw_forms(email, card))


def test_batch_items_do_not_draw_on_the_messages_api_rate_limits(timed, clock):
    """The Message Batches API has its own limits: 30 batched items under rpm=2 wait for nothing,
    and leave the Messages API's buckets full for the next create."""
    timed.clear_requests()
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock.advance(seconds)

    c = Client(api_key="test", base_url=timed.base_url, model=MODEL, limits=RateLimits(rpm=2, learn=False), sleep=sleep,
               clock=clock)
    results = c.batch([ask(f"item {i}") for i in range(30)], via="batches_api", progress=False)
    assert all(r.ok for r in results) and sum(slept) < 200  # polls only: the batch takes 120 s
    slept.clear()
    c.create(ask("now")["messages"], max_tokens=10)
    c.create(ask("and now")["messages"], max_tokens=10)
    assert slept == []  # two requests fit rpm=2 at once: the batch took nothing from the bucket


# -- checkpoints hold placeholders ---------------------------------------------------------------

EMAIL, CARD = "ada.lovelace@example.org", "4111 1111 1111 1111"


@pytest.mark.parametrize("via", ["batches_api", "messages"])
def test_checkpoints_hold_no_raw_value_and_reloads_are_restored(timed, clock, tmp_path, via):
    path = tmp_path / "run.ckpt"
    items = [ask(f"{i}: " + sentence(EMAIL, CARD)) for i in range(6)]
    first = client(timed, clock, redactor=Redactor(mode="placeholder")).batch(items, via=via, checkpoint=path,
                                                                                progress=False)
    assert [r.text for r in first] == [f"{i}: " + sentence(EMAIL, CARD) for i in range(6)]
    written = files_of(path)
    assert written and all(p.stat().st_size > 0 for p in written)
    assert_no_raw([p.read_bytes() for p in written], raw_forms(EMAIL, CARD))
    assert b"[EMAIL_1]" in b"".join(p.read_bytes() for p in written)  # the replies are there, as sent
    timed.clear_requests()
    again = client(timed, clock, redactor=Redactor(mode="placeholder")).batch(items, via=via, checkpoint=path,
                                                                                progress=False)
    assert timed.requests == [] and all(r.from_checkpoint for r in again)
    assert [r.text for r in again] == [r.text for r in first]


def test_map_reduce_checkpoint_holds_no_raw_value(timed, clock, tmp_path):
    timed.clear_requests()
    people = [("ann.lee@example.com", "4012 8888 8888 1881"), ("bo.chen@example.net", "5105 1051 0510 5100")]
    parts = [
        f"Summarize. The customer {e} paid the invoice with the card {k}. The order shipped on time. "
        f"The customer {e} asked for a receipt by mail." for e, k in people
    ]
    path = tmp_path / "map.ckpt"
    c = client(timed, clock, redactor=Redactor(mode="placeholder"))
    result = map_reduce(parts, "Summarize this part.", client=c, checkpoint=path, progress=False, max_tokens=200)
    secrets = [s for e, k in people for s in raw_forms(e, k)]
    assert result.ok and any(e in p.text for p, (e, _) in zip(result.partials, people, strict=True))
    assert_no_raw(bodies(timed, "/v1/messages"), secrets)
    assert_no_raw([p.read_bytes() for p in files_of(path)], secrets)
    timed.clear_requests()
    again = map_reduce(parts, "Summarize this part.", client=c, checkpoint=path, progress=False, max_tokens=200)
    assert all(p.cached for p in again.partials)
    assert [p.text for p in again.partials] == [p.text for p in result.partials]
