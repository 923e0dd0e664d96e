"""Pre-flight checks: a request its model's catalogue rules would make the API refuse is not sent."""

import asyncio
import logging
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

import convo
from convo import AsyncClient, Budget, Client, Conversation, ModelRuleError
from convo._preflight import check_request
from convo.models import DEFAULT_MODEL, lookup

KEY = "sk-ant-test-preflight-0123456789"
ASK = [{"role": "user", "content": "Name three rivers in Europe."}]
PREFILLED = [*ASK, {"role": "assistant", "content": "The three rivers are"}]


def client(sim, **kw):
    kw.setdefault("sleep", lambda s: None)
    return Client(api_key=KEY, base_url=sim.base_url, **kw)


def posts(sim, path="/v1/messages"):
    return [r for r in sim.requests if r.path == path]


# Each case: the model, create()'s arguments, the rule named, and words the message must hold.
REFUSED = [
    ("claude-haiku-4-5", {"max_tokens": 64_001}, "max_tokens", ["64001", "64000", "lower max_tokens"]),
    (DEFAULT_MODEL, {"max_tokens": 128_001}, "max_tokens", ["128001", "128000", "Batch API", "300000"]),
    ("claude-sonnet-5", {"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 4000},
     "thinking", ["extended thinking", "adaptive"]),
    ("claude-haiku-4-5", {"thinking": {"type": "adaptive"}}, "thinking", ["adaptive", "budget_tokens"]),
    ("claude-opus-5-5", {"thinking": {"type": "disabled"}}, "thinking", ["cannot be turned off", "effort"]),
    ("claude-haiku-4-5", {"thinking": {"type": "enabled", "budget_tokens": 4000}, "max_tokens": 4000},
     "budget_tokens", ["budget_tokens=4000", "max_tokens=4000", "raise max_tokens"]),
    ("claude-sonnet-4-6", {"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 4000,
                           "temperature": 0.5}, "sampling", ["temperature=0.5", "only be 1"]),
    ("claude-sonnet-4-6", {"thinking": {"type": "adaptive"}, "top_k": 40}, "sampling", ["top_k=40", "remove top_k"]),
    ("claude-haiku-4-5", {"temperature": 0.2, "top_p": 0.9}, "sampling", ["temperature or top_p", "remove one"]),
    (DEFAULT_MODEL, {"temperature": 0}, "sampling", ["temperature=0", "non-default"]),
    ("claude-haiku-5-5", {"top_k": 5}, "sampling", ["top_k=5"]),
    ("claude-sonnet-4-6", {"messages": PREFILLED}, "prefill", ["prefill", "end with a user message"]),
    (DEFAULT_MODEL, {"messages": PREFILLED}, "prefill", ["prefill"]),
]


@pytest.mark.parametrize("model, kwargs, rule, words", REFUSED, ids=[f"{m}-{r}" for m, _, r, _ in REFUSED])
def test_a_rule_breaking_request_is_not_sent(fresh, model, kwargs, rule, words):
    kwargs = dict(kwargs)
    messages = kwargs.pop("messages", ASK)
    kwargs.setdefault("max_tokens", 1000)
    c = client(fresh, model=model)
    with pytest.raises(ModelRuleError) as caught:
        c.create(messages, **kwargs)
    error = caught.value
    assert isinstance(error, convo.InvalidInputError)
    assert error.rule == rule and error.model == lookup(model).id
    for word in words:
        assert word in str(error), word
    assert posts(fresh) == []
    with pytest.raises(ModelRuleError):  # streams are checked the same way
        c.stream(messages, **kwargs)
    assert posts(fresh) == [] and c.stats.successes == 0


ALLOWED = [
    ("claude-haiku-4-5", {"max_tokens": 20_000}),
    ("claude-haiku-4-5", {"temperature": 0.2}),
    ("claude-haiku-4-5", {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2000}),
    ("claude-haiku-4-5", {"messages": PREFILLED}),  # 4.5 models still accept a prefill
    ("claude-sonnet-4-6", {"thinking": {"type": "adaptive"}}),
    (DEFAULT_MODEL, {"thinking": {"type": "adaptive"}}),
]


@pytest.mark.parametrize("model, kwargs", ALLOWED, ids=[f"{m}-{sorted(k)}" for m, k in ALLOWED])
def test_a_request_within_the_rules_is_sent(fresh, model, kwargs):
    kwargs = dict(kwargs)
    messages = kwargs.pop("messages", ASK)
    kwargs.setdefault("max_tokens", 200)
    msg = client(fresh, model=model).create(messages, **kwargs)
    assert msg.content and len(posts(fresh)) == 1
    assert posts(fresh)[0].body["max_tokens"] == kwargs["max_tokens"]


def test_a_stream_at_the_models_maximum_is_sent(fresh):
    with client(fresh, model="claude-haiku-4-5").stream(ASK, max_tokens=64_000) as s:
        assert "".join(s.text_stream)
    assert [p.body["max_tokens"] for p in posts(fresh)] == [64_000]


def test_the_rules_that_pass_without_a_server():
    sonnet = lookup(DEFAULT_MODEL)
    base = {"model": DEFAULT_MODEL, "messages": ASK}
    check_request({**base, "max_tokens": 300_000}, sonnet, batch=True)  # the Batch API's cap (beta)
    with pytest.raises(ModelRuleError, match="on the Batch API"):
        check_request({**base, "max_tokens": 300_001}, sonnet, batch=True)
    check_request({**base, "max_tokens": 10, "temperature": 1, "top_p": 1}, sonnet)  # the defaults are fine
    check_request({**base, "max_tokens": 10, "temperature": 0.3}, lookup("claude-sonnet-4-6"))
    # count_tokens has no reply: no reply-length, sampling or prefill rules, but thinking modes still count.
    check_request({"model": DEFAULT_MODEL, "messages": PREFILLED}, sonnet, method="count_tokens")
    with pytest.raises(ModelRuleError, match="extended thinking"):
        check_request({**base, "thinking": {"type": "enabled", "budget_tokens": 1024}}, sonnet, method="count_tokens")


def test_count_tokens_is_checked_before_sending(fresh):
    c = client(fresh, model="claude-sonnet-5")
    with pytest.raises(ModelRuleError):
        c.count_tokens(ASK, thinking={"type": "enabled", "budget_tokens": 1024})
    assert posts(fresh, "/v1/messages/count_tokens") == []
    assert c.count_tokens(ASK) > 0


def test_the_async_client_checks_too(fresh):
    async def main():
        c = AsyncClient(api_key=KEY, base_url=fresh.base_url, model="claude-haiku-4-5")
        try:
            with pytest.raises(ModelRuleError):
                await c.create(ASK, max_tokens=100, temperature=0.5, top_p=0.5)
            with pytest.raises(ModelRuleError):
                c.stream(ASK, max_tokens=100_000)
            return await c.create(ASK, max_tokens=100, temperature=0.5)
        finally:
            await c.close()

    assert asyncio.run(main()).content
    assert len(posts(fresh)) == 1


def test_a_conversation_request_is_checked_when_sent(fresh):
    conv = Conversation("Be brief.", model=DEFAULT_MODEL, budget=8000, client=client(fresh))
    with pytest.raises(ModelRuleError, match="temperature"):
        conv.send("Hi", temperature=0.0)
    assert posts(fresh) == [] and len(conv) == 0  # nothing sent, the history unchanged


def test_an_unknown_model_is_sent_with_one_warning(fresh, caplog):
    model = f"claude-imaginary-{uuid.uuid4().hex[:8]}"
    c = client(fresh, model=model)
    with caplog.at_level(logging.WARNING, logger="convo"):
        for _ in range(2):
            try:  # the server decides: a simulator that lists only catalogue models answers 404
                c.create(ASK, max_tokens=100, temperature=0.3, top_p=0.5)
            except convo.NotFoundError:
                pass
    warned = [r for r in caplog.records if model in r.getMessage() and "catalogue" in r.getMessage()]
    assert len(warned) == 1
    assert [p.body["model"] for p in posts(fresh)] == [model, model]  # sent, unchecked


def test_an_unknown_models_cost_is_unknown_not_zero(fresh):
    reply = client(fresh, model="claude-haiku-4-5").create(ASK, max_tokens=50)
    receipt = convo.Receipt(model="claude-imaginary-4", kept_messages=1, kept_tokens=10, estimated_input=10)
    assert receipt.completed(reply.usage).cost is None
    known = receipt.model_copy(update={"model": "claude-haiku-4-5"}).completed(reply.usage)
    assert known.cost == pytest.approx(convo.PriceTable.default().cost(reply.usage, "claude-haiku-4-5")) and known.cost > 0


def test_a_budget_with_an_unknown_model_fails_closed(fresh):
    with pytest.raises(convo.UnknownModelError, match="models.json"):
        client(fresh, model="claude-imaginary-1", budget=Budget(usd=1))
    c = client(fresh, model=DEFAULT_MODEL, budget=Budget(usd=1))
    with pytest.raises(convo.UnknownModelError, match="PriceTable"):
        c.create(ASK, max_tokens=100, model="claude-imaginary-2")
    assert posts(fresh) == []


def test_conversation_defaults_come_from_the_model(fresh):
    conv = Conversation(model="claude-haiku-4-5")
    assert conv.budget == 200_000 and conv.max_tokens == 1024
    assert Conversation().model == DEFAULT_MODEL and Conversation().budget == lookup(DEFAULT_MODEL).max_input_tokens
    with pytest.raises(convo.InvalidConfigError, match="claude-imaginary-3"):
        Conversation(model="claude-imaginary-3")
    assert Conversation(model="claude-imaginary-3", budget=5000).max_tokens == 1024
    with pytest.raises(ModelRuleError, match="64000"):
        Conversation(model="claude-haiku-4-5", max_tokens=64_001)
    # A client refreshed from the Models API supplies the limits (here a small reply cap).
    c = client(fresh)
    c.catalogue = c.catalogue.merged([{"id": "claude-tiny-1", "max_input_tokens": 3000, "max_tokens": 300}])
    tiny = Conversation(model="claude-tiny-1", client=c)
    assert (tiny.budget, tiny.max_tokens) == (3000, 300)


@given(model=st.sampled_from([info.id for info in convo.Catalogue.bundled()]), max_tokens=st.integers(1, 400_000),
       batch=st.booleans())
def test_max_tokens_is_refused_exactly_above_the_models_cap(model, max_tokens, batch):
    info = lookup(model)
    cap = info.max_tokens_batch if batch and info.max_tokens_batch else info.max_tokens
    request = {"model": model, "max_tokens": max_tokens, "messages": ASK}
    if max_tokens <= cap:
        check_request(request, info, batch=batch)
    else:
        with pytest.raises(ModelRuleError, match=f"max_tokens={max_tokens} ") as caught:
            check_request(request, info, batch=batch)
        assert caught.value.rule == "max_tokens" and f"{cap}" in str(caught.value)
