"""Stream recovery as the catalogue says: a prefill where the model accepts one, a continuation
request (an assistant turn with the text so far, then a user turn asking to continue) elsewhere.

Every stream fault kind, per model family, sync and async, against the simulator over real
HTTP. The continuation's answer is whatever the server says to the recorded continuation
request; the caller must see the partial text plus that answer once, without repeats.
"""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convo
from convo import AsyncClient, Client, RetryPolicy
from convo._resume import CONTINUE_PROMPT, MIN_OVERLAP, _Progress, accepts_prefill, overlap
from convo.models import lookup

ASK = [{"role": "user", "content": "Tell me about the weather today in the city of Oslo."}]
PREFILL_MODEL = "claude-haiku-4-5"
CONTINUE_MODELS = ("claude-sonnet-4-6", "claude-sonnet-5-5")
FAULTS = ("sse_error@3", "drop@3", "truncate@3", "malformed@3", "hang@3")


def test_the_catalogue_decides_prefill_or_continuation():
    assert lookup(PREFILL_MODEL).prefill and accepts_prefill(PREFILL_MODEL, {})
    for model in CONTINUE_MODELS:
        assert not lookup(model).prefill and not accepts_prefill(model, {})
    assert not accepts_prefill("claude-unknown-9", {})  # unknown: the request that works everywhere
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert not accepts_prefill(PREFILL_MODEL, thinking)  # thinking on: never a prefill
    assert accepts_prefill(PREFILL_MODEL, {"thinking": {"type": "disabled"}})


def posts(sim):
    return [r for r in sim.requests if r.method == "POST" and r.path == "/v1/messages"]


def clean(sim, model):
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        return c.messages.create(model=model, max_tokens=300, messages=ASK)


def answer_to(sim, body):
    """What the server answers, without faults, to the request the client sent to continue."""
    body = {k: v for k, v in body.items() if k != "stream"}
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        return c.messages.create(**body)


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def check_resume(sim, model, chunks, final, first):
    """The continuation request's shape, and the stitched text and usage."""
    sent = posts(sim)
    assert len(sent) == 2 and sent[0].body["messages"] == ASK
    resumed = sent[1].body["messages"]
    partial = resumed[len(ASK)]["content"]
    assert resumed[: len(ASK)] == ASK and resumed[len(ASK)]["role"] == "assistant"
    assert partial and partial == partial.rstrip() and "".join(chunks).startswith(partial)
    if lookup(model).prefill:
        assert len(resumed) == len(ASK) + 1  # ends with the prefill
    else:
        assert len(resumed) == len(ASK) + 2 and resumed[-1]["role"] == "user"
        assert resumed[-1]["content"] == CONTINUE_PROMPT and "continue" in resumed[-1]["content"]
    assert sent[1].body["max_tokens"] < 300  # what the first attempt produced is taken off
    answer = answer_to(sim, sent[1].body)
    said, rest = "".join(chunks), text_of(answer)
    # What the caller had seen is the partial text plus the whitespace the API refused at the
    # end of a turn; after it comes the answer, less what repeats what was seen.
    seen = [said[: len(partial) + j] for j in range(8) if said[: len(partial) + j].rstrip() == partial]
    assert any(said == x + rest[overlap(x, rest) :] for x in seen), (said, partial, rest)
    assert text_of(final) == said  # get_final_message holds the whole text, each character once
    assert final.usage.input_tokens == first.usage.input_tokens + answer.usage.input_tokens
    assert final.usage.output_tokens >= answer.usage.output_tokens + 1
    if lookup(model).prefill:  # the continuation of a prefill is the rest of the same answer
        assert said == text_of(first)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("model", [PREFILL_MODEL, *CONTINUE_MODELS])
def test_every_fault_resumes_as_the_model_allows(fresh, model, fault):
    first = clean(fresh, model)
    fresh.clear_requests()
    fresh.faults = [fault]
    c = Client(api_key="test", base_url=fresh.base_url, model=model, sleep=lambda s: None, timeout=0.5)
    with c.stream(ASK, max_tokens=300) as s:
        chunks = list(s.text_stream)
        final = s.get_final_message()
    assert c.stats.stream_resumes == 1
    check_resume(fresh, model, chunks, final, first)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("model", [PREFILL_MODEL, "claude-sonnet-4-6"])
def test_async_every_fault_resumes_as_the_model_allows(fresh, model, fault):
    first = clean(fresh, model)
    fresh.clear_requests()
    fresh.faults = [fault]

    async def nap(seconds):
        return None

    async def main():
        c = AsyncClient(api_key="test", base_url=fresh.base_url, model=model, sleep=nap, timeout=0.5)
        async with c.stream(ASK, max_tokens=300) as s:
            chunks = [t async for t in s.text_stream]
            final = await s.get_final_message()
        await c.close()
        return chunks, final

    chunks, final = asyncio.run(main())
    check_resume(fresh, model, chunks, final, first)


def test_a_fault_before_any_text_sends_the_original_request_again(fresh):
    fresh.faults = ["sse_error@0"]
    c = Client(api_key="test", base_url=fresh.base_url, model="claude-sonnet-4-6", sleep=lambda s: None)
    text = "".join(c.stream(ASK, max_tokens=300).text_stream)
    first, second = posts(fresh)
    assert first.body == second.body and text == text_of(clean(fresh, "claude-sonnet-4-6"))


def test_restart_policy_never_continues(fresh):
    fresh.faults = ["sse_error@3"]
    c = Client(api_key="test", base_url=fresh.base_url, model="claude-sonnet-4-6", sleep=lambda s: None,
               retry=RetryPolicy(stream_resume="restart"))  # fmt: skip
    with pytest.raises(convo.StreamRestartedError):
        list(c.stream(ASK, max_tokens=300).text_stream)
    assert RetryPolicy().stream_resume == "continue" and RetryPolicy(stream_resume="prefill")


@pytest.mark.parametrize("model", [PREFILL_MODEL, "claude-sonnet-4-6"])
def test_with_thinking_on_a_partial_thinking_reply_restarts_and_is_never_prefilled(fresh, model):
    request = {"messages": ASK, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    with (
        anthropic.Anthropic(base_url=fresh.base_url, api_key="test", max_retries=0) as sdk,
        sdk.messages.stream(model=model, max_tokens=2000, **request) as s,
    ):
        kinds = [e.delta.type for e in s if e.type == "content_block_delta"]
        whole = s.get_final_message()
    fresh.clear_requests()
    fresh.faults = [f"sse_error@{kinds.index('text_delta') + 2}"]
    restarts = []
    c = Client(api_key="test", base_url=fresh.base_url, model=model, sleep=lambda s: None)
    s = c.stream(max_tokens=2000, on_restart=restarts.append, **request)
    said = "".join(s.text_stream)
    assert len(restarts) == 1 and said == restarts[0].partial + text_of(whole)
    for sent in posts(fresh):
        assert sent.body["messages"][-1]["role"] == "user"  # no prefill, whatever the model


# -- the overlap rule -------------------------------------------------------------------------


def test_overlap_drops_a_repeated_tail_and_whitespace_only():
    seen = "The quick brown fox jumps "
    assert overlap(seen, " over") == 1  # the space the caller saw but the API refused
    assert overlap(seen, "brown fox jumps over the dog") == len("brown fox jumps ")
    assert overlap(seen, "over the dog") == 0
    assert overlap("I said no", "no more") == 0  # too short to tell from new text
    assert overlap("a cat sat", "at the door") == 0  # not at a word boundary


def test_progress_holds_back_a_possible_repeat_then_lets_the_rest_through():
    p = _Progress({"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": ASK})
    assert p.take("The quick brown ") == "The quick brown "
    assert p.take("fox jumps ") == "fox jumps "
    body = p.kwargs("claude-sonnet-4-6")
    assert body["messages"][-2] == {"role": "assistant", "content": "The quick brown fox jumps"}
    assert p.take("brown ") == ""  # could still be a repeat: held
    assert p.take("fox jumps") == ""
    assert p.take(" over") == "over"  # the space after "jumps" was seen already
    assert p.take(" the dog.") == " the dog."
    assert p.text == "The quick brown fox jumps over the dog."
    p.kwargs("claude-sonnet-4-6")
    assert p.take("dog.") == "" and p.drain() == "dog."  # short: new text, let through at the end


@given(seen=st.text(max_size=60), continuation=st.text(max_size=60))
def test_overlap_only_ever_drops_a_repeat_of_the_end(seen, continuation):
    k = overlap(seen, continuation)
    assert 0 <= k <= min(len(seen), len(continuation))
    assert seen.endswith(continuation[:k])
    assert k == 0 or not continuation[:k].strip() or k >= MIN_OVERLAP


ALWAYS_THINKING = [m.id for m in convo.models.Catalogue.bundled() if m.thinking.always_on and m.status != "retired"]


@pytest.mark.parametrize("fault", ["sse_error@2", "sse_error@8", "drop@5", "truncate@8", "malformed@4"])
@pytest.mark.parametrize("model", ALWAYS_THINKING[:2])
def test_models_that_always_think_are_never_prefilled(fresh, model, fault):
    """Thinking is always on (Fable 5.x, Opus 5.5): a broken stream is continued with a user turn
    or sent again, never prefilled, and the caller sees one whole answer."""
    assert ALWAYS_THINKING, "the catalogue lists models whose thinking is always on"
    fresh.faults = [fault]
    c = Client(api_key="test", base_url=fresh.base_url, model=model, sleep=lambda s: None, timeout=0.5)
    with c.stream(ASK, max_tokens=300) as s:
        said = "".join(s.text_stream)
        final = s.get_final_message()
    sent = posts(fresh)
    assert len(sent) == 2 and all(r.body["messages"][-1]["role"] == "user" for r in sent)
    assert said and text_of(final) == said
    assert final.content[0].type == "thinking"
