"""A corpus of malformed input across the public API: each case raises a typed error under
``convo.ConvoError`` whose message says what to do, and leaves every object it touched as it was.

Cases already pinned down elsewhere (bad client settings and retry policies in test_client,
bad budgets in test_budget, bad conversation files in test_conversation, invalid Redis cache
URLs in test_cache) are covered here only where they add a "nothing changed" check.
"""

import copy
import functools
import json
import os

import pytest

import convo
from convo import (
    Budget,
    Client,
    Conversation,
    MemoryCache,
    PriceTable,
    RedisCache,
    RedisStore,
    RetryPolicy,
    chunk_file,
    chunk_text,
    count_tokens,
    map_reduce,
    to_message,
)

MODEL = "claude-sonnet-4-6"
IMG_NO_DATA = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
USE = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}



def conv():
    c = Conversation("Be brief.", model=MODEL, budget=4000)
    c.add_user("Hello", pinned=True)
    c.add_assistant("Hi.")
    return c


def snap(obj):
    """Everything observable about an object, to compare before and after."""
    if isinstance(obj, Conversation):
        return json.dumps(obj._to_dict() if hasattr(obj, "_to_dict") else _conv_state(obj), sort_keys=True, default=str)
    if isinstance(obj, Client):
        return (json.dumps(obj.stats.as_dict(), sort_keys=True, default=str), obj.retry_budget.tokens)
    if isinstance(obj, Budget):
        return obj.as_dict()
    if isinstance(obj, os.PathLike):
        return open(obj, "rb").read()
    return copy.deepcopy(obj)


def _conv_state(c):
    from convo._persist import to_dict

    return {**to_dict(c), "tokens": c.tokens, "summary_error": str(getattr(c, "summary_error", None))}


def refuses(action, error, fragment, *objects):
    before = [snap(o) for o in objects]
    with pytest.raises(error) as info:
        action()
    assert isinstance(info.value, convo.ConvoError)
    assert fragment.lower() in str(info.value).lower(), str(info.value)
    assert [snap(o) for o in objects] == before, "the failed call changed something"
    return info.value


# -- messages and conversations ----------------------------------------------------------------

CONVERSATION_CASES = {
    "role system": (lambda c: c.add({"role": "system", "content": "x"}), "role"),
    "role robot": (lambda c: c.add({"role": "robot", "content": "x"}), "role"),
    "role missing": (lambda c: c.add({"content": "x"}), "role"),
    "empty text": (lambda c: c.add_user(""), "empty"),
    "whitespace text": (lambda c: c.add_user("   \n"), "empty"),
    "None content": (lambda c: c.add_user(None), "content"),
    "int content": (lambda c: c.add_user(42), "content"),
    "bytes content": (lambda c: c.add_user(b"hello"), "content"),
    "empty block list": (lambda c: c.add_user([]), "empty"),
    "block type not a string": (lambda c: c.add_user([{"type": 42}]), "type"),
    "text block without text": (lambda c: c.add_user([{"type": "text"}]), "text"),
    "image without data": (lambda c: c.add_user([IMG_NO_DATA]), "data"),
    "image not base64": (lambda c: c.add_user([{**IMG_NO_DATA, "source": {**IMG_NO_DATA["source"], "data": "@@@"}}]),
                         "base64"),
    "image bad media type": (lambda c: c.add_user([{**IMG_NO_DATA, "source": {**IMG_NO_DATA["source"],
                                                                              "media_type": "image/bmp"}}]), "media"),
    "orphan tool_result": (lambda c: c.add_user([RESULT]), "tool_use"),
    "duplicate tool ids": (lambda c: c.extend([{"role": "user", "content": "go"},
                                               {"role": "assistant", "content": [USE, USE]}]), "toolu_1"),
    "tool_result for another id": (lambda c: c.extend([{"role": "user", "content": "go"},
                                                       {"role": "assistant", "content": [USE]},
                                                       {"role": "user", "content": [{**RESULT, "tool_use_id": "t9"}]}]),
                                   "t9"),
    "tool_use without input": (lambda c: c.extend([{"role": "user", "content": "go"},
                                                   {"role": "assistant", "content": [{"type": "tool_use",
                                                                                      "id": "t", "name": "f"}]}]),
                               "input"),
    "pin out of range": (lambda c: c.pin(99), "99"),
    "unpin out of range": (lambda c: c.unpin(-99), "-99"),
    "request max_tokens zero": (lambda c: c.request(max_tokens=0), "max_tokens"),
    "request max_tokens negative": (lambda c: c.request(max_tokens=-5), "max_tokens"),
    "request max_tokens over budget": (lambda c: c.request(max_tokens=10_000), "budget"),
}


@pytest.mark.parametrize("name", list(CONVERSATION_CASES))
def test_a_bad_conversation_call_changes_nothing(name):
    action, fragment = CONVERSATION_CASES[name]
    c = conv()
    refuses(lambda: action(c), convo.ConvoError, fragment, c)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"budget": 0}, "budget"),
        ({"budget": -100}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"budget": 4000, "max_tokens": 0}, "max_tokens"),
        ({"budget": 4000, "max_tokens": -1}, "max_tokens"),
        ({"budget": 100, "system": "You are a careful assistant. " * 40}, "system"),
        ({"budget": 4000, "model": ""}, "model"),
        ({"budget": 4000, "system": 42}, "system"),
    ],
)
def test_bad_conversation_settings(kwargs, fragment):
    kwargs.setdefault("model", MODEL)
    with pytest.raises(convo.InvalidConfigError) as info:
        Conversation(**kwargs)
    assert fragment in str(info.value)


def test_a_system_prompt_larger_than_the_budget_is_an_overflow_that_names_the_numbers():
    c = Conversation("You are a careful assistant. " * 40, model=MODEL, budget=300)
    c.add_user("Hi")
    err = refuses(lambda: c.request(max_tokens=100), convo.ContextOverflowError, "budget", c)
    assert err.needed > err.allowed == 300


@pytest.mark.parametrize(
    "value, fragment",
    [(None, "message"), (42, "message"), ({"role": "user"}, "content"), ([{"role": "user", "content": "x"}], "message")],
)
def test_to_message_rejects_non_messages(value, fragment):
    with pytest.raises(convo.InvalidMessageError, match=fragment):
        to_message(value)


# -- files ---------------------------------------------------------------------------------------

FILES = {
    "latin-1": ("caf\xe9 cr\xe8me".encode("latin-1"), "UTF-8"),
    "utf-16": ("hello world".encode("utf-16"), ""),
    "binary": (bytes(range(256)) * 4, "binary"),
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    "truncated utf-8": ("日本語".encode()[:-1], "UTF-8"),
}


@pytest.mark.parametrize("name", list(FILES))
def test_chunk_file_says_what_is_wrong_with_a_file(tmp_path, name):
    data, fragment = FILES[name]
    path = tmp_path / "doc.txt"
    path.write_bytes(data)
    err = refuses(lambda: chunk_file(path), convo.TextFileError, fragment, path)
    assert isinstance(err, convo.ConvoError) and err.offset is not None


def test_chunk_file_on_a_folder_and_a_missing_file(tmp_path):
    refuses(lambda: chunk_file(tmp_path), convo.TextFileError, "directory")
    refuses(lambda: chunk_file(tmp_path / "nope.txt"), convo.TextFileError, "path")


@pytest.mark.parametrize("kwargs, fragment", [({"max_tokens": 0}, "max_tokens"), ({"max_tokens": -3}, "max_tokens"),
                                              ({"max_tokens": 100, "overlap": 100}, "overlap"),
                                              ({"max_tokens": 100, "overlap": -1}, "overlap")])
def test_chunk_text_bad_sizes(kwargs, fragment):
    refuses(lambda: chunk_text("Some text. " * 50, **kwargs), convo.InvalidConfigError, fragment)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('{"format": "convo.conversation", "version": 1, "model": "claude-sonnet-4-6", "bud', "truncated"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "format"),  # foreign JSON: an OpenAI-style log
        ('[1, 2, 3]', "format"),
        ('{"format": "convo.conversation", "version": 99}', "upgrade"),
        (('{"format": "convo.conversation", "version": 1, "model": "claude-sonnet-4-6", "budget": 4000, '
          '"messages": [{"role": "assistant", "content": "first"}]}'), "message 0"),
        (('{"format": "convo.conversation", "version": 1, "model": "claude-sonnet-4-6", "budget": -1, '
          '"messages": []}'), "budget"),
        (('{"format": "convo.conversation", "version": 1, "model": "claude-sonnet-4-6", "budget": 4000, '
          '"messages": [], "pinned": [5]}'), "5"),
        (('{"format": "convo.conversation", "version": 1, "model": "claude-sonnet-4-6", "budget": 4000, '
          '"messages": "hi"}'), "list"),
        ("", "truncated"),
    ],
)
def test_conversation_load_refuses_bad_files(tmp_path, content, fragment):
    path = tmp_path / "c.json"
    path.write_text(content, encoding="utf-8")
    refuses(lambda: Conversation.load(path), convo.ConversationFileError, fragment, path)


def test_conversation_load_of_a_binary_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(b"\xff\xfe\x00binary")
    refuses(lambda: Conversation.load(path), convo.ConversationFileError, "UTF-8", path)


# -- the client, prices and budgets ---------------------------------------------------------------


def test_client_calls_with_bad_arguments_send_nothing_and_change_nothing(sim):
    c = Client(api_key="k", base_url=sim.base_url, model=MODEL)
    sim.clear_requests()
    ask = [{"role": "user", "content": "hi"}]
    cases = [
        (lambda: c.create(ask, max_tokens=-1), "max_tokens"),
        (lambda: c.create(ask, max_tokens=0, thinking={"type": "adaptive"}), "max_tokens=0"),
        (lambda: c.create(ask, max_tokens=True), "max_tokens"),
        (lambda: c.create("hi"), "list"),
        (lambda: c.create([{"role": "user", "content": ""}]), "empty"),
        (lambda: c.create([{"role": "tool", "content": "x"}]), "role"),
        (lambda: c.create([{"role": "user", "content": [RESULT]}]), "tool_use"),
        (lambda: c.stream(ask, max_tokens=0), "max_tokens"),
        (lambda: c.count_tokens("hi"), "list"),
        (lambda: c.batch(ask, concurrency=0), "concurrency"),
    ]
    for action, fragment in cases:
        refuses(action, convo.InvalidInputError, fragment, c)
    assert sim.requests == []


def test_unknown_model_in_the_price_table():
    prices = PriceTable.default()
    refuses(lambda: prices.price("gpt-4o"), convo.UnknownModelError, "gpt-4o")
    refuses(lambda: Client(api_key="k", model="claude-unknown-9", budget=Budget(usd=1)), convo.UnknownModelError,
            "claude-unknown-9")


@pytest.mark.parametrize("models", [{"m": {"input": -1, "output": 1}}, {"m": {"input": 1}}, {"m": "cheap"}])
def test_bad_price_tables(models):
    refuses(lambda: PriceTable(models), convo.InvalidConfigError, "m")


def test_a_budget_smaller_than_one_request_refuses_it_unsent(sim):
    budget = Budget(usd=0.0001)
    c = Client(api_key="k", base_url=sim.base_url, model=MODEL, budget=budget)
    sim.clear_requests()
    refuses(lambda: c.create([{"role": "user", "content": "hello " * 200}], max_tokens=1000),
            convo.BudgetExceededError, "raise the budget or lower max_tokens", budget, c)
    assert sim.requests == []


def test_map_reduce_with_bad_sizes_sends_nothing(sim):
    c = Client(api_key="k", base_url=sim.base_url, model=MODEL)
    sim.clear_requests()
    for kwargs, fragment in [({"chunk_tokens": 0}, "chunk_tokens"), ({"max_tokens": -1}, "max_tokens"),
                             ({"context_tokens": 0}, "context_tokens"), ({"concurrency": 0}, "concurrency")]:
        refuses(functools.partial(map_reduce, "text " * 100, "Summarize.", client=c, progress=False, **kwargs),
                convo.InvalidConfigError, fragment, c)
    assert sim.requests == []


def test_count_tokens_with_bad_input():
    refuses(lambda: count_tokens(42), convo.InvalidInputError, "")


# -- unreachable services -----------------------------------------------------------------------


def _closed_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


def test_an_unreachable_api():
    port = _closed_port()
    c = Client(api_key="k", base_url=f"http://127.0.0.1:{port}", model=MODEL, sleep=lambda s: None,
               retry=RetryPolicy(max_attempts=2))
    err = refuses(lambda: c.create([{"role": "user", "content": "hi"}], max_tokens=10), convo.APIConnectionError,
                  "base_url")
    assert err.attempts == 2
    with pytest.raises(convo.APIConnectionError, match="base_url"):
        "".join(c.stream([{"role": "user", "content": "hi"}], max_tokens=10).text_stream)


def test_an_unreachable_api_for_exact_counts():
    import anthropic

    sdk = anthropic.Anthropic(api_key="k", base_url=f"http://127.0.0.1:{_closed_port()}", max_retries=0)
    refuses(lambda: convo.ExactCounter(sdk, model=MODEL).count_text("hi"), convo.TokenCountError, "reach")


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis//nohost", "", "redis://:pw@127.0.0.1:notaport/0"])
def test_invalid_redis_urls(url):
    refuses(lambda: RedisStore(url), convo.InvalidConfigError, "redis://")
    with pytest.raises((convo.InvalidConfigError, convo.CacheError)) as info:
        RedisCache(url)
    assert "redis://" in str(info.value) and "pw" not in str(info.value)


def test_an_unreachable_redis_store_is_a_typed_error():
    from convo import RateLimits

    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0")
    c = Client(api_key="k", model=MODEL, base_url="http://127.0.0.1:9", limits=RateLimits(rpm=10, store=store))
    with pytest.raises(convo.ConvoError) as info:
        c.create([{"role": "user", "content": "hi"}], max_tokens=10)
    assert "redis" in str(info.value).lower()


def test_bad_cache_settings():
    refuses(lambda: MemoryCache(max_items=0), convo.InvalidConfigError, "max_items")
    refuses(lambda: MemoryCache(ttl=-1), convo.InvalidConfigError, "ttl")


_NOT_FINITE = [float("nan"), float("inf"), True, "3"]
_SETTINGS = {  # setting: (its name in the error, make it, the values it refuses)
    "Budget(hold_ttl=)": ("hold_ttl", lambda v: convo.Budget(1.0, hold_ttl=v), [*_NOT_FINITE, -1, 0]),
    "Budget(period=)": ("period", lambda v: convo.Budget(1.0, period=v), [*_NOT_FINITE, -1, 0]),
    "CachedCounter(max_entries=)": ("max_entries", lambda v: convo.CachedCounter(max_entries=v), [*_NOT_FINITE, 0, 2.5]),
    "OfflineCounter(text_factor=)": ("text_factor", lambda v: convo.OfflineCounter(text_factor=v), [*_NOT_FINITE, 0]),
    # a correction per CJK character: negative is allowed (the default is)
    "OfflineCounter(cjk_factor=)": ("cjk_factor", lambda v: convo.OfflineCounter(cjk_factor=v), _NOT_FINITE),
    "RedisCache(timeout=)": ("timeout", lambda v: convo.RedisCache("redis://127.0.0.1:1/0", timeout=v), [*_NOT_FINITE, 0]),
}


@pytest.mark.parametrize(("setting", "bad"), [(k, v) for k, (_, _, bads) in _SETTINGS.items() for v in bads])
def test_numeric_settings_refuse_what_is_not_a_number_in_range_by_name(setting, bad):
    """Each setting names itself; none takes NaN, infinity, a bool, a string or a value out of range."""
    name, make, _ = _SETTINGS[setting]
    with pytest.raises(convo.InvalidConfigError, match=name):
        make(bad)


def test_a_budget_clock_must_be_callable():
    with pytest.raises(convo.InvalidConfigError, match="clock must be a callable"):
        convo.Budget(1.0, clock=12.0)
