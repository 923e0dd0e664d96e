"""How fast is the simulator? Non-streaming requests per second, and concurrent open streams.

The simulator runs in its own process (as ``convo sim`` would); the load comes from this one:
a light asyncio client on keep-alive connections (aiohttp), then the official SDK for
reference (its own overhead dominates there). Targets on 2 cores: >= 2,000 requests/s and
500 concurrent streams.

    .venv/bin/python bench/sim_throughput.py [--seconds 5] [--concurrency 64] [--streams 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

import aiohttp
import anthropic

MODEL = "claude-sonnet-4-6"
HEADERS = {"x-api-key": "bench", "anthropic-version": "2023-06-01", "content-type": "application/json"}
PROMPTS = [
    "Hello there, can you help me plan a trip to Kyoto in spring?",
    "What is the capital of Australia and why was it chosen?",
    "I need a recipe for sourdough bread with a crunchy crust.",
    "Explain how token buckets work for rate limiting.",
    "My laptop battery drains fast; what should I check first?",
    "请帮我规划一下周末去杭州的行程，预算两千元。",
]


def _serve(conn: Any, options: dict[str, Any]) -> None:
    from convo.sim import Simulator

    Simulator(port=0, **options).serve_forever(announce=lambda line: conn.send(line.split()[4]))


def start_server(**options: Any) -> tuple[mp.Process, str]:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(child, options), daemon=True)
    proc.start()
    return proc, parent.recv()


def body(i: int, *, stream: bool = False, max_tokens: int = 128) -> bytes:
    # A different conversation each time, so caches do not flatter the numbers.
    messages = [
        {"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} (request {i})"},
        {"role": "assistant", "content": "Sure, what would you like to know?"},
        {"role": "user", "content": f"Tell me more about item {i}, briefly."},
    ]
    return json.dumps({"model": MODEL, "max_tokens": max_tokens, "messages": messages, "stream": stream}).encode()


async def non_streaming(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    counter = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < end:
                counter += 1
                t0 = time.perf_counter()
                async with session.post(f"{url}/v1/messages", data=body(counter), headers=HEADERS) as r:
                    payload = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"status {r.status}: {payload[:200]!r}")
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


async def streams(url: str, n: int) -> dict[str, float]:
    open_now = peak = completed = deltas = 0
    first_byte: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int) -> None:
            nonlocal open_now, peak, completed, deltas
            t0 = time.perf_counter()
            async with session.post(f"{url}/v1/messages", data=body(i, stream=True), headers=HEADERS) as r:
                if r.status != 200:
                    raise RuntimeError(f"status {r.status}")
                started = False
                async for line in r.content:
                    if not started:
                        started = True
                        first_byte.append(time.perf_counter() - t0)
                        open_now += 1
                        peak = max(peak, open_now)
                    if line.startswith(b"event: content_block_delta"):
                        deltas += 1
                    elif line.startswith(b"event: message_stop"):
                        completed += 1
                open_now -= 1

        t0 = time.perf_counter()
        await asyncio.gather(*[one(i) for i in range(n)])
        elapsed = time.perf_counter() - t0
    return {
        "streams": n,
        "completed": completed,
        "peak_open": peak,
        "seconds": elapsed,
        "deltas_per_s": deltas / elapsed,
        "first_byte_p99_ms": 1000 * sorted(first_byte)[int(0.99 * (len(first_byte) - 1))],
    }


async def through_sdk(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    done = 0
    async with anthropic.AsyncAnthropic(base_url=url, api_key="bench", max_retries=0) as client:
        end = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.perf_counter() < end:
                i += concurrency
                await client.messages.create(
                    model=MODEL, max_tokens=128, messages=[{"role": "user", "content": f"{PROMPTS[i % 6]} ({i})"}]
                )
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*[worker(k) for k in range(concurrency)])
        elapsed = time.perf_counter() - t0
    return {"requests": done, "rps": done / elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--token-latency", type=float, default=0.02, help="seconds per delta in the stream test")
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}")

    proc, url = start_server()
    try:
        r = asyncio.run(non_streaming(url, args.seconds, args.concurrency))
        print(
            f"non-streaming (aiohttp load, {args.concurrency} connections, {args.seconds:g} s): "
            f"{r['rps']:,.0f} req/s  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  ({r['requests']:,} requests)"
        )
        s = asyncio.run(through_sdk(url, min(args.seconds, 3.0), 16))
        print(f"non-streaming through anthropic.AsyncAnthropic (16 tasks): {s['rps']:,.0f} req/s (SDK-bound)")
    finally:
        proc.terminate()

    proc, url = start_server(token_latency=args.token_latency)
    try:
        r = asyncio.run(streams(url, args.streams))
        print(
            f"streaming ({args.streams} at once, token_latency {args.token_latency:g} s): "
            f"peak open {r['peak_open']}, completed {r['completed']}/{r['streams']} in {r['seconds']:.2f} s, "
            f"{r['deltas_per_s']:,.0f} deltas/s, first byte p99 {r['first_byte_p99_ms']:.0f} ms"
        )
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
