"""OpenTelemetry: one trace per logical call, attempts as children (the SDK's spans under them),
GenAI attributes and metrics, content only when asked for and redacted, and named DEBUG logs.

Spans are collected with opentelemetry-sdk's in-memory exporter from a real simulator over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import convo
from convo import Budget, BudgetExceededError, Conversation, MemoryCache, Redactor, telemetry
from convo.sim import Faults

from .helpers import MODEL, quick_aclient, quick_client

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider():
    """One global tracer provider for the module (the SDK's own spans use the global one too)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    installed = trace.get_tracer_provider()
    telemetry.configure(tracer_provider=installed if installed is not provider else provider)
    yield
    telemetry.configure(tracer_provider=None, meter_provider=None, capture_content=False)


@pytest.fixture
def spans(fresh):
    EXPORTER.clear()
    yield EXPORTER
    telemetry.configure(capture_content=False)


def _roots(finished):
    ids = {s.context.span_id for s in finished}
    return [s for s in finished if s.parent is None or s.parent.span_id not in ids]


def _children(finished, parent):
    return [s for s in finished if s.parent is not None and s.parent.span_id == parent.context.span_id]


HELLO = [{"role": "user", "content": "Hello there"}]


def test_a_call_with_two_retries_is_one_root_with_three_attempts(spans, fresh):
    fresh.faults = Faults(["529", "500"])
    client = quick_client(fresh)
    reply = client.create(HELLO, max_tokens=30)
    finished = spans.get_finished_spans()
    (root,) = _roots(finished)
    assert root.name == f"chat {MODEL}" and root.kind == trace.SpanKind.CLIENT
    a = root.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.model"] == MODEL and a["gen_ai.response.model"] == reply.model
    assert a["gen_ai.response.id"] == reply.id and list(a["gen_ai.response.finish_reasons"]) == [reply.stop_reason]
    assert a["gen_ai.usage.output_tokens"] == reply.usage.output_tokens
    assert a["gen_ai.usage.input_tokens"] == reply.usage.input_tokens + (reply.usage.cache_read_input_tokens or 0) + (
        reply.usage.cache_creation_input_tokens or 0)
    assert "gen_ai.usage.cache_read.input_tokens" in a and "gen_ai.usage.cache_creation.input_tokens" in a
    assert a["convo.retries"] == 2 and a["convo.attempts"] == 3 and a["convo.cache_hit"] is False
    assert a["convo.cost_usd"] == pytest.approx(client.stats.cost_usd) and a["convo.cost_usd"] > 0
    attempts = sorted(_children(finished, root), key=lambda s: s.start_time)
    assert [s.name for s in attempts] == ["attempt 1", "attempt 2", "attempt 3"]
    assert [s.attributes.get("error.type") for s in attempts] == ["529", "500", None]
    assert attempts[0].status.status_code == trace.StatusCode.ERROR
    assert "overloaded" in attempts[1].attributes["convo.retry_reason"]
    assert "500" in attempts[2].attributes["convo.retry_reason"]
    # The SDK's own span of each HTTP call nests under its attempt: no stray roots.
    for attempt in attempts:
        assert [s.name for s in _children(finished, attempt)] == ["anthropic.messages.create"]


def test_a_failed_call_ends_its_span_with_the_error_type(spans, fresh):
    fresh.faults = Faults(["400"])
    with pytest.raises(convo.BadRequestError):
        quick_client(fresh).create(HELLO, max_tokens=30)
    (root,) = _roots(spans.get_finished_spans())
    assert root.attributes["error.type"] == "400" and root.status.status_code == trace.StatusCode.ERROR


def test_a_cancelled_call_ends_its_span_and_its_attempt_as_cancelled(spans, fresh):
    fresh.faults = Faults(["hang@0"], stall_seconds=5.0)

    async def main():
        client = quick_aclient(fresh)
        task = asyncio.create_task(client.create(HELLO, max_tokens=30))
        while not fresh.requests:  # the request is in flight
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    finished = spans.get_finished_spans()
    (root,) = _roots(finished)
    attempts = [s for s in _children(finished, root) if s.name.startswith("attempt")]
    assert root.status.status_code == trace.StatusCode.ERROR and root.attributes["error.type"] == "Cancelled"
    assert [a.status.status_code for a in attempts] == [trace.StatusCode.ERROR]
    assert attempts[0].attributes["error.type"] == "Cancelled"


def test_a_call_the_budget_refuses_still_ends_its_span(spans, fresh):
    client = quick_client(fresh, budget=Budget(usd=0.000001))
    with pytest.raises(BudgetExceededError):
        client.create(HELLO, max_tokens=500)
    (root,) = _roots(spans.get_finished_spans())
    assert root.attributes["error.type"] == "BudgetExceededError" and root.attributes["convo.attempts"] == 0
    assert _children(spans.get_finished_spans(), root) == []  # nothing was sent


def test_a_cached_answer_is_a_span_without_attempts(spans, fresh):
    client = quick_client(fresh, cache=MemoryCache())
    client.create(HELLO, max_tokens=30, temperature=0)
    spans.clear()
    client.create(HELLO, max_tokens=30, temperature=0)
    (root,) = _roots(spans.get_finished_spans())
    assert root.attributes["convo.cache_hit"] is True and root.attributes["convo.attempts"] == 0
    assert root.attributes["gen_ai.request.temperature"] == 0


def test_a_stream_and_count_tokens_are_one_span_each(spans, fresh):
    client = quick_client(fresh)
    with client.stream(HELLO, max_tokens=30) as s:
        text = "".join(s.text_stream)
    assert text
    assert client.count_tokens(HELLO) > 0
    roots = sorted(_roots(spans.get_finished_spans()), key=lambda s: s.start_time)
    assert [r.name for r in roots] == [f"chat {MODEL}", f"count_tokens {MODEL}"]
    assert roots[0].attributes["gen_ai.usage.output_tokens"] > 0


def test_a_conversation_turn_is_the_parent_of_its_call(spans, fresh):
    conv = Conversation("You are terse.", model=MODEL, budget=300, max_tokens=40, client=quick_client(fresh))
    for i in range(6):
        conv.send(f"Question number {i}: tell me a few words about the sea, please.")
    finished = spans.get_finished_spans()
    roots = _roots(finished)
    assert len(roots) == 6 and {r.name for r in roots} == {f"chat {MODEL}"}
    ids = {r.attributes["gen_ai.conversation.id"] for r in roots}
    assert len(ids) == 1
    last = max(roots, key=lambda s: s.start_time)
    (call,) = _children(finished, last)
    assert call.kind == trace.SpanKind.CLIENT and call.attributes["gen_ai.conversation.id"] in ids
    assert last.attributes["convo.trimmed_tokens"] > 0 and last.attributes["convo.trimmed_messages"] > 0
    assert last.attributes["convo.cost_usd"] == pytest.approx(conv.receipts[-1].cost)


def _usage(span):
    keys = ("input_tokens", "output_tokens", "cache_read.input_tokens", "cache_creation.input_tokens")
    return [span.attributes[f"gen_ai.usage.{k}"] for k in keys]


def test_a_turn_root_carries_its_calls_usage_response_model_and_finish_reason(spans, fresh):
    @convo.tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    conv = Conversation("Use tools.", model=MODEL, client=quick_client(fresh), tools=[weather])
    conv.send("What is the weather in Paris? Use the tool.")
    finished = spans.get_finished_spans()
    (root,) = _roots(finished)
    calls = _children(finished, root)
    assert len(calls) == 2  # the tool call, then the answer
    totals = [sum(column) for column in zip(*(_usage(c) for c in calls), strict=True)]
    assert _usage(root) == totals and totals[0] > 0 and totals[1] > 0
    last = max(calls, key=lambda s: s.start_time)
    assert root.attributes["gen_ai.response.model"] == last.attributes["gen_ai.response.model"]
    assert root.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert [c.attributes["gen_ai.response.finish_reasons"] for c in calls].count(("tool_use",)) == 1


def test_a_summarizing_turn_counts_the_summary_call_in_its_usage_and_cost(spans, fresh):
    client = quick_client(fresh)
    conv = Conversation("Be brief.", model=MODEL, budget=1500, client=client,
                        strategy=convo.Summarize(trigger=0.6, keep_last=1, max_summary_tokens=200))
    for i in range(6):
        conv.send(f"Fact {i}: room {i} is on floor {i % 3}. " * 5)
    finished = spans.get_finished_spans()
    roots = _roots(finished)
    summarized = [r for r in roots if r.attributes["convo.summarized_messages"] > 0]
    assert summarized and all(len(_children(finished, r)) == 2 for r in summarized)  # the summary, the reply
    for root in roots:
        calls = _children(finished, root)
        assert root.attributes["convo.calls"] == len(calls)
        assert root.attributes["convo.cost_usd"] == pytest.approx(sum(c.attributes["convo.cost_usd"] for c in calls))
        assert _usage(root) == [sum(column) for column in zip(*(_usage(c) for c in calls), strict=True)]
    assert sum(r.attributes["convo.cost_usd"] for r in roots) == pytest.approx(client.stats.cost_usd)


def test_an_async_stream_turn_is_one_trace(spans, fresh):
    async def go():
        conv = Conversation(model=MODEL, budget=4000, client=quick_aclient(fresh))
        return "".join([t async for t in conv.astream("Hello, say something")])

    assert asyncio.run(go())
    finished = spans.get_finished_spans()
    (root,) = _roots(finished)
    (call,) = _children(finished, root)
    assert [s.name for s in _children(finished, call)] == ["attempt 1"]
    assert _usage(root) == _usage(call) and root.attributes["gen_ai.response.model"] == MODEL


def test_an_error_event_mid_stream_counts_as_its_status_and_names_its_type(spans, fresh):
    """The API's ``error`` event arrives on a 200 response: the attempt's ``error.type`` is the
    status its type comes with (529 for ``overloaded_error``, as for an overloaded call), and the
    StreamError given up with says what the API sent, not the SDK's dict."""
    fresh.faults = Faults(["sse_error@3", "sse_error@3"])
    conv = Conversation(model=MODEL, budget=4000, client=quick_client(fresh, retry=convo.RetryPolicy(max_attempts=2)))
    with pytest.raises(convo.StreamError) as caught:
        "".join(conv.stream("Hello, say something"))
    err = caught.value
    assert err.error_type == "overloaded_error" and err.status_code == 200
    assert "the API sent an error event: overloaded_error: Overloaded" in str(err) and "{" not in str(err)
    finished = spans.get_finished_spans()
    (root,) = _roots(finished)
    (call,) = _children(finished, root)
    attempts = _children(finished, call)
    assert [a.attributes["error.type"] for a in attempts] == ["529", "529"]
    assert root.status.status_code == trace.StatusCode.ERROR and root.attributes["error.type"] == "StreamError"
    assert conv.messages == []


def test_a_stream_closed_early_ends_its_turn_as_cancelled(spans, fresh):
    conv = Conversation(model=MODEL, budget=4000, client=quick_client(fresh))
    reply = conv.stream("Hello, say something long")
    assert next(iter(reply))
    reply.close()
    assert conv.messages == []  # the turn was taken back
    finished = spans.get_finished_spans()
    (root,) = _roots(finished)
    (call,) = _children(finished, root)
    for span in (root, call):
        assert span.status.status_code == trace.StatusCode.ERROR and span.attributes["error.type"] == "Cancelled"


def test_a_fork_is_another_conversation_in_traces(spans, fresh):
    conv = Conversation(model=MODEL, budget=4000, client=quick_client(fresh))
    conv.send("Hello")
    conv.fork().send("Hello again")
    conv.send("And again")
    ids = [r.attributes["gen_ai.conversation.id"] for r in sorted(_roots(spans.get_finished_spans()), key=lambda s: s.start_time)]
    assert ids[0] == ids[2] != ids[1]


def test_a_batch_is_the_parent_of_its_calls(spans, fresh):
    client = quick_client(fresh)
    results = client.batch([{"messages": [{"role": "user", "content": f"item {i}"}], "max_tokens": 20}
                            for i in range(5)], concurrency=3, progress=False)
    assert all(r.ok for r in results)
    finished = spans.get_finished_spans()
    (root,) = _roots(finished)
    assert root.name == "batch" and root.attributes["convo.batch.size"] == 5
    calls = _children(finished, root)
    assert len(calls) == 5 and all(c.name == f"chat {MODEL}" for c in calls)
    assert _usage(root) == [sum(column) for column in zip(*(_usage(c) for c in calls), strict=True)]
    assert root.attributes["convo.calls"] == 5
    assert root.attributes["convo.cost_usd"] == pytest.approx(sum(c.attributes["convo.cost_usd"] for c in calls))
    assert root.attributes["convo.cost_usd"] == pytest.approx(client.stats.cost_usd) and client.stats.cost_usd > 0


def test_a_batches_api_job_is_one_root_to_submit_and_one_to_collect(spans):
    from convo.sim import ManualClock, Simulator

    clock = ManualClock()
    with Simulator(seed=0, clock=clock, batch_seconds=600) as sim:
        client = convo.Client(api_key="k", base_url=sim.base_url, model=MODEL, sleep=clock.advance)
        job = client.batch([{"messages": [{"role": "user", "content": f"item {i}"}], "max_tokens": 20}
                            for i in range(3)], via="batches_api", wait=False)
        finished = spans.get_finished_spans()
        (submit,) = _roots(finished)
        assert submit.name == "batch" and submit.attributes["convo.batch.size"] == 3
        assert list(submit.attributes["convo.batch.ids"]) == job.ids
        assert {s.name for s in _children(finished, submit)} == {"anthropic.messages.batches.create"}
        spans.clear()
        assert all(r.ok for r in job.results())
        finished = spans.get_finished_spans()
        (collect,) = _roots(finished)  # every poll and result read under it
        assert collect.name == "batch" and list(collect.attributes["convo.batch.ids"]) == job.ids
        assert len(_children(finished, collect)) >= 2
        assert collect.attributes["convo.calls"] == 3  # the three results, at batch prices
        results = job.results()
        assert collect.attributes["gen_ai.usage.output_tokens"] == sum(r.message.usage.output_tokens for r in results)
        assert collect.attributes["convo.cost_usd"] == pytest.approx(client.stats.cost_usd) and client.stats.cost_usd > 0
        assert "convo.calls" not in submit.attributes  # submitting costs nothing yet


def test_map_reduce_is_the_parent_of_its_batch_and_reduce(spans, fresh):
    text = " ".join(f"Sentence {i} talks about lighthouses and ships." for i in range(200))
    result = convo.map_reduce(text, "Summarize", client=quick_client(fresh), chunk_tokens=300, progress=False)
    assert result.text
    finished = spans.get_finished_spans()
    (root,) = _roots(finished)
    assert root.name == "map_reduce" and root.attributes["convo.chunks"] > 1
    assert "batch" in {s.name for s in _children(finished, root)}
    calls = [s for s in finished if s.name == f"chat {MODEL}"]  # the maps (under the batch) and the reduce
    assert root.attributes["convo.calls"] == len(calls) == root.attributes["convo.chunks"] + 1
    assert _usage(root) == [sum(column) for column in zip(*(_usage(c) for c in calls), strict=True)]


def test_content_is_off_by_default_and_redacted_when_on(spans, fresh):
    client = quick_client(fresh, redactor=Redactor())
    secret = [{"role": "user", "content": "My email is jane.doe@example.com, repeat it please"}]
    client.create(secret, max_tokens=40)
    (root,) = _roots(spans.get_finished_spans())
    assert not any(k.startswith(("gen_ai.input", "gen_ai.output")) for k in root.attributes)
    spans.clear()
    telemetry.configure(capture_content=True)
    client.create(secret, system="Be brief.", max_tokens=40)
    (root,) = _roots(spans.get_finished_spans())
    sent = json.loads(root.attributes["gen_ai.input.messages"])
    assert sent[0]["role"] == "user" and "jane.doe@example.com" not in root.attributes["gen_ai.input.messages"]
    assert "EMAIL" in sent[0]["parts"][0]["content"]
    assert json.loads(root.attributes["gen_ai.system_instructions"])[0]["content"] == "Be brief."
    out = json.loads(root.attributes["gen_ai.output.messages"])
    assert out[0]["role"] == "assistant" and "jane.doe@example.com" not in root.attributes["gen_ai.output.messages"]


def test_duration_and_token_histograms(fresh):
    reader = InMemoryMetricReader()
    telemetry.configure(meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        client = quick_client(fresh)
        replies = [client.create(HELLO, max_tokens=30) for _ in range(3)]
        fresh.faults = Faults(["400"])
        with pytest.raises(convo.BadRequestError):
            client.create(HELLO, max_tokens=30)
    finally:
        telemetry.configure(meter_provider=None)
    data = reader.get_metrics_data()
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    points = {p.attributes.get("error.type"): p for p in duration.data.data_points}
    assert points[None].count == 3 and points["400"].count == 1
    assert points[None].attributes["gen_ai.operation.name"] == "chat"
    assert list(points[None].explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    tokens = {p.attributes["gen_ai.token.type"]: p for p in metrics["gen_ai.client.token.usage"].data.data_points}
    assert tokens["output"].sum == sum(r.usage.output_tokens for r in replies) and tokens["input"].count == 3


def test_turned_off_nothing_is_recorded(spans, fresh):
    telemetry.configure(enabled=False)
    try:
        quick_client(fresh).create(HELLO, max_tokens=20)
        convo_spans = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name == "convo"]
        assert convo_spans == []
    finally:
        telemetry.configure(enabled=True)


def test_debug_logs_name_retries_and_calls(fresh, caplog):
    fresh.faults = Faults(["529"])
    with caplog.at_level(logging.DEBUG, logger="convo"):
        quick_client(fresh).create(HELLO, max_tokens=20)
    by_logger = {r.name for r in caplog.records}
    assert {"convo.retry", "convo.client"} <= by_logger
    retry = next(r for r in caplog.records if r.name == "convo.retry")
    assert "attempt 2" in retry.getMessage() and "529" in retry.getMessage()


def test_stats_are_a_json_dict(fresh):
    client = quick_client(fresh, user="alice")
    client.create(HELLO, max_tokens=20)
    stats = client.stats.as_dict()
    assert json.loads(json.dumps(stats)) == stats and stats["users"]["alice"]["requests"] == 1


def test_without_a_provider_convo_works_and_records_nothing(fresh, tmp_path):
    # anthropic 2.x itself depends on opentelemetry-api, so the API is always importable; with
    # no tracer or meter provider configured, convo creates no spans and no instruments.
    code = (
        "from convo import _telemetry, telemetry\n"
        "from convo import Client, Conversation\n"
        "assert _telemetry.tracer() is None\n"
        f"client = Client(api_key='k', base_url={fresh.base_url!r}, model={MODEL!r})\n"
        f"conv = Conversation(model={MODEL!r}, budget=4000, client=client)\n"
        "assert conv.send('hi')\n"
        "assert _telemetry.tracer() is None; print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_client_stats_are_exported_as_observable_counters(fresh):
    reader = InMemoryMetricReader()
    telemetry.configure(meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        client = quick_client(fresh)
        assert telemetry.observe(client, worker="7")
        fresh.faults = Faults(["529"])
        client.create(HELLO, max_tokens=20)
        client.create(HELLO, max_tokens=20)
        data = reader.get_metrics_data()
    finally:
        telemetry.configure(meter_provider=None)
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    (requests,) = metrics["convo.client.requests"].data.data_points
    assert requests.value == 2 and dict(requests.attributes) == {"worker": "7", "convo.outcome": "success"}
    assert metrics["convo.client.retries"].data.data_points[0].value == 1
    assert metrics["convo.client.cost"].data.data_points[0].value == pytest.approx(client.stats.cost_usd)
    tokens = {p.attributes["gen_ai.token.type"]: p.value for p in metrics["convo.client.tokens"].data.data_points}
    assert tokens["output"] == client.stats.output_tokens > 0


GLOBAL_ONLY = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from convo import Client
from convo.sim import Faults, Simulator

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # the application's set-up; convo is not told
with Simulator(seed=0) as sim:
    sim.faults = Faults(["429"])
    client = Client(api_key="k", base_url=sim.base_url, model="claude-sonnet-4-6", sleep=lambda s: None)
    client.create([{"role": "user", "content": "hi"}], max_tokens=20)
spans = exporter.get_finished_spans()
ids = {s.context.span_id for s in spans}
roots = [s.name for s in spans if s.parent is None or s.parent.span_id not in ids]
print(roots, len(spans))
"""


def test_the_global_tracer_provider_is_enough():
    out = subprocess.run([sys.executable, "-c", GLOBAL_ONLY], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    # one root (the call), two attempts, and the SDK's two HTTP spans under them
    assert out.stdout.strip() == "['chat claude-sonnet-4-6'] 5"
