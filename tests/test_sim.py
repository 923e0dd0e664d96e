"""The simulator end to end through the official SDK: messages, streaming, count_tokens,
validation, auth, recording and determinism."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import anthropic
import pytest

import convo.sim
from convo.sim import Simulator, Tokenizer

MODEL = "claude-sonnet-4-6"
_MODELS = json.loads((Path(convo.sim.__file__).parent.parent / "data" / "models.json").read_text())["models"]
#: A served model that accepts assistant prefill (read from the catalogue, not hard-coded).
PREFILL_MODEL = next(m for m, e in _MODELS.items() if e["prefill"] and e["status"] != "retired")
HELLO = [{"role": "user", "content": "Hello there, can you help me plan a trip to Kyoto in spring?"}]
ZH_TEXT = (
    "手机电池用久了容量会慢慢下降，这是锂离子电池的正常老化现象，并不是手机出了故障。"
    "一般来说，充放电循环达到五百次左右，电池的最大容量会降到原来的百分之八十上下。"
    "想让电池寿命更长，最简单的办法是避免长时间满电或者完全耗尽，把电量维持在中间区间。"
    "另外，高温是电池最大的敌人，夏天不要把手机放在汽车仪表台上暴晒。"
    "边充电边玩大型游戏也会让机身明显发热，长期如此会加速电池老化。"
    "如果电池容量已经明显下降，可以到官方售后更换电池，费用通常不高。"
)
EN_TEXT = (
    "The city council met on Tuesday to discuss the new transit plan. "
    "The transit plan would add three bus lines and extend the light rail to the airport. "
    "Council members argued about the cost of the light rail extension. "
    "Supporters said the transit plan would reduce traffic and emissions across the city. "
    "Opponents said the cost was too high and the ridership estimates were optimistic. "
    "The mayor said she would support the transit plan if the federal government paid half the cost. "
    "A final vote on the transit plan is expected next month. "
    "Meanwhile, a bakery on Main Street won a regional award for its sourdough."
)



@pytest.fixture(scope="module")
def client(sim):
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        yield c


def create(client, messages=HELLO, **kw):
    kw.setdefault("max_tokens", 200)
    kw.setdefault("model", MODEL)
    return client.messages.create(messages=messages, **kw)


# -- non-streaming -------------------------------------------------------------------------


def test_create_returns_a_message_shaped_like_the_api(client):
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=200, messages=HELLO)
    body = json.loads(raw.http_response.content)
    assert list(body) == ["id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"]
    assert re.fullmatch(r"msg_01[0-9A-Za-z]{22}", body["id"])
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", MODEL)
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert body["usage"]["cache_creation_input_tokens"] == 0 and body["usage"]["cache_read_input_tokens"] == 0
    assert body["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    assert re.fullmatch(r"req_011\w{22}", raw.http_response.headers["request-id"])
    msg = raw.parse()
    assert msg._request_id == raw.http_response.headers["request-id"]
    assert msg.content[0].type == "text" and "Kyoto" in msg.content[0].text


def test_usage_comes_from_the_simulators_own_tokenizer(client):
    system = "You are terse."
    msg = create(client, system=system)
    label = _MODELS[MODEL]["tokenizer"]
    tok = Tokenizer()
    text_tokens = tok.count_text(HELLO[0]["content"], label) + tok.count_text(system, label)
    assert msg.usage.input_tokens > text_tokens  # the text plus the request's framing
    assert msg.usage.output_tokens == tok.count_text(msg.content[0].text, label)


def test_usage_is_not_convos_estimate():
    import convo

    with Simulator(seed=0) as s, anthropic.Anthropic(base_url=s.base_url, api_key="t", max_retries=0) as c:
        texts = [HELLO[0]["content"], EN_TEXT, ZH_TEXT, "def f(x):\n    return x ** 2  # squares 12345678"]
        for text in texts:
            msgs = [{"role": "user", "content": text}]
            counted = c.messages.count_tokens(model=MODEL, messages=msgs).input_tokens
            assert counted != convo.count_tokens(msgs), text


def test_count_tokens_matches_create_usage(client):
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
    counted = client.messages.count_tokens(model=MODEL, messages=HELLO, system="Be brief.", tools=tools)
    msg = create(client, system="Be brief.", tools=tools)
    assert counted.input_tokens == msg.usage.input_tokens


def test_max_tokens_stops_the_reply(client):
    full = create(client).content[0].text
    msg = create(client, max_tokens=5)
    assert msg.stop_reason == "max_tokens" and msg.stop_sequence is None
    assert 1 <= msg.usage.output_tokens <= 5
    assert full.startswith(msg.content[0].text) and len(msg.content[0].text) < len(full)


def test_stop_sequences_cut_the_reply_and_are_reported(client):
    full = create(client).content[0].text
    msg = create(client, stop_sequences=["nothing-like-this", "Kyoto"])
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "Kyoto"
    assert msg.content[0].text == full[: full.index("Kyoto")]


def test_say_gives_exact_text(client):
    msg = create(client, [{"role": "user", "content": 'Please say "pong"'}])
    assert msg.content[0].text == "pong"


def test_english_summary_is_extractive_and_in_order(client):
    msg = create(client, [{"role": "user", "content": "Summarize this article:\n\n" + EN_TEXT}], max_tokens=300)
    text = msg.content[0].text
    assert text.startswith("Summary: ")
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", text.removeprefix("Summary: "))]
    assert 1 <= len(sentences) < 8
    positions = [EN_TEXT.index(s) for s in sentences]  # each sentence is verbatim from the text
    assert positions == sorted(positions)
    assert "sourdough" not in text  # the off-topic sentence is the least salient


def test_chinese_summary_is_chinese_and_fits_max_tokens(client):
    msg = create(client, [{"role": "user", "content": "请总结下面这段文字：\n" + ZH_TEXT}], max_tokens=80)
    text = msg.content[0].text
    assert text.startswith("摘要：")
    assert msg.usage.output_tokens <= 80
    body = text.removeprefix("摘要：")
    for sentence in re.findall(r"[^。]+。", body):
        assert sentence in ZH_TEXT
    assert len(body) < len(ZH_TEXT)


def test_summary_of_earlier_turns(client):
    history = [
        {"role": "user", "content": EN_TEXT},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "tl;dr?"},
    ]
    text = create(client, history, max_tokens=300).content[0].text
    assert text.startswith("Summary: ") and "transit plan" in text


def test_prefill_is_accepted(client):
    msg = create(client, [*HELLO, {"role": "assistant", "content": "Sure,"}], model=PREFILL_MODEL)
    assert msg.stop_reason == "end_turn"


def test_tool_use_history_is_accepted(client):
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny, 21 C"}]},
    ]
    assert create(client, history).content[0].text


# -- streaming -----------------------------------------------------------------------------


def test_stream_text_matches_the_non_streaming_reply(client):
    expected = create(client).content[0].text
    with client.messages.stream(model=MODEL, max_tokens=200, messages=HELLO) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) > 5 and "".join(deltas) == expected == final.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == client.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens
    assert final.usage.output_tokens == create(client).usage.output_tokens


def test_stream_event_order(client):
    stream = client.messages.create(model=MODEL, max_tokens=200, messages=HELLO, stream=True)
    types = [event.type for event in stream]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}


def test_stream_bytes_follow_the_sse_grammar(client):
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=30, messages=HELLO, stream=True
    ) as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["request-id"].startswith("req_")
        raw = b"".join(response.iter_bytes())
    assert raw.startswith(b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_')
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in raw
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    for event in raw.decode().split("\n\n")[:-1]:
        name_line, data_line = event.split("\n")
        name = name_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == name
    deltas = [json.loads(e.split("data: ", 1)[1]) for e in raw.decode().split("\n\n") if "message_delta" in e]
    assert deltas[-1]["delta"]["stop_reason"] == "max_tokens" and deltas[-1]["usage"]["output_tokens"] <= 30


def test_stream_stop_sequence(client):
    with client.messages.stream(model=MODEL, max_tokens=200, messages=HELLO, stop_sequences=["Kyoto"]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Kyoto" not in text and final.stop_reason == "stop_sequence" and final.stop_sequence == "Kyoto"


def test_chinese_stream_sends_a_few_characters_per_delta(client):
    messages = [{"role": "user", "content": "请总结下面这段文字：\n" + ZH_TEXT}]
    with client.messages.stream(model=MODEL, max_tokens=200, messages=messages) as stream:
        deltas = list(stream.text_stream)
    assert all(1 <= len(d.strip()) <= 3 for d in deltas)
    assert "".join(deltas).startswith("摘要：")


def test_async_client_create_and_stream(sim):
    async def main():
        async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="test", max_retries=0) as aclient:
            msgs = await asyncio.gather(
                *[aclient.messages.create(model=MODEL, max_tokens=100, messages=HELLO) for _ in range(20)]
            )
            async with aclient.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
                text = "".join([t async for t in stream.text_stream])
            return msgs, text

    msgs, text = asyncio.run(main())
    assert len({m.id for m in msgs}) == 20
    assert {m.content[0].text for m in msgs} == {text}


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"messages": []}, "at least one message"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, 'first message must use the "user" role'),
        ({"messages": [{"role": "user", "content": ""}]}, "non-empty content"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "must be non-empty"),
        ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"},
                       {"role": "user", "content": "y"}]}, "non-whitespace"),
        ({"messages": [{"role": "system", "content": "Be nice"}]}, "Input should be 'user' or 'assistant'"),
        ({"messages": [{"role": "user", "content": [{"type": 3}]}]}, "string 'type'"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}]},
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_9",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "go"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                    {"role": "user", "content": "and?"},
                ]
            },
            "tool_result",
        ),
        ({"stop_sequences": [" "]}, "stop_sequences"),
        ({"extra_body": {"bogus": 1}}, "bogus: Extra inputs are not permitted"),
        ({"system": [{"type": "text", "text": ""}]}, "system"),
    ],
)
def test_invalid_requests_get_400_with_a_useful_message(client, kwargs, fragment):
    kw = {"messages": HELLO, "max_tokens": 100, **kwargs}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, **kw)
    err = info.value
    assert err.status_code == 400 and err.type == "invalid_request_error"
    assert fragment in err.api_message
    assert err.body["type"] == "error" and err.body["request_id"] == err.request_id


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": MODEL, "messages": HELLO}, "max_tokens: Field required"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": 10**6}, "maximum allowed"),
        ({"model": MODEL, "messages": HELLO, "max_tokens": "10"}, "valid integer"),
        ({"max_tokens": 10, "messages": HELLO}, "model: Field required"),
        ({"model": MODEL, "max_tokens": 10, "messages": "hi"}, "valid list"),
        ({"model": MODEL, "max_tokens": 10, "messages": HELLO, "temperature": 3}, "temperature"),
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_bodies(client, body, fragment):
    # Bodies the SDK's typed methods would not send, posted as they are.
    with pytest.raises(anthropic.BadRequestError) as info:
        client.post("/v1/messages", body=body, cast_to=object)
    assert fragment in info.value.api_message


def test_unknown_model_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="gpt-4", max_tokens=10, messages=HELLO)
    assert info.value.type == "not_found_error" and "gpt-4" in info.value.api_message


def test_unknown_route_is_404_not_found_error(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.get("/v1/nothing-here", cast_to=object)
    assert info.value.body["error"]["type"] == "not_found_error"
    assert info.value.request_id and info.value.body["request_id"] == info.value.request_id


def test_oversized_body_is_413():
    with Simulator(max_request_bytes=2_000) as small:
        c = anthropic.Anthropic(base_url=small.base_url, api_key="test", max_retries=0)
        with pytest.raises(anthropic.ContentTooLargeError) as info:
            c.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x " * 5_000}])
        assert info.value.status_code == 413 and info.value.type == "request_too_large"
        assert c.messages.create(model=MODEL, max_tokens=10, messages=HELLO).content


# -- auth and headers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked():
    with Simulator(api_key="secret") as s:
        yield s


def test_bearer_key_must_match(locked):
    ok = anthropic.Anthropic(base_url=locked.base_url, api_key="secret", max_retries=0)
    assert create(ok).content
    bad = anthropic.Anthropic(base_url=locked.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        create(bad)
    assert info.value.status_code == 401 and info.value.type == "authentication_error"


def test_x_api_key_header_is_accepted(locked):
    c = anthropic.Anthropic(
        base_url=locked.base_url,
        api_key="ignored",
        max_retries=0,
        default_headers={"x-api-key": "secret", "Authorization": anthropic.Omit()},
    )
    assert create(c).content
    seen = locked.requests[-1].headers
    assert seen["x-api-key"] == "***" and "authorization" not in seen


def test_missing_credentials_is_401(locked, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    c = anthropic.Anthropic(
        base_url=locked.base_url, api_key=None, max_retries=0, default_headers={"Authorization": anthropic.Omit()}
    )
    with pytest.raises(anthropic.AuthenticationError, match="x-api-key header is required"):
        create(c)


def test_anthropic_version_header_is_required(sim):
    c = anthropic.Anthropic(
        base_url=sim.base_url, api_key="test", max_retries=0, default_headers={"anthropic-version": anthropic.Omit()}
    )
    with pytest.raises(anthropic.BadRequestError, match="anthropic-version"):
        create(c)
    c = anthropic.Anthropic(
        base_url=sim.base_url, api_key="test", max_retries=0, default_headers={"anthropic-version": "2023-06-01"}
    )
    assert create(c).content


def test_requests_are_recorded_without_secrets(sim, client):
    create(client, system="Be brief.")
    rec = sim.requests[-1]
    assert (rec.method, rec.path, rec.status) == ("POST", "/v1/messages", 200)
    assert rec.body == {"model": MODEL, "max_tokens": 200, "messages": HELLO, "system": "Be brief."}
    assert rec.headers["authorization"] == "Bearer ***"
    assert "test" not in json.dumps(rec.headers)
    assert rec.header("x-stainless-retry-count") == "0"
    assert rec.header("anthropic-version")


# -- determinism ---------------------------------------------------------------------------

PROMPTS = [
    "Hello there, can you help me plan a trip to Kyoto in spring?",
    "What is the capital of Australia and why was it chosen?",
    "I need a recipe for sourdough bread with a crunchy crust.",
    "Explain how token buckets work for rate limiting.",
    "My laptop battery drains fast; what should I check first?",
    "Tell me a story about a lighthouse keeper and a storm.",
]


def _replies(seed):
    with Simulator(seed=seed) as s:
        c = anthropic.Anthropic(base_url=s.base_url, api_key="test", max_retries=0)
        msgs = [create(c, [{"role": "user", "content": p}]) for p in PROMPTS]
        return [m.id for m in msgs], [m.content[0].text for m in msgs]


def test_same_seed_same_replies_and_ids():
    ids0, texts0 = _replies(0)
    again_ids, again_texts = _replies(0)
    assert (ids0, texts0) == (again_ids, again_texts)
    ids1, texts1 = _replies(1)
    assert ids1 != ids0 and texts1 != texts0


# -- timing and the foreground server ------------------------------------------------------


def test_latency_and_token_latency_are_real_time():
    import time

    with Simulator(latency=0.05, token_latency=0.005) as slow:
        c = anthropic.Anthropic(base_url=slow.base_url, api_key="test", max_retries=0)
        t0 = time.monotonic()
        with c.messages.stream(model=MODEL, max_tokens=200, messages=HELLO) as stream:
            arrivals = [time.monotonic() - t0 for _ in stream.text_stream]
    assert arrivals[0] >= 0.05
    assert arrivals[-1] - arrivals[0] >= 0.005 * (len(arrivals) - 1) * 0.8  # spread out, not one burst


def test_run_serves_in_the_foreground_until_interrupted():
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", "from convo.sim import run; run(port=0, rpm=100)"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.split()[4]
        c = anthropic.Anthropic(base_url=url, api_key="test", max_retries=0)
        raw = c.messages.with_raw_response.create(model=MODEL, max_tokens=20, messages=HELLO)
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "100"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_prefill_with_trailing_whitespace_is_rejected(client):
    with pytest.raises(anthropic.BadRequestError, match="final assistant content cannot end with trailing whitespace"):
        create(client, [*HELLO, {"role": "assistant", "content": "Sure, "}], model=PREFILL_MODEL)


def test_prefill_continues_the_same_answer(client):
    full = create(client, model=PREFILL_MODEL).content[0].text
    prefill = full[:20].rstrip()
    rest = create(client, [*HELLO, {"role": "assistant", "content": prefill}], model=PREFILL_MODEL).content[0].text
    assert prefill + rest == full
