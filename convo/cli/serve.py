"""``convo sim``: serve the embedded Anthropic-compatible simulator until interrupted."""

from __future__ import annotations

import signal
from typing import Any

import click

from .._exceptions import InvalidConfigError


def parse_faults(spec: str | None) -> Any:
    """``"529,ok,sse_error@3"`` (a schedule, in order) or ``"429=0.1,529=0.05"`` (rates)."""
    if not spec:
        return None
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not any("=" in s for s in items):
        return items
    rates: dict[str, float] = {}
    for item in items:
        name, eq, value = item.partition("=")
        try:
            if not eq:
                raise ValueError
            rates[name.strip()] = float(value)
        except ValueError:
            raise InvalidConfigError(
                f"--faults {spec!r}: give either a schedule ('529,ok,sse_error@3') or rates "
                "('429=0.1,529=0.05'), not both"
            ) from None
    return rates


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests per minute (default: unlimited).")
@click.option("--input-tpm", type=click.IntRange(min=1), default=None, help="Input tokens per minute.")
@click.option("--output-tpm", type=click.IntRange(min=1), default=None, help="Output tokens per minute.")
@click.option("--latency", type=click.FloatRange(min=0), default=0.0, help="Seconds before the first byte.")
@click.option("--token-latency", type=click.FloatRange(min=0), default=0.0, help="Seconds per streamed delta.")
@click.option("--faults", default=None, metavar="SPEC",
              help="Faults to inject: a schedule '529,ok,sse_error@3' or rates '429=0.1,529=0.05'.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the offline model and fault draws.")
def sim(host: str, port: int, rpm: int | None, input_tpm: int | None, output_tpm: int | None, latency: float,
        token_latency: float, faults: str | None, seed: int) -> int:
    """Serve the simulator (an offline stand-in for the Messages API) until Ctrl-C.

    Point convo (--base-url URL) or the official SDK (base_url=URL, any api_key) at it.
    """
    from ..sim import Simulator

    server = Simulator(seed=seed, latency=latency, token_latency=token_latency, rpm=rpm, input_tpm=input_tpm,
                       output_tpm=output_tpm, faults=parse_faults(faults), host=host, port=port)
    signal.signal(signal.SIGTERM, _stop)  # stop cleanly when a supervisor asks, as on Ctrl-C

    def announce(line: str) -> None:
        click.echo(f"{line}; try: convo chat --base-url {server.base_url}", err=True)

    try:
        server.serve_forever(announce=announce)
    except KeyboardInterrupt:  # one that lands while the server shuts down: it is stopping anyway
        pass
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port") from None
    click.echo("convo sim stopped", err=True)
    return 0
