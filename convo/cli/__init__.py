"""The ``convo`` command: chat, summarize, count, sim, batch.

    convo chat --strategy summarize          # streamed chat; /save, /load, /tokens, /undo ...
    convo summarize report.txt > summary.txt # map-reduce over a long document
    convo count report.txt --exact           # tokens, chunks, input cost per model
    convo sim --port 8080 --rpm 50           # the simulator, for any client
    convo batch submit requests.jsonl        # Message Batches: submit, then status / collect ID

Without ``ANTHROPIC_API_KEY`` the commands run on the embedded simulator, and say so: a
``SIMULATED`` line on stderr, ``"backend": "simulator"`` in JSON. A user error (a bad
option, a missing file, an error from the API) prints one line on stderr and exits non-zero,
without a traceback; the API key is never printed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from .. import __version__
from .._exceptions import ConvoError
from ._backend import one_line
from .batch import batch
from .chat import chat
from .document import count, summarize
from .serve import sim

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="convo")
def cli() -> None:
    """Multi-turn conversations, long documents and rate-limited batches for the Claude API.

    Uses the real API when ANTHROPIC_API_KEY is set, else an embedded offline simulator (and
    says so: its figures are labelled SIMULATED).
    """


cli.add_command(chat)
cli.add_command(summarize)
cli.add_command(count)
cli.add_command(sim)
cli.add_command(batch)


def _fail(message: str, status: int) -> int:
    click.echo(f"convo: error: {one_line(message)}", err=True)
    return status


def _os_error(exc: OSError) -> str:
    if exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return exc.strerror or str(exc)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; exits with its status (1: error, 2: bad usage, 130: interrupted)."""
    try:
        status = cli.main(args=list(argv) if argv is not None else None, prog_name="convo", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        status = _fail(exc.format_message() + where, 2)
    except click.ClickException as exc:
        status = _fail(exc.format_message(), exc.exit_code)
    except click.Abort:
        click.echo("convo: interrupted", err=True)
        status = 130
    except ConvoError as exc:
        status = _fail(str(exc), 1)
    except ValueError as exc:  # the simulator's own settings errors (convo.sim.SimConfigError)
        if type(exc).__name__ != "SimConfigError":
            raise
        status = _fail(str(exc), 2)
    except BrokenPipeError:  # `convo ... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = 1
    except OSError as exc:
        status = _fail(_os_error(exc), 1)
    sys.exit(status if isinstance(status, int) else 0)
