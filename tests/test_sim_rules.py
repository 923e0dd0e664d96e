"""The simulator's rulebook (convo/sim/rules.py) through the official SDK: each rule the API
enforces, with the API's message, on models picked from the catalogue by their fields."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
from pathlib import Path

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convo.sim
from convo.sim import Simulator, rules
from convo.sim.catalogue import catalogue
from convo.sim.errors import ErrorReply
from convo.sim.request import parse_message_request

from .helpers import png_bytes

DATA = json.loads((Path(convo.sim.__file__).parent.parent / "data" / "models.json").read_text())["models"]
SERVED = {m: e for m, e in DATA.items() if e["status"] != "retired"}
HI = [{"role": "user", "content": "Hello, how are you today?"}]


def where(**want):
    """A served model id whose catalogue fields match ``want`` (``thinking_enabled=...`` reads
    ``thinking.enabled``; a callable value tests the field). Read from the data file, not
    through the simulator's catalogue, so a slip in its reader cannot pick the model too."""
    for mid, e in SERVED.items():
        fields = {**e, **{f"thinking_{k}": v for k, v in e["thinking"].items()}}
        if all(v(fields.get(k)) if callable(v) else fields.get(k) == v for k, v in want.items()):
            return mid
    pytest.skip(f"no model in the catalogue with {want}")


def test_where_agrees_with_the_simulators_catalogue():
    for want in ({"prefill": True}, {"thinking_always_on": False}, {"sampling": "exclusive"},
                 {"thinking_adaptive": True, "thinking_always_on": False}):  # fmt: skip
        picked = catalogue().where(**want)
        assert picked is not None and all(getattr(picked, k) == v for k, v in want.items())
        mine = catalogue().find(where(**want))
        assert mine is not None and all(getattr(mine, k) == v for k, v in want.items())
    assert catalogue().where(sampling=lambda s: s == "no such mode") is None


@pytest.fixture(scope="module")
def client():
    with Simulator(seed=0) as s, anthropic.Anthropic(base_url=s.base_url, api_key="t", max_retries=0) as c:
        yield c


SAMPLING = ("temperature", "top_p", "top_k")


def _body(kw):
    """The SDK's typed create() takes no sampling arguments any more: send them as extra body."""
    kw.setdefault("max_tokens", 100)
    kw.setdefault("messages", HI)
    kw.setdefault("timeout", 30)  # large max_tokens without streaming: the SDK wants an explicit timeout
    extra = {k: kw.pop(k) for k in SAMPLING if k in kw}
    if extra:
        kw["extra_body"] = {**kw.get("extra_body", {}), **extra}
    return kw


def refused(client, match, **kw):
    kw = _body(kw)
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(**kw)
    assert info.value.type == "invalid_request_error"
    assert match in info.value.api_message, info.value.api_message
    return info.value


def ok(client, **kw):
    return client.messages.create(**_body(kw))


# -- models ------------------------------------------------------------------------------------


def test_every_id_a_catalogue_model_answers_to_is_served(client):
    for mid, e in SERVED.items():
        for name in [mid, *e["aliases"], *e["snapshots"]]:
            assert ok(client, model=name, max_tokens=5).model == name


@pytest.mark.parametrize("name", ["claude-imaginary-9", "gpt-4", "claude-sonnet-4-6-extra"])
def test_unknown_models_are_404_not_found(client, name):
    with pytest.raises(anthropic.NotFoundError) as info:
        ok(client, model=name)
    assert info.value.type == "not_found_error" and info.value.api_message == f"model: {name}"


def test_retired_models_are_404(monkeypatch):
    import convo.sim.request as request_module
    from convo.sim.catalogue import Catalogue

    model = catalogue().models[0]
    gone = dataclasses.replace(model, status="retired")
    monkeypatch.setattr(request_module, "catalogue", lambda: Catalogue([gone]))
    with pytest.raises(ErrorReply) as info:
        _request(model.id)
    assert (info.value.status, info.value.type, info.value.message) == (404, "not_found_error", f"model: {model.id}")


def test_max_tokens_above_the_models_maximum(client):
    mid = next(iter(SERVED))
    top = SERVED[mid]["max_tokens"]
    assert ok(client, model=mid, max_tokens=top, messages=[{"role": "user", "content": 'say "hi"'}]).content
    refused(client, f"max_tokens: {top + 1} > {top}, which is the maximum allowed number of output tokens for {mid}",
            model=mid, max_tokens=top + 1)  # fmt: skip


def test_prompt_longer_than_the_context_window(client):
    mid = min(SERVED, key=lambda m: SERVED[m]["max_input_tokens"])
    words = " ".join(["lorem"] * (SERVED[mid]["max_input_tokens"] + 10))
    refused(client, "prompt is too long", model=mid, messages=[{"role": "user", "content": words}])


def test_max_tokens_zero_warms_the_cache_and_returns_nothing(client):
    mid = next(iter(SERVED))
    msg = ok(client, model=mid, max_tokens=0)
    assert msg.content == [] and msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 0
    assert msg.usage.input_tokens > 0
    with (
        pytest.raises(anthropic.BadRequestError, match="cannot be streamed"),
        client.messages.stream(model=mid, max_tokens=0, messages=HI) as stream,
    ):
        stream.until_done()


# -- prefill --------------------------------------------------------------------------------------


def test_prefill_is_refused_where_the_catalogue_says_so(client):
    no = where(prefill=False)
    refused(
        client,
        "This model does not support assistant message prefill. The conversation must end with a user message.",
        model=no, messages=[*HI, {"role": "assistant", "content": "Well,"}],
    )  # fmt: skip
    yes = where(prefill=True)
    assert ok(client, model=yes, messages=[*HI, {"role": "assistant", "content": "Well,"}]).stop_reason == "end_turn"


def test_trailing_whitespace_in_a_prefill(client):
    yes = where(prefill=True)
    refused(client, "final assistant content cannot end with trailing whitespace",
            model=yes, messages=[*HI, {"role": "assistant", "content": "Well, "}])  # fmt: skip


def test_prefill_with_thinking_on(client):
    mid = where(prefill=True, thinking_enabled=True)
    refused(client, "must start with a thinking block", model=mid, max_tokens=3000,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[*HI, {"role": "assistant", "content": "Well,"}])  # fmt: skip


# -- thinking ---------------------------------------------------------------------------------------


def test_thinking_types_per_model(client):
    no_budget = where(thinking_enabled=False)
    refused(client, "thinking.type: 'enabled' is not supported", model=no_budget, max_tokens=3000,
            thinking={"type": "enabled", "budget_tokens": 1024})  # fmt: skip
    no_adaptive = where(thinking_adaptive=False)
    refused(client, "'adaptive' is not supported", model=no_adaptive, thinking={"type": "adaptive"})
    adaptive = where(thinking_adaptive=True, thinking_always_on=False)
    msg = ok(client, model=adaptive, thinking={"type": "adaptive"})
    assert msg.content[0].type == "thinking"
    assert ok(client, model=adaptive, thinking={"type": "disabled"}).content[0].type == "text"


def _request(model, **body):
    return parse_message_request({"model": model, "max_tokens": 100, "messages": HI, **body})


def test_always_on_thinking_refuses_disabled_and_thinks_unasked():
    req = _request(next(iter(SERVED)), thinking={"type": "disabled"})
    req.model = dataclasses.replace(req.model, thinking_always_on=True, thinking_adaptive=True)
    with pytest.raises(ErrorReply, match="'disabled' is not supported"):
        rules.check(req)
    unasked = _request(next(iter(SERVED)))
    unasked.model = req.model
    rules.check(unasked)
    assert unasked.thinking == {"type": "adaptive"}


def test_always_on_models_through_the_sdk(client):
    mid = where(thinking_always_on=True)
    refused(client, "'disabled' is not supported", model=mid, thinking={"type": "disabled"})
    assert ok(client, model=mid).content[0].type == "thinking"


# -- sampling ----------------------------------------------------------------------------------------


def test_sampling_with_thinking(client):
    mid = where(thinking_adaptive=True, sampling=lambda s: s != "default_only")
    refused(client, "`temperature` may only be set to 1 when thinking is enabled",
            model=mid, thinking={"type": "adaptive"}, temperature=0.5)  # fmt: skip
    refused(client, "`top_k` must be unset when thinking is enabled", model=mid, thinking={"type": "adaptive"}, top_k=5)


def test_exclusive_sampling(client):
    mid = where(sampling="exclusive")
    refused(client, "`temperature` and `top_p` cannot both be specified for this model",
            model=mid, temperature=0.5, top_p=0.9)  # fmt: skip
    assert ok(client, model=mid, temperature=0.5).content and ok(client, model=mid, top_p=0.9).content


def test_default_only_sampling(client):
    mid = where(sampling="default_only")
    refused(client, "`temperature` is deprecated for this model.", model=mid, temperature=0.2)
    refused(client, "`top_p` is deprecated for this model.", model=mid, top_p=0.5)
    refused(client, "`top_k` is deprecated for this model.", model=mid, top_k=5)
    assert ok(client, model=mid, temperature=1).content  # the default is accepted


def test_default_only_sampling_is_checked_before_the_thinking_rule(client):
    """An always-on thinking model answers a non-default temperature with the deprecation, not
    the thinking rule (claude-fable-5 in github.com/The-PR-Agent/pr-agent/issues/2456)."""
    mid = where(sampling="default_only", thinking_always_on=True)
    refused(client, "`temperature` is deprecated for this model.", model=mid, temperature=0.5)
    refused(client, "`temperature` is deprecated for this model.", model=mid, temperature=0.5,
            thinking={"type": "adaptive"})  # fmt: skip
    refused(client, "`top_k` is deprecated for this model.", model=mid, top_k=5)
    assert ok(client, model=mid, temperature=1).content[0].type == "thinking"


def test_effort(client):
    no = where(effort=False)
    refused(client, "effort is not supported", model=no, extra_body={"output_config": {"effort": "low"}})
    yes = where(effort=True)
    assert ok(client, model=yes, extra_body={"output_config": {"effort": "low"}}).content


# -- images and cache breakpoints ----------------------------------------------------------------------


def _image(data: bytes, media: str = "image/png"):
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": base64.b64encode(data).decode()}}


def test_images_over_5_mb_are_refused(client):
    big = png_bytes(8, 8) + b"\0" * (5 * 1024 * 1024)
    e = refused(client, "image exceeds 5 MB maximum", model=next(iter(SERVED)),
                messages=[{"role": "user", "content": [_image(big), {"type": "text", "text": "What is it?"}]}])  # fmt: skip
    assert "messages.0.content.0" in e.api_message


def test_image_bytes_must_match_the_media_type(client):
    content = [_image(png_bytes(4, 4), "image/jpeg"), {"type": "text", "text": "What is it?"}]
    refused(client, "specified using the image/jpeg media type, but the image appears to be a image/png image",
            model=next(iter(SERVED)), messages=[{"role": "user", "content": content}])  # fmt: skip
    good = [_image(png_bytes(40, 30)), {"type": "text", "text": "What is it?"}]
    assert ok(client, model=next(iter(SERVED)), messages=[{"role": "user", "content": good}]).content


def test_cache_control_on_empty_text_and_too_many_breakpoints(client):
    mid = next(iter(SERVED))
    cc = {"type": "ephemeral"}
    refused(client, "cache_control cannot be set for empty text blocks", model=mid,
            messages=[{"role": "user", "content": [{"type": "text", "text": "", "cache_control": cc},
                                                   {"type": "text", "text": "hi"}]}])  # fmt: skip
    five = [{"type": "text", "text": f"part {i}", "cache_control": cc} for i in range(5)]
    refused(client, "A maximum of 4 blocks with cache_control may be provided. Found 5.", model=mid,
            messages=[{"role": "user", "content": five}])  # fmt: skip


# -- what the API accepts ----------------------------------------------------------------------------


def test_whitespace_blocks_beside_text_and_consecutive_turns_are_accepted(client):
    mid = where(thinking_always_on=False)
    content = [{"type": "text", "text": "  "}, {"type": "text", "text": 'say "merged"'}]
    assert ok(client, model=mid, messages=[{"role": "user", "content": content}]).content[0].text == "merged"
    two = [{"role": "user", "content": "First part."}, {"role": "user", "content": 'Then say "both"'}]
    assert ok(client, model=mid, messages=two).content[0].text == "both"


def test_server_tool_and_unknown_blocks_are_accepted(client):
    mid = where(thinking_always_on=False)
    history = [
        {"role": "user", "content": "Search the web for tide tables"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "tides"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": [
                {"type": "web_search_result", "url": "https://example.com", "title": "Tides",
                 "encrypted_content": "abc", "page_age": None}]},
            {"type": "text", "text": "Here are the tides."},
            {"type": "container_upload", "file_id": "file_02"},  # a response block, sent back
        ]},
        {"role": "user", "content": [
            {"type": "search_result", "source": "https://example.com", "title": "T",
             "content": [{"type": "text", "text": "High tide at noon."}]},
            {"type": "container_upload", "file_id": "file_01"},
            {"type": "future_block_2030", "anything": [1, 2]},
            {"type": "text", "text": 'say "fine"'},
        ]},
    ]  # fmt: skip
    assert ok(client, model=mid, messages=history).content[0].text == "fine"
    refused(client, "string 'type'", model=mid, messages=[{"role": "user", "content": [{"text": "no type"}]}])
    refused(client, "`search_result` blocks can only be in `user` messages", model=mid, messages=[
        *HI, {"role": "assistant", "content": [history[2]["content"][0]]}, {"role": "user", "content": "ok"}])  # fmt: skip


def test_batches_allow_the_larger_batch_max_tokens():
    from convo.sim import ManualClock

    mid = where(max_tokens_batch=bool, thinking_always_on=False)
    top, batch_top = SERVED[mid]["max_tokens"], SERVED[mid]["max_tokens_batch"]
    clock = ManualClock()
    with Simulator(clock=clock, batch_seconds=1) as s, anthropic.Anthropic(base_url=s.base_url, api_key="t") as c:
        params = [
            {"model": mid, "max_tokens": top + 1, "messages": [{"role": "user", "content": 'say "big"'}]},
            {"model": mid, "max_tokens": batch_top + 1, "messages": HI},
        ]
        batch = c.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": p} for i, p in enumerate(params)])
        clock.advance(2)
        results = {r.custom_id: r.result for r in c.messages.batches.results(batch.id)}
    assert results["r0"].type == "succeeded" and results["r0"].message.content[0].text == "big"
    assert results["r1"].type == "errored" and f"{batch_top + 1} > {batch_top}" in results["r1"].error.error.message


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["user", "assistant"]), st.text(min_size=1, max_size=20)), min_size=1,
                max_size=8))  # fmt: skip
def test_consecutive_turns_of_one_role_merge_and_keep_every_block(turns):
    from convo.sim.request import parse_turns

    raw = [{"role": "user", "content": "start"}] + [{"role": r, "content": t} for r, t in turns]
    if not raw[-1]["content"].strip() or any(not t.strip() for _, t in turns[:-1]):
        return  # whitespace-only messages are refused; covered elsewhere
    parsed = parse_turns(raw)
    assert all(a.role != b.role for a, b in itertools.pairwise(parsed))
    assert [b["text"] for t in parsed for b in t.blocks] == [m["content"] for m in raw]
