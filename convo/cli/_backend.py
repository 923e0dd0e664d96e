"""Where the CLI's requests go, and how it reports to people: notes and errors on stderr.

The backend is chosen once per command: ``--base-url`` when given (or ``ANTHROPIC_BASE_URL``);
else the real API when ``ANTHROPIC_API_KEY`` is set; else the embedded simulator, started in a
background thread and announced in one line, so every command works offline. ``--sim`` forces
the simulator even with a key (the demo uses it so that it never spends money).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from ..models import DEFAULT_MODEL

#: The key sent to the simulator, or to a --base-url server when ANTHROPIC_API_KEY is unset.
PLACEHOLDER_KEY = "convo-cli"

F = TypeVar("F", bound=Callable[..., Any])


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
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextlib.contextmanager
def open_client(
    base_url: str | None, force_sim: bool, model: str | None, *, sim_options: dict[str, Any] | None = None, **kw: Any
) -> Iterator[Any]:
    """A :class:`convo.Client` on the chosen backend; the simulator, if started, stops on exit."""
    from ..client import Client
    from ..sim import Simulator

    key = os.environ.get("ANTHROPIC_API_KEY") or None
    model = model or DEFAULT_MODEL
    sim = None
    if force_sim or (base_url is None and key is None):
        sim = Simulator(**(sim_options or {})).start()
        why = "--sim" if force_sim else "no ANTHROPIC_API_KEY"
        note(f"{why}: using the embedded simulator at {sim.base_url} (an offline stand-in model, not Claude)")
        base_url, key = sim.base_url, PLACEHOLDER_KEY
    try:
        with Client(api_key=key or PLACEHOLDER_KEY, base_url=base_url, model=model, **kw) as client:
            yield client
    finally:
        if sim is not None:
            sim.close()


def usd(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def stdin_interactive() -> bool:
    return sys.stdin.isatty()
