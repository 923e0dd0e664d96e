"""Response shapes the SDK and other clients rely on: usage in message_start and message_delta,
rate-limit headers on every response, a text block for any max_tokens, and the Models API."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import pytest

import convo.sim

DATA = json.loads((Path(convo.sim.__file__).parent.parent / "data" / "models.json").read_text())["models"]
SERVED = [m for m, e in DATA.items() if e["status"] != "retired"]
#: Replies that open with text (thinking not always on).
MODEL = next(m for m in SERVED if not DATA[m]["thinking"]["always_on"])
HI = [{"role": "user", "content": "Tell me about the history of the printing press in Europe."}]
FAMILIES = ("requests", "tokens", "input-tokens", "output-tokens")



@pytest.fixture(scope="module")
def client(sim):
    with anthropic.Anthropic(base_url=sim.base_url, api_key="t", max_retries=0) as c:
        yield c


def sse_events(client, **kw):
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=200, messages=HI, stream=True, **kw)
    text = raw.http_response.read().decode()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_message_start_usage_has_the_service_tier(client):
    start = sse_events(client)[0]
    assert start["type"] == "message_start"
    assert start["message"]["usage"]["service_tier"] == "standard"


def test_message_delta_usage_repeats_input_and_cache_fields(client):
    events = sse_events(client)
    delta = next(e for e in events if e["type"] == "message_delta")
    plain = client.messages.create(model=MODEL, max_tokens=200, messages=HI)
    assert delta["usage"] == {
        "input_tokens": plain.usage.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": plain.usage.output_tokens,
    }
    assert delta["usage"]["input_tokens"] > 0


def test_a_client_reading_only_the_final_delta_sees_the_input_tokens(client):
    with client.messages.stream(model=MODEL, max_tokens=200, messages=HI) as stream:
        final = stream.get_final_message()
    assert final.usage.input_tokens == client.messages.count_tokens(model=MODEL, messages=HI).input_tokens


def _ratelimit(headers):
    return {k for k in headers if k.startswith("anthropic-ratelimit-")}


def test_every_response_carries_every_ratelimit_family(client):
    expected = {f"anthropic-ratelimit-{f}-{k}" for f in FAMILIES for k in ("limit", "remaining", "reset")}
    responses = [
        client.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=HI),
        client.messages.with_raw_response.count_tokens(model=MODEL, messages=HI),
        client.models.with_raw_response.list(),
    ]
    for raw in responses:
        assert _ratelimit(raw.headers) == expected
    with client.messages.stream(model=MODEL, max_tokens=10, messages=HI) as stream:
        assert _ratelimit(stream.response.headers) == expected
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=[])
    assert _ratelimit(info.value.response.headers) == expected


@pytest.mark.parametrize("max_tokens", [1, 2, 3])
def test_tiny_max_tokens_still_give_a_text_block(client, max_tokens):
    msg = client.messages.create(model=MODEL, max_tokens=max_tokens, messages=HI)
    assert msg.content and msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason == "max_tokens" and 1 <= msg.usage.output_tokens <= max_tokens
    with client.messages.stream(model=MODEL, max_tokens=max_tokens, messages=HI) as stream:
        assert stream.get_final_message().content[0].text == msg.content[0].text


# -- the Models API -------------------------------------------------------------------------------


def test_models_list_pages_through_the_catalogue(client):
    first = client.models.list(limit=1000)
    ids = [m.id for m in first.data]
    assert sorted(ids) == sorted(SERVED) and first.has_more is False
    assert first.first_id == ids[0] and first.last_id == ids[-1]
    walked = [m.id for m in client.models.list(limit=1)]  # the SDK follows after_id
    assert walked == ids
    if len(ids) > 1:
        page = client.models.list(limit=1, after_id=ids[0])
        assert [m.id for m in page.data] == [ids[1]]
        back = client.models.list(limit=1, before_id=ids[1])
        assert [m.id for m in back.data] == [ids[0]] and back.has_more is False


@pytest.mark.parametrize("limit", [0, 1001])
def test_models_list_limit_is_1_to_1000(client, limit):
    with pytest.raises(anthropic.BadRequestError, match="limit"):
        client.models.list(limit=limit)


def test_model_info_has_the_api_shape(client):
    for mid in SERVED:
        e = DATA[mid]
        info = client.models.retrieve(mid)
        assert (info.id, info.type, info.display_name) == (mid, "model", e["display_name"])
        assert (info.max_input_tokens, info.max_tokens) == (e["max_input_tokens"], e["max_tokens"])
        caps = info.capabilities
        assert caps.thinking.types.enabled.supported == e["thinking"]["enabled"]
        assert caps.thinking.types.adaptive.supported == e["thinking"]["adaptive"]
        assert caps.thinking.types.disabled.supported == (not e["thinking"]["always_on"])
        assert caps.effort.supported == e["effort"] and caps.effort.low.supported == e["effort"]
        for name in ("batch", "citations", "code_execution", "image_input", "pdf_input", "structured_outputs"):
            assert isinstance(getattr(caps, name).supported, bool)
        assert isinstance(caps.context_management.supported, bool)
        for other in [*e["aliases"], *e["snapshots"]]:
            assert client.models.retrieve(other).id == mid


def test_unknown_model_info_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.models.retrieve("claude-imaginary-9")
    assert info.value.type == "not_found_error"
