"""Running the simulator: in a background thread for tests, or in the foreground for the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .app import Recorded, SimState, make_app
from .batches import BatchFaults
from .cache import PromptCache
from .errors import SimConfigError
from .faults import Fault, Faults
from .limits import RateLimits
from .tokens import Tokenizer, as_tokenizer

__all__ = ["Simulator", "run"]

FaultsLike = Faults | Mapping[str, float] | Iterable[str | Fault] | str | None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:  # uvloop roughly doubles throughput when it is installed; it is optional
        import uvloop  # type: ignore[import-not-found]

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    except ImportError:
        return asyncio.new_event_loop()


class Simulator:
    """An Anthropic-compatible server on localhost with an offline model, limits and faults.

    >>> with Simulator(seed=0) as sim:
    ...     client = anthropic.Anthropic(base_url=sim.base_url, api_key="test")
    ...     client.messages.create(model="claude-sonnet-4-6", max_tokens=100,
    ...                            messages=[{"role": "user", "content": "Hi"}])

    ``latency``: seconds before the first byte; ``token_latency``: seconds per streamed delta.
    ``rpm``, ``input_tpm``, ``output_tpm``: rate limits per model class (None: unlimited).
    ``faults``: a :class:`Faults`, a schedule (``["ok", "500", "sse_error@3"]``) or rates
    (``{"429": 0.1}``). ``api_key``: when set, only that key is accepted (otherwise any).
    ``clock``: epoch seconds for rate limits and batches (inject one to move time in tests).
    ``batch_seconds``: how long a batch takes, on the batches' clock, which runs
    ``batch_speed`` times faster than ``clock`` (3600: an hour per second). ``batch_faults``:
    rates of ``errored`` / ``expired`` batch requests, e.g. ``{"errored": 0.1}`` (markers
    ``[sim:errored]`` / ``[sim:expired]`` in a request force them; see :mod:`convo.sim.batches`). ``round_remaining``: round token ``remaining``
    headers to thousands like the API. ``record``: how many requests ``requests`` keeps.
    ``counter``: the simulator's :class:`Tokenizer`, or any object with ``count_text(text)``
    (a convo counter) to count text with, keeping the simulator's framing and block costs.
    """

    def __init__(
        self,
        seed: int = 0,
        latency: float = 0.0,
        token_latency: float = 0.0,
        rpm: int | None = None,
        input_tpm: int | None = None,
        output_tpm: int | None = None,
        faults: FaultsLike = None,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] | None = None,
        batch_seconds: float = 0.5,
        batch_speed: float = 1.0,
        batch_faults: Mapping[str, float] | None = None,
        round_remaining: bool = True,
        max_request_bytes: int = 32 * 1024 * 1024,
        max_batch_bytes: int = 256 * 1024 * 1024,
        record: int | None = 10_000,
        counter: Tokenizer | object | None = None,
    ) -> None:
        if latency < 0 or token_latency < 0 or batch_seconds < 0:
            raise SimConfigError("latency, token_latency and batch_seconds must not be negative")
        clock = clock or time.time
        self.host = host
        self._port = port
        self.state = SimState(
            seed=seed,
            latency=latency,
            token_latency=token_latency,
            api_key=api_key,
            faults=Faults.coerce(faults, seed=seed),
            limits=RateLimits(rpm, input_tpm, output_tpm, clock=clock, round_remaining=round_remaining),
            clock=clock,
            batch_seconds=batch_seconds,
            batch_speed=batch_speed,
            batch_faults=BatchFaults.coerce(batch_faults),
            max_request_bytes=max_request_bytes,
            max_batch_bytes=max_batch_bytes,
            record=record,
            counter=as_tokenizer(counter),
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._sock is not None else "not started"
        return f"Simulator({where}, seed={self.state.seed})"

    # -- what tests look at --------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the simulator is not started; call start() or use it as a context manager")
        return int(self._sock.getsockname()[1])

    @property
    def base_url(self) -> str:
        """The URL to give the SDK as ``base_url``."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[Recorded]:
        """The requests received, oldest first (the last ``record`` of them)."""
        return list(self.state.recorded)

    def clear_requests(self) -> None:
        self.state.recorded.clear()

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @faults.setter
    def faults(self, value: FaultsLike) -> None:
        self.state.faults = Faults.coerce(value, seed=self.state.seed)

    @property
    def batch_faults(self) -> BatchFaults:
        return self.state.batch_faults

    @batch_faults.setter
    def batch_faults(self, value: BatchFaults | Mapping[str, float] | None) -> None:
        self.state.batch_faults = BatchFaults.coerce(value)

    @property
    def limits(self) -> RateLimits:
        return self.state.limits

    @property
    def prompt_cache(self) -> PromptCache:
        """The prompt-cache entries (``len()`` counts the live ones; ``clear()`` empties it)."""
        return self.state.cache

    # -- background thread ---------------------------------------------------------------

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    async def _start_site(self) -> None:
        assert self._sock is not None
        runner = web.AppRunner(
            make_app(self.state), access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        await web.SockSite(runner, self._sock, backlog=1024).start()
        self._runner = runner

    def start(self) -> Self:
        """Start serving in a background thread; returns self once it accepts connections."""
        if self._thread is not None:
            return self
        self._sock = self._bind()
        loop = self._loop = _new_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as exc:  # noqa: BLE001 - every failure, cancellation too, is re-raised by start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=main, name=f"convo-sim-{self.port}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def close(self) -> None:
        """Stop serving and join the thread (open streams are cut)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            with contextlib.suppress(TimeoutError, OSError, RuntimeError):  # shutting down anyway
                fut.result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = self._loop = self._runner = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None  # repr and base_url say "not started" rather than fail on a closed socket

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- foreground ----------------------------------------------------------------------

    def serve_forever(self, *, announce: Callable[[str], Any] | None = None) -> None:
        """Serve on the calling thread until interrupted (Ctrl-C); for ``convo sim``."""
        self._sock = self._bind()
        loop = _new_loop()
        asyncio.set_event_loop(loop)
        stoppers = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            # The loop stops itself on a signal, so no KeyboardInterrupt can land mid-shutdown.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, loop.stop)
                stoppers.append(sig)
        try:
            loop.run_until_complete(self._start_site())
            (announce or (lambda s: print(s, file=sys.stderr, flush=True)))(
                f"convo sim listening on {self.base_url} (Ctrl-C to stop)"
            )
            loop.run_forever()
        except KeyboardInterrupt:
            pass
        finally:
            for sig in stoppers:
                loop.remove_signal_handler(sig)
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
                self._runner = None
            loop.close()
            self._sock.close()


def run(host: str = "127.0.0.1", port: int = 8080, **options: Any) -> None:
    """Serve a :class:`Simulator` in the foreground until interrupted.

    ``options`` are the Simulator's (``rpm=50``, ``faults={"529": 0.05}``, ...).
    """
    Simulator(host=host, port=port, **options).serve_forever()
