"""Append one message and fit: convo's Conversation vs langchain-core's trim_messages.

Both sides see the same history (alternating user/assistant messages of 20-200 words, some in
Chinese, fixed seed), the same system prompt, the same budget and the same token counter
(convo's OfflineCounter: tiktoken cl100k_base, calibrated, + 4 tokens per message).

- convo: ``conv.add_user(text)`` then ``conv.request(max_tokens=1024)``. ``conv.undo()``
  afterwards keeps the history length constant; it is timed separately and NOT included.
- langchain: ``msgs.append(HumanMessage(text))`` then ``trim_messages(msgs, strategy="last",
  start_on="human", include_system=True, token_counter=...)``, where the counter sums the
  same per-message counts, re-tokenizing on every call (what a LangChain user writes).
  ``msgs.pop()`` afterwards is not timed.

Every new message is unique, so no cache can answer it from an earlier iteration. The 1M budget
(the default on a 1M-token model) keeps the whole history: convo keeps each message's API dict
from when it was added, so a turn costs the same at 1,000 and 10,000 messages (target: at most
1 ms per turn).

Run: ``make bench`` or ``.venv/bin/python bench/trim.py`` (``--quick`` for a smoke run,
``--profile`` to print where convo spends its time). Writes ``bench/results/trim.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _machine
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, trim_messages

import convo
from convo import Conversation, OfflineCounter
from convo.tokens import MESSAGE_OVERHEAD, REQUEST_OVERHEAD

SEED = 20261123
MODEL = "claude-sonnet-4-6"
MAX_TOKENS = 1024
SIZES = (1_000, 10_000)
BUDGETS = (8_000, 100_000, 1_000_000)  # 1M: a conversation's default budget on a 1M-window model
RESULTS = Path(__file__).parent / "results" / "trim.md"

SYSTEM = (
    "You are a patient senior engineer helping a colleague. Answer precisely, show short code "
    "when it helps, say when you are unsure, and keep answers under 300 words unless asked."
)

EN = [
    "I tried running the migration again but it still fails on the orders table.",
    "The error message says the column already exists, which makes no sense to me.",
    "Could you explain why the connection pool runs out of connections under load?",
    "We deploy twice a day, and the rollback script has not been tested in months.",
    "My guess is that the cache is returning stale values after the config reload.",
    "Here is the stack trace from the worker that crashed around midnight.",
    "The simplest fix is to make the handler idempotent and retry on conflict.",
    "You can check this by logging the request id at both ends of the queue.",
    "If the test passes locally but fails in CI, look at the timezone and the locale first.",
    "A binary search over the running totals finds the cut point in logarithmic time.",
    "Keep the public function small and push the edge cases into a helper with a clear name.",
    "That design works, but it couples the parser to the storage format, which will hurt later.",
    "I would measure before optimizing; the profile often points somewhere unexpected.",
    "The customer reported that exports over ten thousand rows time out after thirty seconds.",
    "We could stream the rows instead of building the whole file in memory.",
    "Our on-call rotation is five people, so every alert that wakes someone up should matter.",
    "Please rewrite this paragraph so that a new team member can follow it.",
    "The benchmark numbers changed after the upgrade, mostly in the slowest percentile.",
    "Use a context manager so the file is closed even when the parser raises.",
    "Thanks, that worked, but now the second request returns an empty list.",
    "The schema allows null here, although the frontend assumes the field is always set.",
    "Let us write the test first: given an empty history, the request should be rejected.",
    "Dinner plans aside, I still need to finish the quarterly report by Friday afternoon.",
    "The garden needs watering every other day while the weather stays this hot.",
    "Start with a small prototype, show it to two users, and only then build the real thing.",
    "Memory usage grows by about forty megabytes per hour, which looks like a slow leak.",
    "Sorting the keys makes the output deterministic, so the snapshot tests stop flaking.",
    "In short, the queue is fine; the consumer is slow because it opens a session per message.",
]

ZH = [
    "我昨天又跑了一遍迁移脚本，还是在订单表那里报错。",
    "错误信息说这一列已经存在，但我确认过数据库里并没有。",
    "能不能解释一下为什么在高并发下连接池会被耗尽？",
    "最简单的办法是让处理函数幂等，然后在冲突时重试。",
    "如果本地测试通过而持续集成失败，先检查时区和语言环境。",
    "先做一个小原型，给两个用户看看，然后再决定要不要正式开发。",
    "内存每小时大约增长四十兆，看起来像是一个缓慢的泄漏。",
    "周末我们去山里徒步，天气很好，只是下山的路比想象中难走。",
    "请把这段说明改写得让新同事也能看懂。",
    "导出超过一万行的数据时，客户反映三十秒后就会超时。",
    "我们可以把结果分批写出，而不是先在内存里拼出整个文件。",
    "谢谢，这个办法有效，不过第二次请求返回了一个空列表。",
]


# -- data --------------------------------------------------------------------------------


def make_text(rng: random.Random) -> str:
    """A message of 20-200 words; about one in ten is Chinese (40-300 characters)."""
    if rng.random() < 0.1:
        target = rng.randint(40, 300)
        out = ""
        while len(out) < target:
            out += rng.choice(ZH)
        return out[:target].rstrip("，") + "。"
    target = rng.randint(20, 200)
    words: list[str] = []
    while len(words) < target:
        words.extend(rng.choice(EN).split())
    return " ".join(words[:target]).rstrip(".,;:?") + "."


def make_history(n: int, seed: int = SEED) -> list[dict[str, str]]:
    """``n`` messages alternating user/assistant, starting with user and ending with assistant."""
    assert n % 2 == 0
    rng = random.Random(seed)
    return [{"role": ("user", "assistant")[i % 2], "content": make_text(rng)} for i in range(n)]


def new_texts(seed: int = SEED + 1) -> Iterator[str]:
    """New user messages, each one different (a numbered tag), so no count is ever cached."""
    rng = random.Random(seed)
    for k in itertools.count():
        yield f"{make_text(rng)} (#{k})"


def to_langchain(history: list[dict[str, str]]) -> list[BaseMessage]:
    kinds = {"user": HumanMessage, "assistant": AIMessage}
    return [SystemMessage(SYSTEM)] + [kinds[m["role"]](m["content"]) for m in history]


def langchain_counter(counter: OfflineCounter) -> Callable[[list[BaseMessage]], int]:
    """convo's per-message count (text + MESSAGE_OVERHEAD), re-tokenizing on every call."""

    def count(messages: list[BaseMessage]) -> int:
        return sum(MESSAGE_OVERHEAD + counter.count_text(m.content) for m in messages)

    return count


def memo_langchain_counter(counter: OfflineCounter) -> Callable[[list[BaseMessage]], int]:
    """The same counts, remembered by content: a careful LangChain user's counter."""
    memo: dict[str, int] = {}

    def count(messages: list[BaseMessage]) -> int:
        total = 0
        for m in messages:
            n = memo.get(m.content)
            if n is None:
                n = memo[m.content] = MESSAGE_OVERHEAD + counter.count_text(m.content)
            total += n
        return total

    return count


# -- timing ------------------------------------------------------------------------------


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def bench_convo(history: list[dict[str, str]], budget: int, texts: Iterator[str], iters: int, warmup: int) -> dict[str, Any]:
    conv = Conversation(SYSTEM, model=MODEL, budget=budget)
    for m in history:
        conv.add(m)
    total, add, fit, undo = [], [], [], []
    request: dict[str, Any] = {}
    gc.collect()
    gc.disable()
    try:
        for i in range(warmup + iters):
            text = next(texts)
            t0 = time.perf_counter()
            conv.add_user(text)
            t1 = time.perf_counter()
            request = conv.request(max_tokens=MAX_TOKENS)
            t2 = time.perf_counter()
            conv.undo()
            t3 = time.perf_counter()
            if i >= warmup:
                total.append(t2 - t0)
                add.append(t1 - t0)
                fit.append(t2 - t1)
                undo.append(t3 - t2)
    finally:
        gc.enable()
    assert len(conv) == len(history)
    # The kept messages for one more (untimed) append, to compare with langchain's.
    text = next(texts)
    conv.add_user(text)
    request = conv.request(max_tokens=MAX_TOKENS)
    conv.undo()
    return {
        "times": total,
        "add": add,
        "fit": fit,
        "undo": undo,
        "check_text": text,
        "kept": [m["content"] for m in request["messages"]],
        "tokens": conv.counter.count_request(
            [convo.to_message(m) for m in request["messages"]], system=SYSTEM
        ),
    }


def bench_langchain(
    history: list[dict[str, str]],
    budget: int,
    texts: Iterator[str],
    iters: int,
    warmup: int,
    counter: Callable[[list[BaseMessage]], int],
    check_text: str,
) -> dict[str, Any]:
    msgs = to_langchain(history)
    # convo's budget covers the request framing too (REQUEST_OVERHEAD); give langchain the
    # same room so both cut at the same place.
    limit = budget - MAX_TOKENS - REQUEST_OVERHEAD

    def fit(text: str) -> list[BaseMessage]:
        msgs.append(HumanMessage(text))
        return trim_messages(
            msgs, max_tokens=limit, strategy="last", token_counter=counter, start_on="human", include_system=True
        )

    times = []
    gc.collect()
    gc.disable()
    try:
        for i in range(warmup + iters):
            text = next(texts)
            t0 = time.perf_counter()
            fit(text)
            t1 = time.perf_counter()
            msgs.pop()
            if i >= warmup:
                times.append(t1 - t0)
    finally:
        gc.enable()
    kept = fit(check_text)
    msgs.pop()
    assert isinstance(kept[0], SystemMessage)
    return {
        "times": times,
        "kept": [m.content for m in kept[1:]],
        "tokens": REQUEST_OVERHEAD + counter(kept),
    }


# -- report ------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def machine() -> str:
    return _machine.machine("langchain-core", "tiktoken")



def plan(n: int, quick: bool) -> dict[str, tuple[int, int]]:
    """(timed calls, warm-up calls) per side: langchain's plain counter takes ~0.5 s a call at 10,000."""
    if quick:
        return {"convo": (30, 5), "langchain": (2, 1), "memo": (5, 1)}
    return {"convo": (300, 30), "langchain": (20, 3) if n < 10_000 else (5, 1), "memo": (50, 3)}


def run(quick: bool) -> str:
    texts = new_texts()
    counter = OfflineCounter()
    rows, memo_rows, detail, checks = [], [], [], []
    growth: dict[int, dict[int, tuple[float, float]]] = {}
    for n in SIZES:
        history = make_history(n)
        calls = plan(n, quick)
        for budget in BUDGETS:
            print(f"history {n:,}, budget {budget:,} ...", file=sys.stderr, flush=True)
            c = bench_convo(history, budget, texts, *calls["convo"])
            lc = bench_langchain(history, budget, texts, *calls["langchain"], langchain_counter(counter), c["check_text"])
            memo = bench_langchain(
                history, budget, texts, *calls["memo"], memo_langchain_counter(counter), c["check_text"]
            )
            c_med, lc_med, memo_med = (statistics.median(x["times"]) for x in (c, lc, memo))
            growth.setdefault(budget, {})[n] = (c_med, lc_med)
            rows.append(
                f"| {n:,} | {budget:,} | {ms(c_med)} | {ms(p95(c['times']))} | {ms(lc_med)} | {lc_med / c_med:,.0f}x |"
            )
            memo_rows.append(f"| {n:,} | {budget:,} | {ms(memo_med)} | {memo_med / c_med:,.1f}x |")
            detail.append(
                f"| {n:,} | {budget:,} | {ms(statistics.median(c['add']))} | {ms(statistics.median(c['fit']))} "
                f"| {ms(statistics.median(c['undo']))} | {calls['convo'][0]} + {calls['convo'][1]} "
                f"| {calls['langchain'][0]} + {calls['langchain'][1]} | {calls['memo'][0]} + {calls['memo'][1]} |"
            )
            same = c["kept"] == lc["kept"] == memo["kept"]
            checks.append(
                f"| {n:,} | {budget:,} | {len(c['kept'])} | {len(lc['kept'])} | {c['tokens']:,} | {lc['tokens']:,} "
                f"| {'yes' if same else 'NO'} |"
            )
            if not same:
                print(f"WARNING: kept messages differ at n={n}, budget={budget}", file=sys.stderr)

    growth_lines = []
    small, big = SIZES
    for budget, by_n in growth.items():
        (c1, l1), (c2, l2) = by_n[small], by_n[big]
        growth_lines.append(
            f"- budget {budget:,}: convo {ms(c1)} ms at {small:,} -> {ms(c2)} ms at {big:,} ({c2 / c1:.2f}x); "
            f"langchain {ms(l1)} -> {ms(l2)} ms ({l2 / l1:.1f}x)"
        )

    return "\n".join(
        [
            "# Append one message and fit: convo vs langchain-core `trim_messages`",
            "",
            f"{machine()}{' — QUICK RUN, too few iterations to trust' if quick else ''}",
            "",
            (f"Per call: append one new user message, then fit the history into the budget "
             f"(max_tokens {MAX_TOKENS}, same OfflineCounter on both sides). convo = `add_user` + "
             f"`request`; `undo` is excluded (shown below). langchain = append a `HumanMessage` + "
             f"`trim_messages(strategy='last', start_on='human', include_system=True)` with a counter that "
             f"re-tokenizes the messages it is given. Every new message is unique, so no cache can answer "
             f"it. Timing: `time.perf_counter`, gc disabled, warm-up calls first (counts in the last table)."),
            "",
            "| history (messages) | budget (tokens) | convo median ms | convo p95 ms | langchain median ms | langchain / convo |",
            "|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "Growth from 1,000 to 10,000 messages (convo should stay flat; its cost follows what is sent):",
            "",
            *growth_lines,
            "",
            "Same result? Messages kept (after the system prompt) and estimated input tokens:",
            "",
            "| history | budget | convo kept | langchain kept | convo tokens | langchain tokens | identical messages |",
            "|---:|---:|---:|---:|---:|---:|:--:|",
            *checks,
            "",
            ("Fairness check — langchain with a counter that memoizes per-message counts by content. It "
             "still walks the whole history each call and returns message objects; convo's `request` "
             "returns the API dicts ready to send (each made once, when its message was added):"),
            "",
            "| history | budget | langchain (memo) median ms | langchain (memo) / convo |",
            "|---:|---:|---:|---:|",
            *memo_rows,
            "",
            ("convo split (median ms): `add_user`, `request`, and the excluded `undo`; then timed + warm-up "
             "calls per side:"),
            "",
            "| history | budget | add_user | request | undo | convo calls | langchain calls | memo calls |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            *detail,
            "",
        ]
    )


def profile() -> None:
    """Where convo's append-and-fit spends its time (10,000 messages, budget 100,000)."""
    history = make_history(SIZES[-1])
    conv = Conversation(SYSTEM, model=MODEL, budget=BUDGETS[-1])
    for m in history:
        conv.add(m)
    texts = new_texts()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(200):
        conv.add_user(next(texts))
        conv.request(max_tokens=MAX_TOKENS)
        conv.undo()
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke test, not a measurement")
    parser.add_argument("--profile", action="store_true", help="profile convo's append-and-fit and exit")
    args = parser.parse_args()
    if args.profile:
        profile()
        return
    report = run(args.quick)
    print(report)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(report, encoding="utf-8")
        print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
