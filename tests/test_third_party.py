"""Third-party clients, unchanged, against the simulator: langchain-anthropic, litellm and
pydantic-ai talk to it as they would to the API (only the base URL and an API key are set, as
a user pointing them at a proxy would). Each test asserts what the client hands its user and
what reached the wire. A client's tests skip only when that client is not installed (``make
test`` installs the ``compat`` extra); one that is installed but breaks fails them.

The offline model is steered by the prompt: ``say "…"`` makes it say exactly that, and naming
a tool in the last user message ("Use get_weather for Paris.") makes it call that tool with the
words after the name as the argument (see ``convo/sim/model.py``).

Nothing may leave the machine: every test (and the clients' imports) runs under a guard that
refuses and records any connection or name lookup that is not loopback.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import ipaddress
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from convo.sim import Simulator

#: The model every client asks for.
MODEL = "claude-sonnet-4-6"

# litellm's own TypedDicts trip a pydantic warning when its types are first built; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning")

SAID = "The quick brown fox jumps over the lazy dog."
SAY = f'Please say "{SAID}"'
ASK_TOOL = "Use get_weather for Paris."
WEATHER = "sunny and 21 C in Paris"

# litellm fetches a price map and a beta-header table from the internet at import unless told
# to use its bundled copies; these must be set before it is imported.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"


# -- staying offline ------------------------------------------------------------------------------


def _loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@contextmanager
def offline() -> Iterator[list[str]]:
    """Refuse (and list) every IP connection and name lookup that is not loopback."""
    attempts: list[str] = []
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guard(kind: str, host: Any, target: Any) -> None:
        if not _loopback(host):
            attempts.append(f"{kind} {target!r}")
            raise OSError(f"test_third_party: refused {kind} to {target!r}; these tests must stay offline")

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple):  # not an AF_UNIX path
            guard("connect", address[0], address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if isinstance(address, tuple):
            guard("connect", address[0], address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            guard("getaddrinfo", host, host)
        return getaddrinfo(host, *args, **kwargs)

    patches = [(socket.socket, "connect", guarded_connect), (socket.socket, "connect_ex", guarded_connect_ex),
               (socket, "getaddrinfo", guarded_getaddrinfo)]  # fmt: skip
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield attempts
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


@pytest.fixture(autouse=True)
def no_internet() -> Iterator[None]:
    with offline() as attempts:
        yield
    assert attempts == [], f"a client tried to reach the network: {attempts}"


def _load(distribution: str, *modules: str) -> SimpleNamespace:
    """The client's modules' public names, imported offline; skips only when the distribution is
    not installed (an installed client that fails to import fails the test)."""
    top = modules[0].split(".")[0]
    if importlib.util.find_spec(top) is None:
        pytest.skip(f"{distribution} is not installed: pip install -e '.[compat]' (make test does)")
    names: dict[str, Any] = {}
    with offline() as attempts:
        for module in modules:
            imported = importlib.import_module(module)
            names |= {k: v for k, v in vars(imported).items() if not k.startswith("_")}
    assert attempts == [], f"importing {distribution} tried to reach the network: {attempts}"
    return SimpleNamespace(**names)


@pytest.fixture(scope="module")
def lc() -> SimpleNamespace:
    return _load("langchain-anthropic", "langchain_anthropic", "langchain_core.messages")


@pytest.fixture(scope="module")
def ll() -> SimpleNamespace:
    return _load("litellm", "litellm")


@pytest.fixture(scope="module")
def pai() -> SimpleNamespace:
    return _load(
        "pydantic-ai-slim[anthropic]",
        "pydantic_ai",
        "pydantic_ai.models.anthropic",
        "pydantic_ai.providers.anthropic",
    )


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"sunny and 21 C in {city}"


def _messages_posts(sim: Simulator) -> list[dict[str, Any]]:
    return [r.body for r in sim.requests if r.path == "/v1/messages" and r.status == 200]


def _tool_result_ids(body: dict[str, Any]) -> list[str]:
    last = body["messages"][-1]
    assert last["role"] == "user"
    return [b["tool_use_id"] for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


# -- langchain-anthropic ------------------------------------------------------------------------


def _chat(lc: SimpleNamespace, sim: Simulator) -> Any:
    return lc.ChatAnthropic(model=MODEL, base_url=sim.base_url, api_key="test")


def test_langchain_invoke(lc: SimpleNamespace, fresh: Simulator) -> None:
    reply = _chat(lc, fresh).invoke(SAY)
    assert reply.content == SAID
    assert reply.response_metadata["stop_reason"] == "end_turn"
    assert reply.response_metadata["model_name"] == MODEL
    usage = reply.usage_metadata
    assert usage is not None and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    (body,) = _messages_posts(fresh)
    assert body["model"] == MODEL and not body.get("stream")
    assert body["messages"] == [{"role": "user", "content": SAY}]


def test_langchain_stream(lc: SimpleNamespace, fresh: Simulator) -> None:
    chat = _chat(lc, fresh)
    whole = chat.invoke(SAY)
    chunks = list(chat.stream(SAY))
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 1, "the reply should arrive in several deltas"
    assert "".join(texts) == SAID
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == SAID
    assert total.response_metadata["stop_reason"] == "end_turn"
    usage, expected = total.usage_metadata, whole.usage_metadata
    assert usage is not None and expected is not None
    assert usage["output_tokens"] == expected["output_tokens"]
    # langchain-anthropic reads a stream's usage from message_delta.usage alone (cumulative, and
    # with input_tokens and the cache fields from the API); without them it reports 0 input tokens.
    assert usage["input_tokens"] > 0, "message_delta.usage carried no input_tokens"
    assert usage["input_tokens"] == expected["input_tokens"]
    assert [b.get("stream") for b in _messages_posts(fresh)] == [None, True]


def test_langchain_stream_cache_usage(lc: SimpleNamespace, fresh: Simulator) -> None:
    rules = " ".join(f"Rule {i}: answer in plain words and keep to the point." for i in range(200))
    system = lc.SystemMessage(content=[{"type": "text", "text": rules, "cache_control": {"type": "ephemeral"}}])
    chat = _chat(lc, fresh)
    wrote = chat.invoke([system, lc.HumanMessage(SAY)])  # a cold cache: this request writes it
    chunks = list(chat.stream([system, lc.HumanMessage(SAY)]))  # and this one reads it
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content == SAID
    written, usage = wrote.usage_metadata, total.usage_metadata
    assert written is not None and usage is not None
    cached = written["input_token_details"].get("ephemeral_5m_input_tokens", 0)
    assert cached > 0, "the system prompt should have been written to the cache"
    # The stream's totals come from message_delta.usage: input_tokens and cache_read_input_tokens.
    assert usage["input_token_details"].get("cache_read") == cached
    assert usage["input_tokens"] == written["input_tokens"]


def test_langchain_tools(lc: SimpleNamespace, fresh: Simulator) -> None:
    chat = _chat(lc, fresh).bind_tools([get_weather])
    history: list[Any] = [lc.HumanMessage(ASK_TOOL)]
    call = chat.invoke(history)
    assert call.response_metadata["stop_reason"] == "tool_use"
    (tool_call,) = call.tool_calls
    assert tool_call["name"] == "get_weather" and tool_call["args"] == {"city": "Paris"}
    result = get_weather(**tool_call["args"])
    history += [call, lc.ToolMessage(content=result, tool_call_id=tool_call["id"])]
    final = chat.invoke(history)
    assert final.tool_calls == []
    assert final.response_metadata["stop_reason"] == "end_turn"
    assert WEATHER in final.text
    first, second = _messages_posts(fresh)
    (tool,) = first["tools"]
    assert tool["name"] == "get_weather" and tool["input_schema"]["required"] == ["city"]
    assert _tool_result_ids(second) == [tool_call["id"]]


def test_langchain_stream_tools(lc: SimpleNamespace, fresh: Simulator) -> None:
    chunks = list(_chat(lc, fresh).bind_tools([get_weather]).stream(ASK_TOOL))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert total.tool_calls[0]["id"].startswith("toolu_")
    assert total.response_metadata["stop_reason"] == "tool_use"


# -- litellm ------------------------------------------------------------------------------------


def _completion(ll: SimpleNamespace, sim: Simulator, messages: list[dict[str, Any]], **kw: Any) -> Any:
    return ll.completion(model=f"anthropic/{MODEL}", api_base=sim.base_url, api_key="test", messages=messages, **kw)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_litellm_completion(ll: SimpleNamespace, fresh: Simulator) -> None:
    response = _completion(ll, fresh, [{"role": "user", "content": SAY}])
    (choice,) = response.choices
    assert choice.message.content == SAID
    assert choice.finish_reason == "stop"
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    (body,) = _messages_posts(fresh)
    assert body["model"] == MODEL
    assert body["messages"][0]["role"] == "user"


def test_litellm_stream(ll: SimpleNamespace, fresh: Simulator) -> None:
    whole = _completion(ll, fresh, [{"role": "user", "content": SAY}])
    chunks = list(
        _completion(ll, fresh, [{"role": "user", "content": SAY}], stream=True, stream_options={"include_usage": True})
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 1, "the reply should arrive in several deltas"
    assert "".join(texts) == SAID
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    rebuilt = ll.stream_chunk_builder(chunks)
    assert rebuilt.choices[0].message.content == SAID
    assert rebuilt.usage.prompt_tokens == whole.usage.prompt_tokens > 0
    assert rebuilt.usage.completion_tokens == whole.usage.completion_tokens
    assert [b.get("stream") for b in _messages_posts(fresh)] == [None, True]


def test_litellm_tools(ll: SimpleNamespace, fresh: Simulator) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": ASK_TOOL}]
    response = _completion(ll, fresh, messages, tools=[WEATHER_TOOL])
    (choice,) = response.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert args == {"city": "Paris"}
    messages += [
        choice.message.model_dump(),
        {"role": "tool", "tool_call_id": call.id, "content": get_weather(**args)},
    ]
    final = _completion(ll, fresh, messages, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert not final.choices[0].message.tool_calls
    assert WEATHER in final.choices[0].message.content
    first, second = _messages_posts(fresh)
    assert [t["name"] for t in first["tools"]] == ["get_weather"]
    assert _tool_result_ids(second) == [call.id]


def test_litellm_stream_tools(ll: SimpleNamespace, fresh: Simulator) -> None:
    chunks = list(_completion(ll, fresh, [{"role": "user", "content": ASK_TOOL}], tools=[WEATHER_TOOL], stream=True))
    rebuilt = ll.stream_chunk_builder(chunks)
    (call,) = rebuilt.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("toolu_")
    assert rebuilt.choices[0].finish_reason == "tool_calls"


# -- pydantic-ai --------------------------------------------------------------------------------


def _agent(pai: SimpleNamespace, sim: Simulator, calls: list[str]) -> Any:
    provider = pai.AnthropicProvider(base_url=sim.base_url, api_key="test")
    agent = pai.Agent(pai.AnthropicModel(MODEL, provider=provider), instructions="Be brief.")

    def weather(city: str) -> str:
        """Get the current weather for a city."""
        calls.append(city)
        return get_weather(city)

    tool: Callable[..., Any] = agent.tool_plain(name="get_weather")(weather)
    assert tool is weather
    return agent


def test_pydantic_ai_agent_calls_the_tool(pai: SimpleNamespace, fresh: Simulator) -> None:
    calls: list[str] = []
    result = _agent(pai, fresh, calls).run_sync(ASK_TOOL)
    assert calls == ["Paris"]
    assert WEATHER in result.output
    usage = result.usage
    assert usage.requests == 2 and usage.tool_calls == 1
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    first, second = _messages_posts(fresh)
    assert [t["name"] for t in first["tools"]] == ["get_weather"]
    (call,) = [b for b in second["messages"][-2]["content"] if b["type"] == "tool_use"]
    assert _tool_result_ids(second) == [call["id"]]


def test_pydantic_ai_stream(pai: SimpleNamespace, fresh: Simulator) -> None:
    with _agent(pai, fresh, []).run_stream_sync(SAY) as run:
        texts = list(run.stream_text(delta=True))
        usage = run.usage
    assert "".join(texts) == SAID
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    (body,) = _messages_posts(fresh)
    assert body["stream"] is True


def test_pydantic_ai_stream_events_with_a_tool(pai: SimpleNamespace, fresh: Simulator) -> None:
    calls: list[str] = []
    agent = _agent(pai, fresh, calls)

    async def run() -> tuple[list[Any], Any]:
        async with agent.run_stream_events(ASK_TOOL) as stream:
            events = [event async for event in stream]
        return events, events[-1]

    events, last = asyncio.run(run())
    assert calls == ["Paris"]
    called = [e.part for e in events if isinstance(e, pai.FunctionToolCallEvent)]
    assert [(p.tool_name, p.args_as_dict()) for p in called] == [("get_weather", {"city": "Paris"})]
    assert isinstance(last, pai.AgentRunResultEvent)
    assert WEATHER in last.result.output
    assert all(body["stream"] is True for body in _messages_posts(fresh))
