"""Prices, cost, budgets and per-user accounting."""

import asyncio

import pytest

import convo
from convo import AsyncClient, Budget, BudgetExceededError, Client, PriceTable
from convo.sim import Simulator

MODEL = "claude-sonnet-4-6"


def test_cost_matches_a_hand_calculation_with_cache_and_batch():
    table = PriceTable.default()
    usage = {
        "input_tokens": 1_000,
        "output_tokens": 2_000,
        "cache_creation_input_tokens": 3_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000},
        "cache_read_input_tokens": 10_000,
    }
    # Sonnet 4.6: $3 in, $15 out, $3.75 5-minute writes, $6 1-hour writes, $0.30 reads, per MTok.
    hand = (1_000 * 3 + 2_000 * 15 + 1_000 * 3.75 + 2_000 * 6 + 10_000 * 0.30) / 1e6
    assert table.cost(usage, MODEL) == pytest.approx(hand)
    assert table.cost({**usage, "service_tier": "batch"}, MODEL) == pytest.approx(hand / 2)
    # Without a breakdown, writes are billed at the 5-minute rate.
    plain = {k: v for k, v in usage.items() if k != "cache_creation"}
    assert table.cost(plain, MODEL) == pytest.approx((1_000 * 3 + 2_000 * 15 + 3_000 * 3.75 + 10_000 * 0.30) / 1e6)


def test_cost_of_an_sdk_usage_object_with_one_hour_writes():
    from anthropic.types import Usage

    usage = Usage.model_validate({
        "input_tokens": 10, "output_tokens": 20, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
    })
    hand = (10 * 3 + 20 * 15 + 100 * 3.75 + 200 * 6) / 1e6
    assert PriceTable.default().cost(usage, MODEL) == pytest.approx(hand)


def test_dated_model_names_and_unknown_models():
    table = PriceTable.default()
    assert table.price("claude-sonnet-4-5-20250929") == table.price("claude-sonnet-4-5")
    with pytest.raises(convo.UnknownModelError, match="models.json"):
        table.price("claude-imaginary-9")
    with pytest.raises(convo.UnknownModelError):
        Client(api_key="k", model="claude-imaginary-9", budget=Budget(usd=1))


def test_cost_of_a_real_response_is_in_stats(tmp_path):
    with Simulator() as sim:
        client = Client(api_key="k", base_url=sim.base_url, model=MODEL, user="alice")
        msg = client.create([{"role": "user", "content": "Hello there"}], max_tokens=50)
        assert sim.requests[-1].body["metadata"] == {"user_id": "alice"}
    expected = PriceTable.default().cost(msg.usage, MODEL)
    stats = client.stats.as_dict()
    assert expected > 0 and stats["cost_usd"] == pytest.approx(expected)
    assert stats["users"]["alice"]["usd"] == pytest.approx(expected)
    assert stats["users"]["alice"]["input_tokens"] == msg.usage.input_tokens
    assert "alice" in str(client.stats)


def test_a_request_whose_worst_case_passes_the_cap_is_not_sent():
    with Simulator() as sim:
        client = Client(api_key="k", base_url=sim.base_url, model=MODEL, budget=Budget(usd=0.001))
        with pytest.raises(BudgetExceededError) as info:
            client.create([{"role": "user", "content": "Hi"}], max_tokens=4000)  # 4000 x $15/MTok = $0.06
        assert "budget" in str(info.value) and info.value.needed > 0.001
        assert [r for r in sim.requests if r.path == "/v1/messages"] == []


def test_alerts_fire_once_per_fraction():
    fired = []
    budget = Budget(usd=1.0, alerts=(0.5, 0.8), on_alert=lambda f, spent, cap: fired.append(f))
    for _ in range(10):
        hold = budget.reserve(0.1)
        budget.settle(hold, 0.1)
    assert fired == [0.5, 0.8]
    assert budget.spent == pytest.approx(1.0)
    with pytest.raises(BudgetExceededError):
        budget.reserve(0.01)


def test_per_user_cap():
    budget = Budget(usd=10, per_user_usd=1)
    budget.settle(budget.reserve(0.9, "alice"), 0.9)
    with pytest.raises(BudgetExceededError, match="alice"):
        budget.reserve(0.2, "alice")
    budget.reserve(0.2, "bob")
    assert budget.user_spent("alice") == pytest.approx(0.9)


def test_a_refusal_says_what_requests_in_flight_hold():
    """Under concurrency most of a cap can be held, not spent: the refusal says so, or it reads
    as a budget that lost money ("only $0.05 of the $1.00 budget is left (spent $0.00)")."""
    budget = Budget(usd=1.0, per_user_usd=0.5)
    budget.settle(budget.reserve(0.1, "ann"), 0.1)
    holds = [budget.reserve(0.2, "ann"), budget.reserve(0.3, "bob"), budget.reserve(0.35, "carl")]
    with pytest.raises(BudgetExceededError) as info:
        budget.reserve(0.1, "dan")
    message = str(info.value)
    assert "$0.050000 of the $1.00 budget is left" in message
    assert "spent $0.100000" in message and "held by requests in flight $0.850000" in message
    with pytest.raises(BudgetExceededError) as info:
        budget.settle(holds.pop(2), 0.0) or budget.reserve(0.25, "ann")
    assert "$0.200000 of their $0.50 cap is left" in str(info.value)
    assert "spent $0.100000, held by requests in flight $0.200000" in str(info.value)
    with pytest.raises(BudgetExceededError) as info:
        Budget(usd=1.0).reserve(2.0)
    assert "held" not in str(info.value)  # nothing in flight: nothing to say about it


@pytest.mark.parametrize("kwargs", [{"usd": 0}, {"usd": -1}, {"usd": 1, "alerts": (1.5,)}, {"usd": 1, "per_user_usd": 0}])
def test_bad_budgets(kwargs):
    with pytest.raises(convo.InvalidConfigError):
        Budget(**kwargs)


def test_spend_never_exceeds_the_cap_under_concurrency():
    budget = Budget(usd=0.02)
    costs = []

    async def main(sim):
        client = AsyncClient(api_key="k", base_url=sim.base_url, model=MODEL, budget=budget, max_concurrency=16)

        async def one(i):
            try:
                msg = await client.create([{"role": "user", "content": f"Tell me about item {i} " * 20}], max_tokens=300)
                costs.append(PriceTable.default().cost(msg.usage, MODEL))
            except BudgetExceededError:
                pass

        await asyncio.gather(*(one(i) for i in range(64)))
        await client.close()

    with Simulator(latency=0.01) as sim:
        asyncio.run(main(sim))
    assert budget.spent <= budget.usd
    assert budget.spent == pytest.approx(sum(costs))
    assert 0 < len(costs) < 64


def test_per_call_user_has_its_own_ledger():
    with Simulator() as sim:
        client = Client(api_key="k", base_url=sim.base_url, model=MODEL, user="alice")
        client.create([{"role": "user", "content": "Hi"}], max_tokens=20)
        client.create([{"role": "user", "content": "Hi"}], max_tokens=20, user="bob")
        assert sim.requests[-1].body["metadata"] == {"user_id": "bob"}
    users = client.stats.as_dict()["users"]
    assert set(users) == {"alice", "bob"} and users["bob"]["requests"] == 1
