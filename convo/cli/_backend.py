"""Where the CLI's requests go, and how it reports to people: notes and errors on stderr.

The backend is chosen once per command (:func:`choose`): ``--base-url`` when given (or
``ANTHROPIC_BASE_URL``); else the real API when ``ANTHROPIC_API_KEY`` is set; else the embedded
simulator, started in a background thread, so every command works offline. ``--sim`` forces
the simulator even with a key (the demo uses it so that it never spends money).

Honesty: every figure the simulator produced says so. Choosing it prints a ``SIMULATED`` line on
stderr, JSON output carries ``"backend": "simulator"``, and costs are labelled as what the real
API would charge for the simulator's token counts.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import click

from .._exceptions import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    InvalidConfigError,
    NotFoundError,
    PermissionDeniedError,
)
from ..models import DEFAULT_MODEL

#: The key sent to the simulator, or to a --base-url server when ANTHROPIC_API_KEY is unset.
PLACEHOLDER_KEY = "convo-cli"
#: Where the real API is (the SDK's default), for error messages.
API_URL = "https://api.anthropic.com"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Backend:
    """What a command talks to: ``"api"`` (Anthropic), ``"server"`` (--base-url) or ``"simulator"``.

    ``url`` is None for the simulator until it starts; ``why`` says how it was chosen.
    """

    kind: Literal["api", "server", "simulator"]
    url: str | None
    why: str

    @property
    def simulated(self) -> bool:
        return self.kind == "simulator"

    @property
    def spends(self) -> bool:
        """True when requests are billed: the real API (a --base-url server may be a proxy to it,
        so it counts as billed too)."""
        return self.kind != "simulator"


def choose(base_url: str | None, force_sim: bool) -> Backend:
    """The backend for these options and the environment (nothing is started)."""
    if force_sim:
        return Backend("simulator", None, "--sim")
    if base_url:
        return Backend("server", base_url, "--base-url")
    if os.environ.get("ANTHROPIC_API_KEY"):
        return Backend("api", API_URL, "ANTHROPIC_API_KEY is set")
    return Backend("simulator", None, "no ANTHROPIC_API_KEY")


def note(message: str) -> None:
    """One line for people on stderr (never stdout, which carries the results)."""
    click.echo(f"convo: {scrub(message)}", err=True)


def one_line(message: str) -> str:
    """A message on one line, without the API key."""
    return " ".join(scrub(message).split())


def scrub(text: str) -> str:
    """``text`` with the API key, should it appear, masked: it is never printed."""
    key = os.environ.get("ANTHROPIC_API_KEY")
    return text.replace(key, "***") if key and len(key) >= 8 else text


def backend_options(func: F) -> F:
    """The options of every command that talks to a model."""
    options = [
        click.option("--model", "-m", default=None, help=f"Model name (default {DEFAULT_MODEL})."),
        click.option(
            "--base-url",
            envvar="ANTHROPIC_BASE_URL",
            default=None,
            metavar="URL",
            help="Send requests to this server (e.g. a running `convo sim`); env ANTHROPIC_BASE_URL.",
        ),
        click.option(
            "--sim",
            "force_sim",
            is_flag=True,
            help="Use the embedded simulator even when ANTHROPIC_API_KEY is set (offline, free).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            metavar="SECONDS",
            help="Give up on a request after this long (each retry gets as long again; default 600).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _simulator(sim_options: dict[str, Any] | None) -> Any:
    try:
        from ..sim import Simulator
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "convo":
            raise
        raise InvalidConfigError(
            f"the embedded simulator needs {exc.name or 'aiohttp'}, which is not installed: "
            "pip install 'convo[sim]'; or set ANTHROPIC_API_KEY to use the real API, or --base-url URL"
        ) from None
    return Simulator(**(sim_options or {})).start()


@contextlib.contextmanager
def open_client(
    backend: Backend, model: str | None, *, timeout: float | None = None,
    sim_options: dict[str, Any] | None = None, **kw: Any
) -> Iterator[tuple[Any, Backend]]:
    """``(client, backend)``: a :class:`convo.Client` on ``backend`` (with the simulator's URL
    once it started); the simulator stops on exit. A connection error names the URL and the
    option that sets it."""
    from ..client import Client

    key = os.environ.get("ANTHROPIC_API_KEY") or None
    sim = None
    if backend.simulated:
        sim = _simulator(sim_options)
        backend = Backend("simulator", sim.base_url, backend.why)
        note(
            f"SIMULATED ({backend.why}): requests go to the embedded simulator at {sim.base_url}, an "
            "offline stand-in, not Claude; its replies, token counts and costs are not real"
            + ("" if backend.why == "--sim" else " (set ANTHROPIC_API_KEY for real ones)")
        )
        key = PLACEHOLDER_KEY
    base_url = None if backend.kind == "api" else backend.url
    try:
        with Client(api_key=key or PLACEHOLDER_KEY, base_url=base_url, model=model or DEFAULT_MODEL,
                    timeout=timeout, **kw) as client:
            yield client, backend
    except APIConnectionError as exc:
        raise APIConnectionError(connection_hint(str(exc), backend), attempts=exc.attempts) from exc.__cause__
    except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
        raise type(exc)(api_hint(exc, backend, model or DEFAULT_MODEL), status_code=exc.status_code,
                        error_type=exc.error_type, request_id=exc.request_id, attempts=exc.attempts) from exc.__cause__
    finally:
        if sim is not None:
            sim.close()


def connection_hint(message: str, backend: Backend) -> str:
    """A connection error with the URL it tried and the CLI option that would fix it."""
    first = one_line(message).split(" Check the network and base_url")[0]  # the Python hint: not for the CLI
    while first.endswith((".", " ")):
        first = first[:-1]
    if backend.kind == "server":
        fix = "check --base-url (or ANTHROPIC_BASE_URL): is the server running? e.g. `convo sim --port 8080`"
    elif backend.kind == "api":
        fix = "check the network; --timeout SECONDS allows slower answers, --sim runs offline"
    else:
        fix = "the embedded simulator stopped answering; run again"
    return f"{first}: could not reach {backend.url}; {fix}"


def explain(exc: Exception, backend: Backend, model: str) -> str:
    """The message of ``exc`` with what to do on the command line, where there is something."""
    if isinstance(exc, APIConnectionError):
        return connection_hint(str(exc), backend)
    if isinstance(exc, (AuthenticationError, PermissionDeniedError, NotFoundError)):
        return api_hint(exc, backend, model)
    return str(exc)


def api_hint(exc: APIError, backend: Backend, model: str) -> str:
    """An API error with the CLI option or variable that fixes it (not a Python argument)."""
    if isinstance(exc, NotFoundError):
        fix = f"check --model ({model})" + ("" if backend.kind == "api" else f" and --base-url ({backend.url})")
    else:
        fix = f"check ANTHROPIC_API_KEY (the key sent to {backend.url}), or use --sim to run offline"
    return f"{one_line(str(exc))}; {fix}"


def usd(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def stdin_interactive() -> bool:
    return sys.stdin.isatty()
