"""Client overhead: convo's Client/AsyncClient against the bare anthropic SDK, as ratios.

Both sides talk to the same zero-latency simulator (``convo.sim``, seed 0), which runs in its
own process so it does not share the GIL with the client being measured. What is left is the
client's own cost per request: building it, sending it, parsing the answer — plus, for convo,
its flows and its retry, rate-limit, cost and stats bookkeeping.

Cases, each with the same messages and ``max_tokens``:

- ``create``: ``anthropic.Anthropic(max_retries=0).messages.create`` vs ``convo.Client.create``,
  one request after another in one thread.
- ``stream``: ``messages.stream`` vs ``convo.Client.stream``, reading ``text_stream`` to the end
  and then ``get_final_message()``; the reply is 40 text deltas (46 SSE events).
- ``async create`` / ``async stream``: the same with ``AsyncAnthropic`` vs ``convo.AsyncClient``,
  ``CONCURRENCY`` tasks sharing one client (convo's ``max_concurrency`` is set to match, so it
  does not queue).

Many short rounds alternate SDK and convo (swapping which goes first); the ratio is the median
of the per-round ratios, which cancels most drift on a shared machine. Each round also records
this process's CPU time per request, which load elsewhere on the machine hardly moves.

Run: ``.venv/bin/python bench/client_overhead.py`` (``--quick`` for a smoke run that writes
nothing, ``--profile`` to print where convo's extra time goes). To measure another checkout,
put it first on ``PYTHONPATH`` and run from outside the repository. Writes
``bench/results/client_overhead.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Self

import _machine
import anthropic
import httpx2

import convo

MODEL = "claude-sonnet-4-6"
MAX_TOKENS = 200
API_KEY = "bench-key"
CONCURRENCY = 8
TARGET = 0.9
RESULTS = Path(__file__).parent / "results" / "client_overhead.md"
CONVO_ROOT = Path(convo.__file__).resolve().parent.parent

# The offline model says exactly what it is asked to say: 40 words, so 40 text deltas.
REPLY = (
    "The queue is healthy and the workers keep up with the load most of the day, but every night "
    "the export job opens a new session per row, holds each connection far too long, and slowly starves the whole pool"
)
MESSAGES = [{"role": "user", "content": f'Please say "{REPLY}"'}]


# -- the simulator, in its own process ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def simulator() -> Iterator[str]:
    """Serve ``convo.sim`` (seed 0, no latency) in a child process; yields its base URL."""
    port = free_port()
    code = f"from convo.sim import run; run(host='127.0.0.1', port={port}, seed=0)"
    # Run from the folder holding the convo under test, so the server imports that same convo.
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, cwd=CONVO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the simulator exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                httpx2.post(f"{url}/v1/messages", json={}, timeout=1)  # any answer (even a 400) will do
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the simulator did not answer on {url} within 30 s") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wire_events(url: str) -> dict[str, int]:
    """SSE events per stream as sent on the wire, by type (the SDK adds its own derived events)."""
    body = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": MESSAGES, "stream": True}
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    text = httpx2.post(f"{url}/v1/messages", json=body, headers=headers, timeout=30).text
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
            counts[name] = counts.get(name, 0) + 1
    return counts


# -- one request each way --------------------------------------------------------------------
# Each side gets a callable doing one complete request; both return the final text so the run
# can check that they did the same work.


def sdk_create(client: anthropic.Anthropic) -> Callable[[], str]:
    return lambda: client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES).content[0].text


def convo_create(client: convo.Client) -> Callable[[], str]:
    return lambda: client.create(MESSAGES, max_tokens=MAX_TOKENS).content[0].text


def sdk_stream(client: anthropic.Anthropic) -> Callable[[], str]:
    def one() -> str:
        with client.messages.stream(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES) as s:
            text = "".join(s.text_stream)
            assert s.get_final_message().content[0].text == text
        return text

    return one


def convo_stream(client: convo.Client) -> Callable[[], str]:
    def one() -> str:
        with client.stream(MESSAGES, max_tokens=MAX_TOKENS) as s:
            text = "".join(s.text_stream)
            assert s.get_final_message().content[0].text == text
        return text

    return one


def sdk_acreate(client: anthropic.AsyncAnthropic) -> Callable[[], Awaitable[str]]:
    async def one() -> str:
        message = await client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES)
        return message.content[0].text

    return one


def convo_acreate(client: convo.AsyncClient) -> Callable[[], Awaitable[str]]:
    async def one() -> str:
        return (await client.create(MESSAGES, max_tokens=MAX_TOKENS)).content[0].text

    return one


def sdk_astream(client: anthropic.AsyncAnthropic) -> Callable[[], Awaitable[str]]:
    async def one() -> str:
        async with client.messages.stream(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES) as s:
            text = "".join([t async for t in s.text_stream])
            assert (await s.get_final_message()).content[0].text == text
        return text

    return one


def convo_astream(client: convo.AsyncClient) -> Callable[[], Awaitable[str]]:
    async def one() -> str:
        async with client.stream(MESSAGES, max_tokens=MAX_TOKENS) as s:
            text = "".join([t async for t in s.text_stream])
            assert (await s.get_final_message()).content[0].text == text
        return text

    return one


# -- timing ----------------------------------------------------------------------------------


class Sample(NamedTuple):
    """One side's round: wall-clock rate, and this process's CPU time per request."""

    rate: float
    cpu_us: float


Rounds = tuple[list[Sample], list[Sample]]  # (SDK, convo), round by round


def time_sync(one: Callable[[], str], n: int) -> Sample:
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        one()
    t1, c1 = time.perf_counter(), time.process_time()
    return Sample(n / (t1 - t0), (c1 - c0) / n * 1e6)


async def run_async(one: Callable[[], Awaitable[str]], n: int) -> None:
    """``n`` requests by ``CONCURRENCY`` tasks pulling from one counter."""
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def time_async(one: Callable[[], Awaitable[str]], n: int) -> Sample:
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    await run_async(one, n)
    t1, c1 = time.perf_counter(), time.process_time()
    return Sample(n / (t1 - t0), (c1 - c0) / n * 1e6)


def interleave(rounds: int, sdk: Callable[[], Sample], ours: Callable[[], Sample]) -> Rounds:
    """Alternate the two sides in short rounds, swapping who goes first each round."""
    samples: Rounds = ([], [])
    for r in range(rounds):
        for side in (0, 1) if r % 2 == 0 else (1, 0):
            samples[side].append((sdk, ours)[side]())
    return samples


async def interleave_async(
    rounds: int, sdk: Callable[[], Awaitable[Sample]], ours: Callable[[], Awaitable[Sample]]
) -> Rounds:
    samples: Rounds = ([], [])
    for r in range(rounds):
        for side in (0, 1) if r % 2 == 0 else (1, 0):
            samples[side].append(await (sdk, ours)[side]())
    return samples


def plan(quick: bool) -> dict[str, Any]:
    """Rounds, warm-up, and requests per side per round (about 0.05-0.15 s each on 2 cores):
    many short rounds follow the load of a shared machine better than a few long ones."""
    if quick:
        return {"rounds": 2, "warmup": 10, "create": 40, "stream": 20, "acreate": 40, "astream": 20}
    return {"rounds": 41, "warmup": 50, "create": 60, "stream": 24, "acreate": 96, "astream": 40}


def measure(url: str, p: dict[str, Any]) -> dict[str, Rounds]:
    rounds, warmup = p["rounds"], p["warmup"]
    results: dict[str, Rounds] = {}
    sdk = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
    ours = convo.Client(base_url=url, api_key=API_KEY, model=MODEL)
    try:
        for case, make_sdk, make_convo in (("create", sdk_create, convo_create), ("stream", sdk_stream, convo_stream)):
            a, b = make_sdk(sdk), make_convo(ours)
            if b() != a():
                raise AssertionError(f"{case}: convo and the SDK got different text")
            time_sync(a, warmup)
            time_sync(b, warmup)
            print(f"{case} ...", file=sys.stderr, flush=True)
            n = p[case]
            results[case] = interleave(rounds, partial(time_sync, a, n), partial(time_sync, b, n))
        check_stats(ours, "Client")
    finally:
        sdk.close()
        ours.close()
    results.update(asyncio.run(measure_async(url, p)))
    return results


async def measure_async(url: str, p: dict[str, Any]) -> dict[str, Rounds]:
    rounds, warmup = p["rounds"], p["warmup"]
    results: dict[str, Rounds] = {}
    async with anthropic.AsyncAnthropic(base_url=url, api_key=API_KEY, max_retries=0) as sdk:
        ours = convo.AsyncClient(base_url=url, api_key=API_KEY, model=MODEL, max_concurrency=CONCURRENCY)
        try:
            cases = (("acreate", sdk_acreate, convo_acreate), ("astream", sdk_astream, convo_astream))
            for case, make_sdk, make_convo in cases:
                a, b = make_sdk(sdk), make_convo(ours)
                if await b() != await a():
                    raise AssertionError(f"{case}: convo and the SDK got different text")
                await time_async(a, warmup)
                await time_async(b, warmup)
                print(f"{case} ...", file=sys.stderr, flush=True)
                n = p[case]
                results[case] = await interleave_async(rounds, partial(time_async, a, n), partial(time_async, b, n))
            check_stats(ours, "AsyncClient")
        finally:
            await ours.close()
    return results


def check_stats(client: Any, name: str) -> None:
    """The run measured clean requests only: nothing failed and nothing was retried."""
    s = client.stats.as_dict()
    if s["failures"] or s["retries"] or s["stream_resumes"]:
        raise AssertionError(f"{name} saw failures or retries during the run: {s}")


# -- report ----------------------------------------------------------------------------------

LABELS = {
    "create": ("non-streaming, sequential", "requests/s"),
    "stream": ("streaming, sequential", "streams/s"),
    "acreate": (f"async non-streaming, {CONCURRENCY} tasks", "requests/s"),
    "astream": (f"async streaming, {CONCURRENCY} tasks", "streams/s"),
}


def convo_source() -> str:
    """Which convo was measured: a commit (and whether convo/ had uncommitted changes), or a path."""
    try:
        git = ["git", "-C", str(CONVO_ROOT)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "convo"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return f"convo from {CONVO_ROOT}"
    return f"convo at {commit.stdout.strip()}{' + uncommitted changes' if dirty.stdout.strip() else ''}"


def machine() -> str:
    return _machine.machine("anthropic", "httpx2", convo=f"{convo_source()} ({convo.__version__})")



def quartiles(values: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return f"{q1:.2f}-{q3:.2f}"


def report(
    results: dict[str, Rounds], events: dict[str, int], p: dict[str, Any], quick: bool, load: tuple[float, float]
) -> str:
    rows, spread = [], []
    for case, (sdk, ours) in results.items():
        label, unit = LABELS[case]
        rate_sdk, rate_convo = statistics.median(x.rate for x in sdk), statistics.median(x.rate for x in ours)
        cpu_sdk, cpu_convo = statistics.median(x.cpu_us for x in sdk), statistics.median(x.cpu_us for x in ours)
        ratios = [b.rate / a.rate for a, b in zip(sdk, ours)]
        cpu_ratios = [a.cpu_us / b.cpu_us for a, b in zip(sdk, ours)]
        ratio = statistics.median(ratios)
        ok = "yes" if round(ratio, 3) >= TARGET else "**no**"  # as shown
        rows.append(
            f"| {label} | {unit} | {rate_sdk:,.0f} | {rate_convo:,.0f} | **{ratio:.3f}x** | {ok} "
            f"| {cpu_sdk:,.0f} | {cpu_convo:,.0f} | {statistics.median(cpu_ratios):.3f}x |"
        )
        spread.append(
            f"| {label} | {p[case]} | {quartiles(ratios)} | {min(ratios):.2f}-{max(ratios):.2f} "
            f"| {quartiles(cpu_ratios)} | {min(x.rate for x in sdk):,.0f}-{max(x.rate for x in sdk):,.0f} |"
        )
    total = sum(events.values())
    deltas = events.get("content_block_delta", 0)
    return "\n".join(
        [
            "# Client overhead: convo vs the bare anthropic SDK",
            "",
            f"{machine()}{' — QUICK RUN, too few requests to trust' if quick else ''}",
            "",
            (f"Zero-latency `convo.sim.Simulator(seed=0)` in its own process; one request = model "
             f"`{MODEL}`, `max_tokens={MAX_TOKENS}`, one user message asking for a 40-word reply "
             f"({deltas} text deltas, {total} SSE events per stream). SDK = `anthropic.Anthropic` / "
             f"`AsyncAnthropic` with `max_retries=0`; convo = `convo.Client` / `AsyncClient` (default "
             f"retry policy, stats on; `max_concurrency={CONCURRENCY}` for async). Streams read "
             f"`text_stream` to the end, then `get_final_message()`. Async cases run {CONCURRENCY} tasks "
             f"on one client. {p['rounds']} rounds per case after {p['warmup']} warm-up requests per side; "
             f"in each round SDK and convo run back to back (swapping who goes first), and the ratio is "
             f"the median of the per-round ratios, which cancels the drift of a shared machine."),
            "",
            (f"Rates are wall-clock (median over rounds). Client CPU is this process's CPU time per request "
             f"(the simulator's process excluded), which other load on the machine hardly moves; "
             f"SDK CPU / convo CPU is what the rate ratio would be if the client alone set the pace. "
             f"Load average (1 min) at the start and the end of the run: {load[0]:.1f}, {load[1]:.1f}."),
            "",
            (f"| case | unit | SDK | convo | convo / SDK | >= {TARGET}x | SDK client CPU µs/req "
             f"| convo client CPU µs/req | SDK CPU / convo CPU |"),
            "|---|---|---:|---:|---:|:--:|---:|---:|---:|",
            *rows,
            "",
            ("Spread over rounds: the per-round convo/SDK rate ratio (quartiles, min-max), the CPU ratio "
             "(quartiles), and the SDK's own rate (min-max), which shows how much the machine's load moved:"),
            "",
            ("| case | requests per side per round | rate ratio p25-p75 | rate ratio min-max "
             "| CPU ratio p25-p75 | SDK rate min-max |"),
            "|---|---:|---:|---:|---:|---:|",
            *spread,
            "",
        ]
    )


# -- profile ---------------------------------------------------------------------------------


# Blocking socket and selector calls: time spent waiting for the server, not client work.
_WAITS = re.compile(r"<method '(recv|recv_into|send|sendall|poll|select|control)' of '(_socket\.socket|select\.\w+)")


Profile = dict[tuple[str, int, str], tuple[float, float, float]]  # key -> calls, own s, cumulative s


def _per_request(prof: cProfile.Profile, n: int) -> Profile:
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    return {key: (nc / n, tt / n, ct / n) for key, (_cc, nc, tt, ct, _callers) in stats.items()}


def _where(key: tuple[str, int, str]) -> str:
    file, line, name = key
    for prefix in (str(CONVO_ROOT) + os.sep, *(p + os.sep for p in sys.path if p.endswith("site-packages"))):
        if file.startswith(prefix):
            file = file[len(prefix) :]
            break
    return f"{file}:{line} {name}" if line else name


def _compare(case: str, base: Profile, mine: Profile) -> None:
    """What convo adds, per request. Call counts do not depend on the machine's load, so the
    extra time is attributed by them: each function's extra calls times its cost per call."""

    def cpu(profile: Profile) -> float:
        return sum(tt for k, (_, tt, _) in profile.items() if not _WAITS.search(k[2]))

    print(
        f"\n== {case}, per request under cProfile (profiling inflates both): client CPU without socket "
        f"waits SDK {cpu(base) * 1e6:,.0f} µs, convo {cpu(mine) * 1e6:,.0f} µs; function calls SDK "
        f"{sum(v[0] for v in base.values()):,.0f}, convo {sum(v[0] for v in mine.values()):,.0f}"
    )
    extra = []
    for key, (nc, tt, _) in mine.items():
        more = nc - base.get(key, (0.0, 0.0, 0.0))[0]
        if more > 0.5 and not _WAITS.search(key[2]) and key[0] != __file__:  # not this harness
            extra.append((tt * more / nc, more, key))
    print("\ncalls convo adds: own time attributed to the extra calls (µs), extra calls per request:")
    for us, more, key in sorted(extra, reverse=True)[:15]:
        print(f"  {us * 1e6:8.1f}  {more:6.1f}  {_where(key)}")
    convo_dir = str(Path(convo.__file__).resolve().parent)
    own = sorted(((ct, tt, k) for k, (_, tt, ct) in mine.items() if k[0].startswith(convo_dir)), reverse=True)
    print("\nconvo's own functions by cumulative time (µs per request: cumulative / own):")
    for ct, tt, key in own[:15]:
        print(f"  {ct * 1e6:8.1f} / {tt * 1e6:6.1f}  {_where(key)}")


def profile(url: str, n: int = 300) -> None:
    """Profile both sides of every case and print what convo adds, per request."""
    sdk = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
    ours = convo.Client(base_url=url, api_key=API_KEY, model=MODEL)
    cases = (("create", sdk_create(sdk), convo_create(ours)), ("stream", sdk_stream(sdk), convo_stream(ours)))
    for case, a, b in cases:
        runs = []
        for one in (a, b):
            time_sync(one, 30)
            gc.collect()
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(n):
                one()
            prof.disable()
            runs.append(_per_request(prof, n))
        _compare(case, *runs)
    sdk.close()
    ours.close()
    asyncio.run(profile_async(url, n))


async def profile_async(url: str, n: int) -> None:
    async with anthropic.AsyncAnthropic(base_url=url, api_key=API_KEY, max_retries=0) as sdk:
        ours = convo.AsyncClient(base_url=url, api_key=API_KEY, model=MODEL, max_concurrency=CONCURRENCY)
        cases = (("async create", sdk_acreate, convo_acreate), ("async stream", sdk_astream, convo_astream))
        for case, make_sdk, make_convo in cases:
            runs = []
            for one in (make_sdk(sdk), make_convo(ours)):
                await time_async(one, 30)
                gc.collect()
                prof = cProfile.Profile()
                prof.enable()
                await run_async(one, n)
                prof.disable()
                runs.append(_per_request(prof, n))
            _compare(case, *runs)
        await ours.close()


class _Replay:
    """Stands in for the SDK and answers at once with a recorded reply, so that only convo's
    own work is timed (no network, no SSE parsing, no accumulation)."""

    def __init__(self, message: Any, final: Any, events: list[Any]) -> None:
        self.messages = self  # so that ``sdk.messages.create`` resolves
        self.with_raw_response = _ReplayRaw(self)  # ``sdk.messages.with_raw_response.create``
        self.message, self.final, self.events = message, final, events

    def create(self, *, model: str, max_tokens: int, messages: Any, **params: Any) -> Any:
        return self.message

    def stream(self, *, model: str, max_tokens: int, messages: Any, **params: Any) -> Any:
        return _ReplayStream(self.final, self.events)


class _ReplayRaw:
    """``with_raw_response``: the same reply, with (empty) response headers."""

    def __init__(self, replay: _Replay) -> None:
        self.replay = replay
        self.headers = httpx2.Headers()

    def create(self, *, model: str, max_tokens: int, messages: Any, **params: Any) -> Any:
        return self

    def parse(self) -> Any:
        return self.replay.message


class _AsyncReplayRaw(_ReplayRaw):
    async def create(self, *, model: str, max_tokens: int, messages: Any, **params: Any) -> Any:
        return self

    async def parse(self) -> Any:
        return self.replay.message


class _ReplayStream:
    def __init__(self, message: Any, events: list[Any]) -> None:
        self.current_message_snapshot = message
        self.events = events
        self.response = httpx2.Response(200)  # its headers feed the rate limiter

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        return iter(self.events)

    def get_final_message(self) -> Any:
        return self.current_message_snapshot


class _AsyncReplay(_Replay):
    def __init__(self, message: Any, final: Any, events: list[Any]) -> None:
        super().__init__(message, final, events)
        self.with_raw_response = _AsyncReplayRaw(self)

    async def create(self, *, model: str, max_tokens: int, messages: Any, **params: Any) -> Any:
        return self.message

    def stream(self, *, model: str, max_tokens: int, messages: Any, **params: Any) -> Any:
        return _AsyncReplayStream(self.final, self.events)


class _AsyncReplayStream(_ReplayStream):
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def __aiter__(self) -> Any:
        for event in self.events:
            yield event

    async def get_final_message(self) -> Any:  # type: ignore[override]
        return self.current_message_snapshot


def own_cost(url: str, n: int = 2000) -> None:
    """convo's own CPU per request, over an SDK stand-in that replays a recorded reply."""
    with anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0) as sdk:
        message = sdk.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES)
        with sdk.messages.stream(model=MODEL, max_tokens=MAX_TOKENS, messages=MESSAGES) as s:
            events = list(s)
            final = s.get_final_message()
        create_cpu = min(time_sync(sdk_create(sdk), 200).cpu_us for _ in range(3))
        stream_cpu = min(time_sync(sdk_stream(sdk), 80).cpu_us for _ in range(3))
    ours = convo.Client(base_url=url, api_key=API_KEY, model=MODEL)
    real = ours._env.sdk
    ours._env.sdk = _Replay(message, final, events)

    def best(one: Callable[[], Any], k: int) -> float:
        return min(time_sync(one, k).cpu_us for _ in range(5))

    sync_create = best(convo_create(ours), n)
    sync_stream = best(convo_stream(ours), n // 4)
    ours._env.sdk = real
    ours.close()

    async def run_both() -> tuple[float, float]:
        a = convo.AsyncClient(base_url=url, api_key=API_KEY, model=MODEL, max_concurrency=CONCURRENCY)
        real = a._env.sdk
        a._env.sdk = _AsyncReplay(message, final, events)
        c = min([(await time_async(convo_acreate(a), n)).cpu_us for _ in range(5)])
        t = min([(await time_async(convo_astream(a), n // 4)).cpu_us for _ in range(5)])
        a._env.sdk = real
        await a.close()
        return c, t

    async_create, async_stream = asyncio.run(run_both())
    kinds = sorted({e.type for e in events})
    print(
        f"\n== convo's own work per request, over a stand-in SDK that replays a recorded reply "
        f"(best of 5; no network, no parsing). One stream = {len(events)} SDK events ({', '.join(kinds)}).\n"
        f"  create        {sync_create:6.1f} µs   (the SDK's client CPU per real request: {create_cpu:,.0f} µs)\n"
        f"  stream        {sync_stream:6.1f} µs   ({sync_stream / len(events):.2f} µs per SDK event; "
        f"SDK per real stream: {stream_cpu:,.0f} µs)\n"
        f"  async create  {async_create:6.1f} µs\n"
        f"  async stream  {async_stream:6.1f} µs   ({async_stream / len(events):.2f} µs per SDK event)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few requests: a smoke test, not a measurement")
    parser.add_argument("--profile", action="store_true", help="print where convo's extra time goes and exit")
    args = parser.parse_args()
    with simulator() as url:
        if args.profile:
            own_cost(url)
            profile(url)
            return
        events = wire_events(url)
        p = plan(args.quick)
        start = os.getloadavg()[0]
        results = measure(url, p)
        text = report(results, events, p, args.quick, (start, os.getloadavg()[0]))
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
        print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
