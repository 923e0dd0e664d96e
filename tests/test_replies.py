"""Replies that say what happened: convo.Reply from send/asend, each stop reason through the
simulator's fault schedule, truncation and continue_, refusals, structured output."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, field_validator

import convo
from convo import Conversation, OutputValidationError, Reply, check_history

from .helpers import MODEL, quick_aclient, quick_client

PREFILL_MODEL = "claude-haiku-4-5"  # the catalogue: accepts an assistant prefill
STORY = "Tell me a long story about the lighthouse keeper and the storm"


def conv_on(sim, *, model=MODEL, aio=False, **kw):
    client = quick_aclient(sim) if aio else quick_client(sim)
    return Conversation("Be helpful.", model=model, budget=20_000, client=client, **kw)


def messages_sent(sim, i=-1):
    return [r for r in sim.requests if r.path == "/v1/messages"][i].body["messages"]


# -- the Reply --------------------------------------------------------------------------------------


def test_send_returns_a_reply_that_is_a_str_with_what_the_turn_did(fresh):
    conv = conv_on(fresh)
    reply = conv.send("What is the capital of France?")
    assert isinstance(reply, Reply) and isinstance(reply, str)
    assert reply == reply.text == conv.messages[-1].text and type(reply.text) is str
    assert reply.stop_reason == "end_turn" and not reply.truncated and not reply.refused
    assert len(reply.steps) == 1 and reply.tool_calls == () and reply.parsed is None
    assert reply.message.content[0].text == reply
    assert reply.receipt is conv.last_receipt and reply.receipts == (conv.last_receipt,)
    assert reply.usage.input_tokens == reply.message.usage.input_tokens > 0
    assert reply.usage.output_tokens == reply.message.usage.output_tokens > 0
    assert reply.cost == conv.last_receipt.cost and reply.cost > 0
    assert reply.upper() == str(reply).upper() and reply + "!" == str(reply) + "!"  # a plain str's methods


def test_asend_returns_the_same_reply(fresh):
    sync = conv_on(fresh).send("What is the capital of France?")
    conv = conv_on(fresh, aio=True)
    reply = asyncio.run(conv.asend("What is the capital of France?"))
    assert isinstance(reply, Reply) and reply == sync and reply.usage == sync.usage and reply.cost == sync.cost


# -- truncation and continue_ ----------------------------------------------------------------------


@pytest.mark.parametrize("model", [MODEL, PREFILL_MODEL])
def test_a_cut_off_reply_is_flagged_and_continue_gives_the_rest(fresh, model):
    full = conv_on(fresh, model=model).send(STORY, max_tokens=800)
    conv = conv_on(fresh, model=model)
    cut = conv.send(STORY, max_tokens=8)
    assert cut.truncated and cut.stop_reason == "max_tokens" and full.startswith(cut) and cut != full
    assert conv.messages[-1].text == cut  # kept, flagged
    rest = conv.continue_(max_tokens=800)
    assert not rest.truncated and rest.stop_reason == "end_turn"
    assert conv.messages[-1].text == full  # joined onto the cut reply in the history
    assert [m.role for m in conv.messages] == ["user", "assistant"]  # no continuation prompt left
    assert full.endswith(rest) and len(conv.receipts) == 2


def test_continue_extends_in_steps_and_async(fresh):
    full = conv_on(fresh).send(STORY, max_tokens=800)
    conv = conv_on(fresh, aio=True)

    async def main():
        parts = [await conv.asend(STORY, max_tokens=6)]
        while parts[-1].truncated:
            parts.append(await conv.acontinue_(max_tokens=12))
        return parts

    parts = asyncio.run(main())
    assert len(parts) > 2 and conv.messages[-1].text == full and len(conv) == 2


def test_continue_needs_a_reply(fresh):
    conv = conv_on(fresh)
    with pytest.raises(convo.InvalidInputError, match="no reply to continue"):
        conv.continue_()


def test_model_context_window_exceeded_is_kept_and_flagged(fresh):
    conv = conv_on(fresh)
    fresh.faults.push("model_context_window_exceeded")
    reply = conv.send(STORY)
    assert reply.stop_reason == "model_context_window_exceeded" and reply.truncated
    assert conv.messages[-1].text == reply
    assert not conv.continue_().truncated


# -- refusal ------------------------------------------------------------------------------------------


def test_a_refusal_is_not_kept_in_the_history(fresh):
    conv = conv_on(fresh)
    conv.send("Remember that the keeper is called Ana.")
    before = conv.messages
    fresh.faults.push("refusal")
    ask = "Tell me something I should not know"
    reply = conv.send(ask)
    assert reply.refused and reply.stop_reason == "refusal" and reply  # the text is returned
    assert reply.message.stop_details.type == "refusal"
    assert conv.messages == before  # the refused exchange was taken out
    conv.send("And now?")
    assert ask not in str(messages_sent(fresh)) and str(reply) not in str(messages_sent(fresh))


def test_a_refusal_async(fresh):
    conv = conv_on(fresh, aio=True)

    async def main():
        await conv.asend("Remember that the keeper is called Ana.")
        before = conv.messages
        fresh.faults.push("refusal")
        reply = await conv.asend("Tell me something I should not know")
        return before, reply

    before, reply = asyncio.run(main())
    assert reply.refused and conv.messages == before


def test_keep_refusals_keeps_the_exchange(fresh):
    conv = conv_on(fresh, keep_refusals=True)
    fresh.faults.push("refusal")
    reply = conv.send("Tell me something")
    assert reply.refused and conv.messages[-1].text == reply and len(conv) == 2


# -- pause_turn ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("aio", [False, True])
def test_a_paused_turn_is_continued_and_stored_as_one_message(fresh, aio):
    conv = conv_on(fresh, aio=aio)
    ask = "Find recent news about lighthouses"

    async def both():
        first = await conv.asend(ask)
        await conv.asend("Thanks")
        return first

    fresh.faults.push("pause_turn")
    if aio:
        reply = asyncio.run(both())
    else:
        reply = conv.send(ask)
        conv.send("Thanks")  # the stored history is accepted
    assert [s.stop_reason for s in reply.steps] == ["pause_turn", "end_turn"]
    assert reply.stop_reason == "end_turn" and reply and len(conv.receipts) == 3
    sent = messages_sent(fresh, -2)
    assert sent[-1]["role"] == "assistant" and sent[-1]["content"][0]["type"] == "server_tool_use"
    assert [m.role for m in conv.messages] == ["user", "assistant", "user", "assistant"]
    assert [b.type for b in conv.messages[1].blocks] == ["server_tool_use", "web_search_tool_result", "text"]
    assert conv.messages[1].text == reply
    check_history(conv.messages)


def test_pauses_count_toward_max_steps(fresh):
    conv = conv_on(fresh)
    fresh.faults.push("pause_turn", "pause_turn")
    with pytest.raises(convo.MaxStepsError) as info:
        conv.send("Find news", max_steps=2)
    assert [s.stop_reason for s in info.value.reply.steps] == ["pause_turn", "pause_turn"]
    check_history(conv.messages)


# -- failures take the turn back -----------------------------------------------------------------


def test_a_failed_call_takes_the_turn_back(fresh):
    conv = conv_on(fresh)
    conv.send("Hello there")
    before = conv.messages
    fresh.faults.push("400")
    with pytest.raises(convo.BadRequestError):
        conv.send("This one fails")
    assert conv.messages == before


# -- structured output ----------------------------------------------------------------------------------


class City(BaseModel):
    """A city and its country."""

    name: str
    country: str
    population: int


def test_output_with_a_pydantic_model_uses_a_forced_tool_where_there_are_no_structured_outputs(fresh):
    conv = conv_on(fresh, model="claude-sonnet-5-5")  # the catalogue gives it no structured outputs
    assert convo.models.lookup("claude-sonnet-5-5").structured_outputs is False
    reply = conv.send("Describe Paris", output=City)
    assert isinstance(reply.parsed, City) and reply.parsed.population >= 1
    body = [r for r in fresh.requests if r.path == "/v1/messages"][-1].body
    assert body["tool_choice"] == {"type": "tool", "name": "structured_output"}
    assert body["tools"][0]["input_schema"]["required"] == ["name", "country", "population"]
    assert City.model_validate_json(reply) == reply.parsed  # the text is the JSON
    assert conv.messages[-1].text == reply and not conv.messages[-1].tool_use_ids()  # a valid history
    conv.send("Thanks")


def test_output_with_a_json_schema(fresh):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["answer", "n"]}  # fmt: skip
    reply = asyncio.run(conv_on(fresh, aio=True).asend("Answer briefly", output=schema))
    assert set(reply.parsed) == {"answer", "n"} and isinstance(reply.parsed["n"], int)


class Strict(BaseModel):
    """Only a city called Atlantis will do."""

    name: str

    @field_validator("name")
    @classmethod
    def _atlantis(cls, value: str) -> str:
        if value != "Atlantis":
            raise ValueError("the name must be Atlantis")
        return value


def test_a_reply_that_does_not_validate_raises_with_the_raw_text(fresh):
    conv = conv_on(fresh)
    with pytest.raises(OutputValidationError, match="Atlantis") as info:
        conv.send("Name a city: Paris", output=Strict)
    assert '"name"' in info.value.raw and info.value.reply.steps
    assert len(conv) == 0  # the turn was taken back


def test_output_config_on_models_with_structured_outputs(fresh):
    client = quick_client(fresh)
    client.models(refresh=True)  # the Models API reports the structured_outputs capability
    conv = Conversation(model=MODEL, budget=20_000, client=client)
    assert convo.models.lookup(MODEL).structured_outputs is True
    reply = conv.send("Describe Paris", output=City)
    assert isinstance(reply.parsed, City) and City.model_validate_json(reply) == reply.parsed
    body = [r for r in fresh.requests if r.path == "/v1/messages"][-1].body
    assert body["output_config"]["format"] == {"type": "json_schema", "schema": City.model_json_schema()}
    assert "tool_choice" not in body
