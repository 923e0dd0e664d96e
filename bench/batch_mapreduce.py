"""The same long document through sync map-reduce and through the Message Batches API.

``samples/python-docs.txt`` is map-reduced as ``convo summarize`` does it (2,000-token chunks,
the CLI's instruction, ``max_tokens=1024``) twice on the simulator: ``mode="sync"``
(``messages.create`` per chunk, paced by rate limits) and ``mode="batch"`` (the map step and the
final combine as Message Batches). Both run in virtual time: the simulator and the client share a
``ManualClock`` that moves only when the client sleeps (rate-limit waits, batch polling), so the
wall time reported is on the simulator's clock and is the same on any machine.

The assumptions are the bench's settings, not facts about the API: requests take no time on that
clock (the rate limits set the sync pace; illustrative limits of ``RPM`` / ``ITPM`` / ``OTPM``
below, check your own in the Console), and a batch takes ``BATCH_SECONDS`` (the docs say most
batches end within an hour, and every batch within 24 h). Costs are the catalogue's prices for the
simulator's token counts; batch mode reports its cost and what the same tokens cost synchronously.

Run: ``.venv/bin/python bench/batch_mapreduce.py`` (``--quick``: a smaller smoke run that writes
nothing). Writes ``bench/results/batch_mapreduce.md``. Takes well under a minute.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import _machine

from convo import Client, map_reduce
from convo.cli.document import INSTRUCTION
from convo.ratelimit import RateLimits
from convo.sim import ManualClock, Simulator

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "python-docs.txt"
RESULTS = Path(__file__).parent / "results" / "batch_mapreduce.md"
MODEL = "claude-sonnet-4-6"
RPM, ITPM, OTPM = 50, 30_000, 8_000
BATCH_SECONDS = 1800.0


def hms(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run(text: str, mode: str) -> dict[str, Any]:
    clock = ManualClock()
    with Simulator(seed=0, clock=clock, batch_seconds=BATCH_SECONDS, rpm=RPM, input_tpm=ITPM, output_tpm=OTPM) as sim:
        # One request at a time: with no time per request on this clock, the limits alone set the
        # pace, and concurrent sleeps on one shared clock would add up instead of overlapping.
        client = Client(api_key="bench", base_url=sim.base_url, model=MODEL, max_concurrency=1, clock=clock,
                        sleep=clock.advance, limits=RateLimits(rpm=RPM, input_tpm=ITPM, output_tpm=OTPM))
        start, real = clock.now, time.perf_counter()
        result = map_reduce(text, INSTRUCTION, client=client, chunk_tokens=2000, max_tokens=1024, progress=False,
                            mode=mode)
        real = time.perf_counter() - real
        paths = [r.path for r in sim.requests]
    return {
        "mode": mode, "chunks": len(result.partials), "requests": result.usage["requests"],
        "posts": paths.count("/v1/messages"), "batches": paths.count("/v1/messages/batches"),
        "input": result.usage["input_tokens"], "output": result.usage["output_tokens"],
        "wall": clock.now - start, "real": real, "cost": result.cost, "sync_cost": result.sync_cost,
        "ok": result.ok, "retrieves": sum(p.startswith("/v1/messages/batches/") and not p.endswith("/results")
                                          for p in paths),
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| mode | requests | sent as | input + output tokens | wall time (simulator clock) | cost | same tokens via messages.create | real seconds |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        sent = f"{r['posts']} messages.create" if r["mode"] == "sync" else f"{r['batches']} batches, {r['retrieves']} polls"
        lines.append(
            f"| {r['mode']} | {r['requests']} | {sent} | {r['input']:,} + {r['output']:,} | {hms(r['wall'])} | "
            f"${r['cost']:.4f} | ${r['sync_cost']:.4f} | {r['real']:.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the document; writes nothing")
    args = parser.parse_args()
    text = SAMPLE.read_text(encoding="utf-8")
    if args.quick:
        text = text[: len(text) // 10]
    rows = [run(text, "sync"), run(text, "batch")]
    assert all(r["ok"] for r in rows), "a chunk failed"
    sync, batch = rows
    lines = [
        f"# Map-reduce: sync vs Message Batches ({SAMPLE.name}{', quick' if args.quick else ''})",
        "",
        _machine.machine(),
        "",
        (f"{sync['chunks']} chunks of at most 2,000 tokens, `max_tokens=1024`, {MODEL} prices for the simulator's "
        f"tokens (SIMULATED). Sync: limits of {RPM} RPM, {ITPM:,} ITPM, {OTPM:,} OTPM (illustrative), requests "
        f"taking no time on the clock. Batch: each batch takes {BATCH_SECONDS / 60:.0f} min (assumed), polled with "
        "backoff."),
        "",
        *table(rows),
        "",
        f"Batch mode costs {batch['cost'] / sync['cost']:.0%} of sync mode and takes "
        + (f"{batch['wall'] / sync['wall']:.1f}x its wall time" if sync["wall"] else "longer (sync fit the limits' burst)")
        + f" here; its own sync-price figure "
        f"(${batch['sync_cost']:.4f}) matches the sync run's cost (${sync['cost']:.4f}) because the token counts "
        "are the same.",
    ]
    print("\n".join(lines))
    if not args.quick:
        RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"\nwrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
