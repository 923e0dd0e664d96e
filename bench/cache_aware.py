"""Prompt-cache hits and cost of a long chat with tools: convo's defaults vs a per-turn window.

A 200-turn chat (user messages of 120-320 words, a ~1,500-token system prompt, a lookup tool
attached to every request, the offline model's replies) runs through ``Conversation.send``
against the simulator, which models prompt caching like the API (breakpoints, 1,024-token
minimum for Sonnet, 5-minute TTL refreshed on each hit; 30 s of virtual time between turns).
Every fourth turn is a tool loop: the user asks for two records, the model calls the tool twice
in parallel, and the results go back in one user turn for the answer (two requests; written
out by hand here: ``send`` with the results). The budget (12,000 tokens, max_tokens 1,024)
forces trimming after ~25 turns. Every side uses the same history, tools and budget:

- convo defaults: ``Conversation(system, budget=..., client=client)`` and nothing else:
  prompt caching is on by default with a client (breakpoints on the system prompt, the
  previous request's end and the newest message), and the default window then cuts in steps
  (``SlidingWindow(low_water=0.6)``: drop a block of old turns when the budget is reached,
  down to 60%).
- naive + cache: ``SlidingWindow()`` (drop the oldest turn per turn, as most libraries do)
  with the same breakpoints.
- naive, no cache: ``SlidingWindow()``, ``prompt_cache=False``: the naive window.
- convo summarize: ``Summarize(low_water=0.6)`` (summaries by the offline model; their calls
  are counted in the cost, from the client's ``stats``).
- convo defaults, default budget: no ``budget`` either, so the model's whole context window
  (1M tokens), against the naive window at that budget (which then keeps everything too).

Numbers come from the receipts (``conv.receipts``), i.e. from the simulator's ``usage`` and
convo's price table (claude-sonnet-4-6: $3/M input, $3.75/M 5-minute write, $0.30/M read,
$15/M output). Run: ``.venv/bin/python bench/cache_aware.py`` (``--turns N``). Writes
``bench/results/cache_aware.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import sys
from pathlib import Path
from typing import Any

from convo import Client, Conversation, SlidingWindow, Summarize
from convo.sim import ManualClock, Simulator

MODEL = "claude-sonnet-4-6"
BUDGET = 12_000
MAX_TOKENS = 1024
WORDS = ["cache", "prefix", "budget", "window", "summary", "token", "request", "history", "turn", "model", "reply", "latency", "cost", "index", "archive", "drawer", "record", "river", "mountain", "garden", "library", "engine", "signal", "market", "harbor", "lantern", "planet", "orbit", "castle", "bridge", "forest", "meadow", "canyon", "island", "valley", "desert", "glacier", "volcano"]


def system_prompt() -> str:
    rng = random.Random("system")
    rules = [f"Rule {i}: when asked about {rng.choice(WORDS)}, mention the {rng.choice(WORDS)} "
             f"and the {rng.choice(WORDS)} before anything else." for i in range(80)]  # fmt: skip
    return "You are a careful assistant for the archive team.\n" + "\n".join(rules)


def user_messages(turns: int) -> list[str]:
    rng = random.Random(7)
    out = []
    for t in range(turns):
        n = rng.randint(120, 320)
        out.append(f"Turn {t}. " + " ".join(rng.choice(WORDS) for _ in range(n)) + ".")
    return out


TOOLS = [{
    "name": "lookup_record",
    "description": "The archive's record for a drawer: what it holds and where it came from.",
    "input_schema": {"type": "object", "properties": {"drawer": {"type": "string"}}, "required": ["drawer"]},
}]  # fmt: skip
TOOL_EVERY = 4


def lookup_record(drawer: str) -> str:
    rng = random.Random(drawer)
    return f"Drawer {drawer} holds " + " ".join(rng.choice(WORDS) for _ in range(40)) + "."


def tool_turn(conv: Conversation, t: int) -> int:
    """One tool loop: ask, run the calls the reply makes, send their results; the requests made."""
    conv.send(f"Turn {t}. Please use lookup_record for drawer {t} and drawer {t + 100}.", tools=TOOLS)
    last = conv.messages[-1]
    uses = [b for b in last.content if getattr(b, "type", "") == "tool_use"] if not isinstance(last.content, str) else []
    if not uses:
        return 1
    results = [{"type": "tool_result", "tool_use_id": b.id, "content": lookup_record(str(b.input["drawer"]))}
               for b in uses]  # fmt: skip
    conv.send(results, tools=TOOLS)
    return 2


def run(label: str, make: Any, turns: int) -> dict[str, Any]:
    clock = ManualClock()
    with Simulator(seed=0, clock=clock) as sim:
        client = Client(api_key="bench", base_url=sim.base_url, model=MODEL, sleep=lambda s: None)
        conv = make(client)
        loops = 0
        for t, text in enumerate(user_messages(turns)):
            if t % TOOL_EVERY == TOOL_EVERY - 1:
                loops += tool_turn(conv, t) == 2
            else:
                conv.send(text, tools=TOOLS)
            clock.advance(30)
        extra = [r for r in sim.requests if r.path == "/v1/messages"][len(conv.receipts):]
    rs = conv.receipts
    total_in = sum(r.input_tokens or 0 for r in rs)
    read = sum(r.cache_read or 0 for r in rs)
    write = sum(r.cache_write or 0 for r in rs)
    summaries = len(extra)  # summarizing calls, made without a receipt
    cost = client.stats.cost_usd  # every call, summaries included
    if not summaries:
        assert abs(cost - sum(r.cost or 0 for r in rs)) < 1e-9, "receipts and client stats disagree"
    return {
        "label": label,
        "tool_loops": loops,
        "requests": len(rs),
        "summary_calls": summaries,
        "input": total_in,
        "avg_context": total_in / len(rs),
        "read": read,
        "write": write,
        "hit": read / total_in if total_in else 0.0,
        "cost": cost,
        "example": str(rs[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    system = system_prompt()

    def conv(client: Any, **kw: Any) -> Conversation:
        kw.setdefault("budget", BUDGET)
        return Conversation(system, max_tokens=MAX_TOKENS, client=client, **kw)

    sides = [
        ("convo defaults (caching on, stepped window)", lambda c: conv(c)),
        ("naive per-turn window + same breakpoints", lambda c: conv(c, strategy=SlidingWindow(), prompt_cache=True)),
        ("naive per-turn window, no cache", lambda c: conv(c, strategy=SlidingWindow(), prompt_cache=False)),
        ("convo Summarize(low_water=0.6)", lambda c: conv(c, strategy=Summarize(low_water=0.6))),
        ("convo defaults, default budget (1M window)", lambda c: conv(c, budget=None)),
        ("naive window, no cache, 1M budget", lambda c: conv(c, budget=None, strategy=SlidingWindow(),
                                                              prompt_cache=False)),
    ]  # fmt: skip
    rows = [run(label, make, args.turns) for label, make in sides]
    base = rows[1]["cost"]
    naive = {id(r): rows[5 if i >= 4 else 2]["cost"] for i, r in enumerate(rows)}
    lines = [
        "# Prompt-cache hits and cost over a long chat",
        "",
        (
            f"{args.turns} turns through `Conversation.send` against the simulator's prompt cache, every "
            f"{TOOL_EVERY}th a tool loop (two parallel calls, then the answer); budget {BUDGET:,} tokens "
            f"(max_tokens {MAX_TOKENS:,}) unless the row says 1M, system prompt ~1,500 tokens, {MODEL} prices. "
            "See the docstring of `bench/cache_aware.py` for the set-up."
        ),
        "",
        (
            "| strategy | requests (tool loops) | input tokens | avg context | read from cache | written | "
            "cost (USD) | USD per M input | vs naive+cache | vs the naive window (no cache, same budget) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['requests']} ({r['tool_loops']}) (+{r['summary_calls']} summary) | {r['input']:,} | "
            f"{r['avg_context']:,.0f} | {r['hit']:.1%} | {r['write']:,} | {r['cost']:.4f} | "
            f"{r['cost'] / r['input'] * 1e6:.2f} | "
            f"{base / r['cost']:.2f}x cheaper | {naive[id(r)] / r['cost']:.2f}x cheaper |"
        )
    lines += [
        "",
        (
            "The stepped window sends less context on average (it drops to 60% of the budget, then "
            "grows back), so part of the saving is fewer tokens; the per-token column isolates the "
            "cache effect. Cost includes output tokens."
        ),
        "",
        "Last receipt of each run:",
        "",
        *[f"- {r['label']}: `{r['example']}`" for r in rows],
        "",
        (
            f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
            f"{dt.date.today().isoformat()}. Deterministic: the same numbers on every run."
        ),
    ]
    text = "\n".join(lines) + "\n"
    out = Path(__file__).parent / "results" / "cache_aware.md"
    out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
