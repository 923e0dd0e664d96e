"""Server-side context edits: the ServerEdits strategy, and the simulator's edits through the SDK."""

from __future__ import annotations

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo import Conversation, SlidingWindow
from convo._exceptions import ContextOverflowError, InvalidConfigError
from convo.context_edits import (
    BETA,
    CLEAR_THINKING,
    CLEAR_TOOL_USES,
    COMPACT,
    COMPACT_BETA,
    PLACEHOLDER,
    ServerEdits,
    applied_edits,
    apply_edits,
    check_config,
    supports_context_edits,
)
from convo.messages import check_history
from tests.helpers import MODEL, quick_client


def tool_history(n: int, size: int = 400, names: tuple[str, ...] = ("fetch",)) -> list[dict]:
    """A user question, then n tool calls each answered by a long tool_result."""
    ms: list[dict] = []
    for i in range(n):
        if i == 0:
            ms.append({"role": "user", "content": "question 0"})
        else:
            ms.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": f"toolu_{i - 1}", "content": "data " * size}]})  # fmt: skip
        name = names[i % len(names)]
        ms.append({"role": "assistant", "content": [
            {"type": "text", "text": "let me look"},
            {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {"q": i}}]})  # fmt: skip
    ms.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": f"toolu_{n - 1}", "content": "data " * size}]})  # fmt: skip
    return ms


def clear_tools(**kw) -> dict:
    edit = {"type": CLEAR_TOOL_USES, **kw}
    return {"edits": [edit]}


@pytest.fixture
def sdk(fresh):
    return anthropic.Anthropic(api_key="test", base_url=fresh.base_url, max_retries=0)


def beta_create(sdk, messages, context_management, **kw):
    kw.setdefault("max_tokens", 64)
    return sdk.beta.messages.create(
        model=MODEL, messages=messages, betas=[BETA], context_management=context_management, **kw
    )


# -- the strategy, offline --------------------------------------------------------------------


def test_params_have_the_api_shape_and_thinking_comes_first():
    edits = ServerEdits(clear_thinking=True, trigger_tokens=50_000, keep_tool_uses=2, clear_at_least=5_000,
                        exclude_tools=["search"], keep_thinking_turns=2)  # fmt: skip
    params = edits.params(MODEL)
    assert params["extra_headers"] == {"anthropic-beta": "context-management-2025-06-27"}
    assert params["context_management"] == {"edits": [
        {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 2}},
        {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 50_000},
         "keep": {"type": "tool_uses", "value": 2}, "clear_at_least": {"type": "input_tokens", "value": 5_000},
         "exclude_tools": ["search"]},
    ]}  # fmt: skip
    assert ServerEdits(clear_thinking=True, keep_thinking_turns=None).edits()[0]["keep"] == "all"


def test_unsupported_models_and_accounts_get_no_edits():
    assert supports_context_edits("claude-sonnet-4-6") and supports_context_edits("claude-haiku-4-5-20251001")
    assert supports_context_edits("claude-opus-4-1") and not supports_context_edits("claude-3-5-haiku-20241022")
    assert ServerEdits().params("claude-3-5-haiku-20241022") == {}
    assert ServerEdits(supported=False).params(MODEL) == {}
    assert ServerEdits(supported=True).params("claude-3-5-haiku-20241022")["context_management"]


@pytest.mark.parametrize(
    "kw",
    [{"clear_tool_uses": False}, {"trigger_tokens": 0}, {"keep_tool_uses": -1}, {"clear_at_least": 0},
     {"exclude_tools": "search"}, {"keep_thinking_turns": 0}, {"fallback": 3}],
)  # fmt: skip
def test_bad_settings_are_refused(kw):
    with pytest.raises(InvalidConfigError):
        ServerEdits(**kw)


def test_selection_comes_from_the_fallback_and_config_round_trips():
    conv = Conversation(model=MODEL, budget=3000, strategy=ServerEdits(fallback=SlidingWindow()), max_tokens=100)
    for i in range(8):  # a tool loop is one turn, so the window needs user turns to cut between
        conv.add_user(f"question {i} " + "words " * 500)
        conv.add_assistant(f"answer {i}")
    assert conv.request()["messages"][0]["role"] == "user"
    assert conv.last_selection.start > 0  # over budget: the fallback window cut
    edits = ServerEdits(clear_thinking=True, exclude_tools=("a",), fallback=SlidingWindow(low_water=0.6))
    again = ServerEdits.from_config(edits.config())
    assert again == edits and again.config() == edits.config()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), keep=st.integers(0, 6), excluded=st.booleans())
def test_clearing_keeps_the_newest_tool_uses(n, keep, excluded):
    messages = check_history(tool_history(n, size=5, names=("fetch", "search")))
    edit = {"type": CLEAR_TOOL_USES, "trigger": {"type": "tool_uses", "value": 1},
            "keep": {"type": "tool_uses", "value": keep}, **({"exclude_tools": ["search"]} if excluded else {})}  # fmt: skip
    edited, applied = apply_edits(messages, check_config({"edits": [edit]}, thinking_enabled=False), len)
    clearable = [i for i in range(n) if not (excluded and i % 2 == 1)]
    expected = clearable[: max(0, len(clearable) - keep)] if n > 1 else []
    cleared = {
        b.tool_use_id for m in edited if not isinstance(m.content, str)
        for b in m.content if b.type == "tool_result" and b.content == PLACEHOLDER
    }  # fmt: skip
    assert cleared == {f"toolu_{i}" for i in expected}
    assert [a["cleared_tool_uses"] for a in applied] == ([len(expected)] if expected else [])
    assert len(edited) == len(messages)  # the edits never drop or split a turn


# -- the simulator, through the official SDK --------------------------------------------------------


def test_tool_uses_are_cleared_past_the_trigger(sdk):
    plain = sdk.messages.create(model=MODEL, max_tokens=64, messages=tool_history(8))
    reply = beta_create(sdk, tool_history(8), clear_tools(trigger={"type": "input_tokens", "value": 1000}))
    [edit] = reply.context_management.applied_edits
    assert edit.type == CLEAR_TOOL_USES and edit.cleared_tool_uses == 5  # 8 uses, the default keeps 3
    assert edit.cleared_input_tokens == plain.usage.input_tokens - reply.usage.input_tokens > 0


def test_nothing_is_cleared_below_the_trigger_or_the_floor(sdk):
    low = beta_create(sdk, tool_history(8), clear_tools())  # default trigger: 100k input tokens
    assert low.context_management.applied_edits == []
    floor = clear_tools(trigger={"type": "input_tokens", "value": 1000},
                        clear_at_least={"type": "input_tokens", "value": 1_000_000})  # fmt: skip
    assert beta_create(sdk, tool_history(8), floor).context_management.applied_edits == []


def test_excluded_tools_and_tool_inputs(sdk, fresh):
    cm = clear_tools(trigger={"type": "tool_uses", "value": 2}, keep={"type": "tool_uses", "value": 1},
                     exclude_tools=["search"], clear_tool_inputs=True)  # fmt: skip
    reply = beta_create(sdk, tool_history(6, names=("fetch", "search")), cm)
    assert reply.context_management.applied_edits[0].cleared_tool_uses == 2  # fetch 0, 2 (4 is kept)


def test_streams_report_the_edits_on_the_final_delta(sdk):
    cm = clear_tools(trigger={"type": "input_tokens", "value": 1000})
    with sdk.beta.messages.stream(model=MODEL, max_tokens=64, messages=tool_history(8), betas=[BETA],
                                  context_management=cm) as s:  # fmt: skip
        final = s.get_final_message()
    assert final.context_management.applied_edits[0].cleared_tool_uses == 5


def test_thinking_is_cleared_from_older_turns(sdk):
    history = []
    for i in range(4):
        history.append({"role": "user", "content": f"question {i} " * 20})
        history.append({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "pondering " * 50, "signature": f"sig{i}"},
            {"type": "text", "text": f"answer {i}"}]})  # fmt: skip
    history.append({"role": "user", "content": "and now?"})
    reply = beta_create(sdk, history, {"edits": [{"type": CLEAR_THINKING, "keep": {"type": "thinking_turns", "value": 1}}]},
                        thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)  # fmt: skip
    [edit] = reply.context_management.applied_edits
    assert edit.type == CLEAR_THINKING and edit.cleared_thinking_turns == 3 and edit.cleared_input_tokens > 0
    kept = beta_create(sdk, history, {"edits": [{"type": CLEAR_THINKING, "keep": "all"}]},
                       thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)  # fmt: skip
    assert kept.context_management.applied_edits == []


@pytest.mark.parametrize(
    ("cm", "betas", "says"),
    [
        ({"edits": [{"type": COMPACT}]}, [BETA], f"'anthropic-beta: {COMPACT_BETA}'"),
        ({"edits": [{"type": COMPACT, "pause": True}]}, [BETA, COMPACT_BETA], "edits.0.pause: Extra inputs"),
        ({"edits": [{"type": "clear_everything"}]}, [BETA], "unknown edit type"),
        (clear_tools(), [], "requires the beta header"),
        (clear_tools(keep={"type": "tokens", "value": 3}), [BETA], "edits.0.keep"),
        ({"edits": [{"type": CLEAR_THINKING}]}, [BETA], "requires thinking to be enabled"),
    ],
)
def test_unsupported_or_malformed_edits_are_a_clear_400(sdk, cm, betas, says):
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.beta.messages.create(model=MODEL, max_tokens=64, messages=tool_history(2), context_management=cm,
                                 **({"betas": betas} if betas else {}))  # fmt: skip
    assert info.value.status_code == 400 and says in info.value.message


def test_a_conversation_sends_the_edits_and_reads_back_what_was_cleared(fresh):
    edits = ServerEdits(trigger_tokens=1000)
    conv = Conversation(model=MODEL, budget=100_000, strategy=edits)
    conv.extend(tool_history(8))
    with quick_client(fresh) as client:
        reply = client.create(**conv.request(**edits.params(conv.model)))
    [applied] = edits.observe(reply)
    assert applied.cleared_tool_uses == 5 and edits.last_applied == [applied]
    assert "cleared 5 tool uses" in str(applied)
    assert len(conv.messages) == 17  # the client keeps the whole history
    body = fresh.requests[-1].body
    assert body["context_management"] == {"edits": edits.edits()}


def test_without_support_the_fallback_trims_and_nothing_is_sent(fresh):
    edits = ServerEdits(supported=False, trigger_tokens=1000)
    conv = Conversation(model=MODEL, budget=3000, strategy=edits, max_tokens=100)
    for i in range(8):
        conv.add_user(f"question {i} " + "words " * 500)
        conv.add_assistant(f"answer {i}")
    conv.add_user("and now?")
    with quick_client(fresh) as client:
        reply = client.create(**conv.request(**edits.params(conv.model)))
    assert edits.observe(reply) == [] and applied_edits(reply) == []
    assert "context_management" not in fresh.requests[-1].body
    assert conv.last_selection.start > 0


def test_send_applies_the_edits_by_itself(fresh):
    edits = ServerEdits(trigger_tokens=1000)
    with quick_client(fresh) as client:
        conv = Conversation(model=MODEL, budget=100_000, strategy=edits, client=client)
        conv.extend(tool_history(8))
        conv.add_assistant("Noted.")
        conv.send("And now?")
    assert fresh.requests[-1].body["context_management"] == {"edits": edits.edits()}
    assert edits.last_applied and edits.last_applied[0].cleared_tool_uses > 0


# -- server-side compaction -------------------------------------------------------------------------


def chat_history(n: int, size: int = 60) -> list[dict]:
    ms: list[dict] = []
    for i in range(n):
        ms.append({"role": "user", "content": f"Tell me about topic {i}. " + f"Topic {i} matters a lot. " * size})
        ms.append({"role": "assistant", "content": f"Topic {i} is covered. " * size})
    ms.append({"role": "user", "content": "And what is next?"})
    return ms


def compact_edit(value: int = 1000, **kw) -> dict:
    return {"edits": [{"type": COMPACT, "trigger": {"type": "input_tokens", "value": value}, **kw}]}


def compact_create(sdk, messages, cm, **kw):
    return sdk.beta.messages.create(model=MODEL, max_tokens=64, messages=messages, betas=[BETA, COMPACT_BETA],
                                    context_management=cm, **kw)  # fmt: skip


def test_compaction_replaces_the_history_past_the_trigger(sdk):
    plain = sdk.messages.create(model=MODEL, max_tokens=64, messages=chat_history(6))
    reply = compact_create(sdk, chat_history(6), compact_edit())
    first, *rest = reply.content
    assert first.type == "compaction" and first.content and rest and rest[0].type == "text"
    assert reply.context_management.applied_edits == []  # compaction is reported by its block, not here
    comp, msg = reply.usage.iterations
    assert (comp.type, msg.type) == ("compaction", "message")
    assert comp.input_tokens == plain.usage.input_tokens > msg.input_tokens == reply.usage.input_tokens
    below = compact_create(sdk, chat_history(6), compact_edit(10_000_000))
    assert [b.type for b in below.content] == ["text"] and below.usage.iterations is None


def test_pause_after_compaction_returns_the_summary_alone(sdk):
    reply = compact_create(sdk, chat_history(6), compact_edit(pause_after_compaction=True))
    assert reply.stop_reason == "compaction" and [b.type for b in reply.content] == ["compaction"]


def test_the_compaction_block_round_trips(sdk):
    history = chat_history(6)
    reply = compact_create(sdk, history, compact_edit())
    history.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]})
    history.append({"role": "user", "content": "Thanks, go on."})
    again = compact_create(sdk, history, compact_edit(10_000_000))
    assert again.usage.input_tokens < reply.usage.iterations[0].input_tokens  # what preceded the block is gone
    history.insert(2, {"role": "assistant", "content": [{"type": "compaction", "content": "old summary"}]})
    history.insert(3, {"role": "user", "content": "more"})
    with pytest.raises(anthropic.BadRequestError, match="more than one compaction block"):
        compact_create(sdk, history, compact_edit())


def test_a_stream_carries_the_compaction_block(sdk):
    with sdk.beta.messages.stream(model=MODEL, max_tokens=64, messages=chat_history(6), betas=[BETA, COMPACT_BETA],
                                  context_management=compact_edit()) as s:  # fmt: skip
        final = s.get_final_message()
    assert final.content[0].type == "compaction" and final.content[0].content
    assert final.usage.iterations[0].type == "compaction"


def test_server_edits_compact_sends_the_edit_and_reads_the_block(fresh):
    edits = ServerEdits(compact=True, compact_trigger_tokens=1000, compact_instructions="keep names")
    params = edits.params(MODEL)
    assert params["context_management"]["edits"][-1] == {
        "type": COMPACT, "trigger": {"type": "input_tokens", "value": 1000},
        "pause_after_compaction": False, "instructions": "keep names"}  # fmt: skip
    assert params["extra_headers"]["anthropic-beta"] == f"{BETA},{COMPACT_BETA}"
    assert ServerEdits.from_config(edits.config()) == edits
    conv = Conversation(model=MODEL, budget=100_000, strategy=edits)
    conv.extend(chat_history(6))
    with quick_client(fresh) as client:
        edits.observe(client.create(**conv.request(**params)))
    assert edits.last_compaction is not None and edits.last_compaction.content
    assert edits.last_compaction.block["type"] == "compaction" and COMPACT in str(edits.last_compaction)


# -- the budget counts what the server will send to the model -------------------------------------


def test_a_tool_loop_over_the_budget_is_sent_when_the_server_will_clear_it(fresh):
    history = tool_history(12, size=400)  # one turn: no window can cut it
    edits = ServerEdits(trigger_tokens=2000, keep_tool_uses=2)
    conv = Conversation(model=MODEL, budget=4000, strategy=edits, max_tokens=100)
    conv.extend(history)
    request = conv.request(**edits.params(conv.model))
    assert len(request["messages"]) == len(history) and "bring" in conv.last_selection.note
    estimate = conv.last_selection.estimate
    assert estimate <= conv.budget < conv.total_tokens and conv.tokens == estimate - 100
    with quick_client(fresh) as client:
        reply = client.create(**request)
    assert reply.usage.input_tokens + 100 <= conv.budget  # the server did clear it
    assert edits.observe(reply)[0].cleared_tool_uses == 10
    for strategy in (ServerEdits(supported=False, trigger_tokens=2000), ServerEdits(trigger_tokens=50_000)):
        conv = Conversation(model=MODEL, budget=4000, strategy=strategy, max_tokens=100)
        conv.extend(history)
        with pytest.raises(ContextOverflowError):  # no edits, or none before the budget: it cannot fit
            conv.request(**strategy.params(conv.model))


def test_send_keeps_the_compaction_block_in_the_history(fresh):
    trigger = 2000
    edits = ServerEdits(compact=True, compact_trigger_tokens=trigger, clear_tool_uses=False)
    with quick_client(fresh) as client:
        conv = Conversation(model=MODEL, budget=100_000, strategy=edits, client=client)
        for i in range(60):  # grow the history until the server's own count passes the trigger
            conv.send(f"Tell me about item {i}: " + "facts and details " * 30)
            sent = fresh.requests[-1].body["messages"]
            size = client.count_tokens(sent)
            compacted = any(b.type == "compaction" for b in conv.messages[-1].blocks)
            assert compacted == (size >= trigger), (i, size)  # compacted exactly when past the trigger
            if compacted:
                break
        sends = i + 1
        assert sends > 2  # it took several turns to get there
        conv.send("And one more thing.")
    kinds = [b.type for m in conv.messages for b in m.blocks]
    assert "compaction" in kinds and len(conv.messages) == 2 * (sends + 1)
    sent = fresh.requests[-1].body["messages"]
    assert any(isinstance(m["content"], list) and m["content"][0]["type"] == "compaction" for m in sent)
    assert fresh.requests[-1].path == "/v1/messages" and fresh.requests[-1].status == 200
