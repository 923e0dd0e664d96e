"""How fast is client.batch, and does its memory stay flat on a generator of requests?

Each measurement runs in a fresh process against the zero-latency simulator in another process
(as ``convo sim`` would run). The requests come from a generator; convo pulls them as its window
frees. The peers are the usual hand-written fan-outs over the official SDK, which take the whole
input at once: ``ThreadPoolExecutor.map`` (submits every item up front) and ``asyncio.gather``
over a semaphore (creates every coroutine up front). All use 8 requests in flight.

Memory: ``tracemalloc`` peak during the batch, what the returned results still hold when it
returns ("retained"), and the difference ("transient": the window, queues, futures) — for every
runner at the smaller size, for convo also at the larger one (tracing slows Python ~4x, so that
run goes alongside the others). At both sizes: the growth of the process's peak RSS.

    .venv/bin/python bench/batch.py [--sizes 10000 100000] [--runners convo convo-async ...]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MODEL = "claude-sonnet-4-6"
CONCURRENCY = 8
HERE = Path(__file__).resolve().parent


#: Bytes of extra text per request in the "large requests" runs (set per run from the command line).
PAD = 0
FILLER = "Context that a real request would carry: a document, a history, a long instruction. "


def requests(n: int) -> Any:
    pad = (FILLER * (PAD // len(FILLER) + 1))[:PAD] if PAD else ""
    for i in range(n):
        text = f'say "item {i}"' + (f"\n\n{pad}{i}" if pad else "")
        yield {"messages": [{"role": "user", "content": text}], "max_tokens": 16}


# -- the runners: each returns the list of replies (convo: Results) --------------------------------


def convo_sync(url: str, n: int, **kw: Any) -> list[Any]:
    from convo import Client

    with Client(api_key="bench", base_url=url, model=MODEL, max_concurrency=CONCURRENCY) as client:
        return client.batch(requests(n), progress=False, **kw)


def convo_checkpoint(url: str, n: int) -> list[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return convo_sync(url, n, checkpoint=os.path.join(tmp, "bench.ckpt"))


def convo_async(url: str, n: int) -> list[Any]:
    from convo import AsyncClient

    async def main() -> list[Any]:
        async with AsyncClient(api_key="bench", base_url=url, model=MODEL, max_concurrency=CONCURRENCY) as client:
            return await client.batch(requests(n), progress=False)

    return asyncio.run(main())


def sdk_threads(url: str, n: int) -> list[Any]:
    import concurrent.futures

    import anthropic

    with (
        anthropic.Anthropic(base_url=url, api_key="bench") as sdk,
        concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool,
    ):
        return list(pool.map(lambda r: sdk.messages.create(model=MODEL, **r), requests(n)))


def sdk_gather(url: str, n: int) -> list[Any]:
    import anthropic

    async def main() -> list[Any]:
        gate = asyncio.Semaphore(CONCURRENCY)
        async with anthropic.AsyncAnthropic(base_url=url, api_key="bench") as sdk:

            async def one(r: dict[str, Any]) -> Any:
                async with gate:
                    return await sdk.messages.create(model=MODEL, **r)

            return await asyncio.gather(*(one(r) for r in requests(n)))

    return asyncio.run(main())


RUNNERS = {
    "convo": (convo_sync, "convo `Client.batch` (threads)"),
    "convo-async": (convo_async, "convo `AsyncClient.batch`"),
    "convo-checkpoint": (convo_checkpoint, "convo `Client.batch(checkpoint=...)` (SQLite, fsync per item)"),
    "sdk-threads": (sdk_threads, "SDK + `ThreadPoolExecutor.map`"),
    "sdk-gather": (sdk_gather, "SDK + `asyncio.gather` + semaphore"),
}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(name: str, url: str, n: int, trace: bool, pad: int) -> dict[str, Any]:
    """One run in this (fresh) process."""
    global PAD
    PAD = pad
    run = RUNNERS[name][0]
    run(url, 200)  # warm-up: imports, connections, caches
    gc.collect()
    rss0 = _rss()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    results = run(url, n)
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"runner": name, "n": n, "pad": pad, "seconds": seconds, "rate": n / seconds}
    if trace:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.update(peak=peak, retained=current)
    out["rss_growth"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    texts = [r.text if hasattr(r, "ok") else r.content[0].text for r in results]
    assert texts == [f"item {i}" for i in range(n)], "replies out of order or wrong"
    return out


def start_sim() -> tuple[subprocess.Popen[str], str]:
    code = (
        "from convo.sim import Simulator\n"
        "Simulator(port=0, record=0).serve_forever(announce=lambda s: print(s.split()[4], flush=True))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def command(name: str, url: str, n: int, trace: bool, pad: int = 0) -> list[str]:
    return [sys.executable, __file__, "--one", name, url, str(n), "1" if trace else "0", str(pad)]


def finish(proc: subprocess.Popen[str], what: str) -> dict[str, Any]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def child(name: str, url: str, n: int, trace: bool, pad: int = 0) -> dict[str, Any]:
    proc = subprocess.Popen(command(name, url, n, trace, pad), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return finish(proc, f"{name} at {n:,} items")


def mb(x: float) -> str:
    return f"{x / 1e6:,.1f}"


def report(rows: list[dict[str, Any]], traced: list[dict[str, Any]], sizes: list[int]) -> str:
    import anthropic

    import convo

    lines = [
        "# Batches: throughput and memory (`bench/batch.py`)",
        "",
        (f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
         f"convo {convo.__version__}, anthropic {anthropic.__version__}; "
         f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"),
        "",
        (f"Small generated requests (`say \"item N\"`, max_tokens 16), {CONCURRENCY} in flight, the zero-latency "
         "simulator in its own process, each run in a fresh process after a 200-item warm-up. Every run's "
         "replies are checked in order. Peers take the whole input at once (the usual hand-written fan-out); "
         "convo reads the generator as its window frees. The machine is shared, so rates are indicative; "
         "the ratios are what to read."),
        "",
        "## Throughput and peak RSS",
        "",
        "| runner | items | items/s | vs convo | peak RSS growth (MB) | per item (KB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = {r["n"]: r["rate"] for r in rows if r["runner"] == "convo"}
    for r in rows:
        ratio = f"{r['rate'] / base[r['n']]:.2f}x" if r["n"] in base else "-"
        lines.append(
            f"| {RUNNERS[r['runner']][1]} | {r['n']:,} | {r['rate']:,.0f} | {ratio} | {mb(r['rss_growth'])} | "
            f"{r['rss_growth'] / r['n'] / 1e3:.1f} |"
        )
    if traced:
        lines += [
            "",
            "## tracemalloc",
            "",
            ("peak = the most Python memory held during the batch; retained = what the returned replies hold "
             "when it returns; transient = peak - retained (the window, queues, futures, and the input when a "
             "runner holds all of it). Small requests as above, then requests carrying "
             f"{max(r['pad'] for r in traced):,} extra bytes of text each."),
            "",
            "| runner | items | request size | peak (MB) | retained (MB) | transient (MB) | transient per item (bytes) |",
            "|---|---:|---|---:|---:|---:|---:|",
        ]
        for r in traced:
            transient = r["peak"] - r["retained"]
            size = "small" if not r["pad"] else f"+{r['pad']:,} B"
            lines.append(
                f"| {RUNNERS[r['runner']][1]} | {r['n']:,} | {size} | {mb(r['peak'])} | {mb(r['retained'])} | {mb(transient)} | "
                f"{transient / r['n']:,.0f} |"
            )
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        lines += ["", f"Growth of peak RSS from {small:,} to {big:,} items (x{big // small} the items):", ""]
        for name in RUNNERS:
            got = {r["n"]: r["rss_growth"] for r in rows if r["runner"] == name}
            if small in got and big in got:
                lines.append(f"- {RUNNERS[name][1]}: {mb(got[small])} MB -> {mb(got[big])} MB")
    lines += [
        "",
        ("What grows with the number of items is the returned list itself (one `anthropic.types.Message` "
         "per item, a few KB each); the rest stays the size of the window. To keep even that flat, "
         "split a huge job into slices with one checkpoint and drop each slice's results after use."),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--pad", type=int, default=4000, help="bytes per request in the large-request runs")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, url, n, trace, pad = args.one
        print(json.dumps(measure(name, url, int(n), trace == "1", int(pad))))
        return
    proc, url = start_sim()
    rows, traced = [], []
    big = max(args.sizes)
    # tracing is slow: the largest size is traced for convo only, alongside the other runs
    background = None
    if not args.no_trace and big > min(args.sizes) and "convo" in args.runners:
        background = subprocess.Popen(
            command("convo", url, big, True), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    try:
        for n in args.sizes:
            for name in args.runners:
                if name == "convo-checkpoint" and n > min(args.sizes):
                    continue
                rows.append(child(name, url, n, trace=False))
                r = rows[-1]
                print(f"{name:18} {n:>8,} items  {r['rate']:8,.0f}/s  peak RSS +{mb(r['rss_growth'])} MB", flush=True)
        if not args.no_trace:
            n = min(args.sizes)
            for pad in (0, args.pad):
                for name in args.runners:
                    if name == "convo-checkpoint" or (pad and name == "convo-async"):
                        continue
                    traced.append(child(name, url, n, trace=True, pad=pad))
                    r = traced[-1]
                    print(f"{name:18} {n:>8,} traced pad {pad}  peak {mb(r['peak'])} MB  retained {mb(r['retained'])} MB", flush=True)
            if background is not None:
                traced.append(finish(background, f"convo traced at {big:,} items"))
                background = None
                r = traced[-1]
                print(f"convo              {big:>8,} traced  peak {mb(r['peak'])} MB  retained {mb(r['retained'])} MB", flush=True)
    finally:
        if background is not None:
            background.kill()
        proc.kill()
    text = report(rows, traced, sorted(set(args.sizes)))
    print()
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "batch.md").write_text(text)


if __name__ == "__main__":
    main()
