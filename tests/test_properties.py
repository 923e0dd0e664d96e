"""Invariants of fitting, over random histories (hypothesis)."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convo
from convo import ContextOverflowError, Conversation, check_history, count_tokens
from convo.tokens import CachedCounter, OfflineCounter, calibration_of

WORDS = ["the", "sky", "is", "blue", "because", "light", "scatters", "tool", "result", "data", "Python"]
HAN = "天空为什么是蓝色的因为光线散射我们今天学习中文和编程"


@st.composite
def texts(draw):
    """English or Chinese text of 1-60 words/characters (drawn as a length and a seed: fast)."""
    n, seed, chinese = draw(st.integers(1, 60)), draw(st.integers(0, 2**16)), draw(st.booleans())
    rng = random.Random(seed)
    if chinese:
        return "".join(rng.choice(HAN) for _ in range(n)) + "。"
    return " ".join(rng.choice(WORDS) for _ in range(n))


@st.composite
def histories(draw):
    """A list of (message, pinned) that follows the API's rules, with tool calls and pins."""
    out = []
    tool = 0
    for _ in range(draw(st.integers(1, 25))):
        out.append(({"role": "user", "content": draw(texts())}, draw(st.booleans()) and draw(st.booleans())))
        for _ in range(draw(st.integers(0, 2))):  # tool round trips inside the turn
            tool += 1
            tid = f"toolu_{tool}"
            out.append(
                (
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": draw(texts())},
                            {"type": "tool_use", "id": tid, "name": "lookup", "input": {"q": draw(texts())}},
                        ],
                    },
                    False,
                )
            )
            out.append(
                (
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": tid, "content": draw(texts())},
                        ],
                    },
                    False,
                )
            )
        if draw(st.integers(0, 4)):  # usually answered; sometimes the user speaks last
            out.append(({"role": "assistant", "content": draw(texts())}, False))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    system=st.one_of(st.none(), texts()),
    budget=st.one_of(st.integers(1, 400), st.integers(400, 5000), st.integers(5000, 200_000)),
    max_tokens=st.integers(1, 4096),
    ratio=st.sampled_from([None, 0.7, 1.4]),
)
def test_request_is_valid_and_within_budget_or_overflows(history, system, budget, max_tokens, ratio):
    counter = None  # the process-wide counter, as taught by whatever ran before
    if ratio is not None:  # or one a response has taught that the server counts more, or less
        counter = CachedCounter(OfflineCounter())
        calibration_of(counter).observe("claude-sonnet-4-6", 1000, int(1000 * ratio))
    try:
        conv = Conversation(system, model="claude-sonnet-4-6", budget=budget, counter=counter)
    except convo.InvalidConfigError:
        return  # budgets smaller than the system prompt are refused at construction
    for message, pinned in history:
        conv.add(message, pinned=pinned)
    try:
        req = conv.request(max_tokens=max_tokens)
    except ContextOverflowError as err:
        assert err.needed > budget == err.allowed
        return
    sent = req["messages"]
    check_history(sent)  # first turn is user, pairs intact, no empty content, valid blocks
    assert sent[0]["role"] == "user"
    used = count_tokens(sent, system=req.get("system"), counter=conv.counter)
    # the estimate corrected by what the model's responses taught the (process-wide) counter
    cal = calibration_of(conv.counter)
    factor = cal.factor(conv.model) if cal is not None else 1.0
    assert used * factor + max_tokens <= budget + 1e-6
    assert used == conv.tokens or max_tokens != conv.max_tokens
    # The newest turn and every pinned message are always sent, in history order.
    all_api = [m.to_api() for m in conv.messages]
    for i in conv.pinned:
        assert all_api[i] in sent
    assert sent[-1] == all_api[-1]
    remaining = iter(all_api)  # `sent` is a subsequence of the history, in order
    assert all(any(m == h for h in remaining) for m in sent)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12).filter(
        lambda t: (
            t
            not in (
                "text",
                "image",
                "document",
                "thinking",
                "redacted_thinking",
                "compaction",
                "tool_use",
                "tool_result",
            )
            and not t.endswith("_tool_result")
            and not t.endswith("_tool_use")
            and t not in ("search_result", "container_upload")
        )
    ),
    fields=st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k != "type"), JSON, max_size=4),
    role=st.sampled_from(["user", "assistant"]),
)
def test_an_unknown_block_round_trips_verbatim(kind, fields, role, tmp_path_factory):
    """Whatever a newer API sends, convo hands it back exactly: in the message, the request and a save."""
    block = {"type": kind, **fields}
    history = [{"role": "user", "content": "q"}, {"role": role, "content": [block, {"type": "text", "text": "x"}]}]
    if role == "assistant":
        history.append({"role": "user", "content": "more"})
    assert [m.to_api() for m in check_history(history)] == history
    conv = Conversation(model="claude-sonnet-4-6", budget=100_000)
    conv.extend(history)
    assert conv.request()["messages"] == history
    path = tmp_path_factory.mktemp("c") / "c.json"
    conv.save(path)
    assert Conversation.load(path).request()["messages"] == history
