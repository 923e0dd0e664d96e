"""``convo summarize`` and ``convo count``: a long document, map-reduced or measured.

Both read a UTF-8 file (or ``-`` for standard input) and cut it with :func:`convo.chunk_text`.
Results go to stdout; progress, usage and cost to stderr, so ``convo summarize doc.txt >
summary.txt`` keeps only the summary.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .._exceptions import ConvoError, InvalidInputError, TokenCountError
from ._backend import DEFAULT_MODEL, backend_options, note, one_line, open_client, usd

INSTRUCTION = "Summarize this part of the document in a few sentences, keeping names, facts and conclusions."


def read_document(source: str) -> tuple[str, str]:
    """(name, text) of a file, or of standard input for ``-``; errors say what is wrong."""
    from ..chunking import read_text_file

    if source == "-":
        data = sys.stdin.buffer.read()
        try:
            text, name = data.decode("utf-8-sig"), "<stdin>"
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"standard input is not UTF-8 text (bad byte at offset {exc.start})") from None
    else:
        text, name = read_text_file(source), source
    if not text.strip():
        raise InvalidInputError(f"{name} is empty; give a document with some text")
    return name, text


def chunk_option(func: Any) -> Any:
    return click.option(
        "--chunk-tokens", type=click.IntRange(min=1), default=2000, show_default=True,
        help="Largest chunk, in tokens (offline estimate).",
    )(func)


@click.command()
@click.argument("file", metavar="FILE|-")
@click.option("--instruction", "-i", default=INSTRUCTION, help="What to ask of every chunk (and of the whole).")
@chunk_option
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=5, show_default=True,
              help="Chunks in flight at once.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Save finished chunks to this file; running again resumes where it stopped.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Longest answer per request, in tokens.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr (on a terminal).")
@backend_options
def summarize(file: str, instruction: str, chunk_tokens: int, concurrency: int, checkpoint: str | None,
              max_tokens: int, progress: bool, model: str | None, base_url: str | None, force_sim: bool) -> int:
    """Summarize a long document (map-reduce over its chunks).

    The summary goes to stdout; progress, usage and cost to stderr.
    """
    from ..chunking import chunk_text
    from ..mapreduce import map_reduce
    from ..tokens import count_tokens

    name, text = read_document(file)
    chunks = chunk_text(text, max_tokens=chunk_tokens)
    total = count_tokens(text)
    with open_client(base_url, force_sim, model, max_concurrency=concurrency) as client:
        note(f"{name}: {total:,} tokens in {len(chunks)} chunks of at most {chunk_tokens:,}")
        try:
            result = map_reduce(chunks, instruction, client=client, concurrency=concurrency, checkpoint=checkpoint,
                                progress=progress, max_tokens=max_tokens)
        except KeyboardInterrupt:
            again = f"; run the same command again to resume from {checkpoint}" if checkpoint else ""
            note(f"interrupted{again}")
            return 130
        click.echo(result.text)
        u = result.usage
        note(
            f"{u['requests']} requests, {u['input_tokens']:,} input + {u['output_tokens']:,} output tokens, "
            f"cost {usd(result.cost)} ({client.model} prices)"
        )
    if result.failed:
        first = result.failed[0]
        note(
            f"error: {len(result.failed)} of {len(result.partials)} chunks failed and are missing from the "
            f"summary (chunk {first.chunk.index}: {one_line(str(first.error))}); run again"
            + (" with the same --checkpoint to redo only those" if checkpoint else " with --checkpoint FILE")
        )
        return 1
    return 0


@click.command()
@click.argument("file", metavar="FILE|-")
@chunk_option
@click.option("--exact", is_flag=True, help="Also count exactly with the API's count_tokens endpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@backend_options
def count(file: str, chunk_tokens: int, exact: bool, as_json: bool, model: str | None, base_url: str | None,
          force_sim: bool) -> int:
    """Count a document's tokens and chunks, and estimate its input cost per model.

    The estimate is offline; --exact asks the API's count_tokens endpoint (the real API with
    ANTHROPIC_API_KEY, --base-url, or else the embedded simulator).
    """
    from ..chunking import chunk_text
    from ..prices import PriceTable
    from ..tokens import count_tokens

    name, text = read_document(file)
    chunks = chunk_text(text, max_tokens=chunk_tokens)
    estimate = count_tokens(text)
    exact_tokens = None
    model = model or DEFAULT_MODEL
    if exact:
        with open_client(base_url, force_sim, model) as client:
            try:
                exact_tokens = client.count_tokens([{"role": "user", "content": text}])
            except ConvoError as exc:
                raise TokenCountError(
                    f"the exact count failed ({one_line(str(exc))}); the offline estimate is {estimate:,} "
                    "tokens (drop --exact to use it)"
                ) from None
    tokens = exact_tokens if exact_tokens is not None else estimate
    table = PriceTable.default()
    models = sorted(table.models, key=lambda m: (table.models[m].input, m))
    costs = {m: table.cost({"input_tokens": tokens}, m) for m in models}
    if as_json:
        click.echo(json.dumps({
            "file": name, "characters": len(text), "tokens_estimate": estimate, "tokens_exact": exact_tokens,
            "exact_model": model if exact else None, "chunk_tokens": chunk_tokens, "chunks": len(chunks),
            "input_cost_usd": costs,
        }, indent=2))
        return 0
    rows = [("tokens", f"{estimate:,}", "offline estimate")]
    if exact_tokens is not None:
        rows.append(("tokens, exact", f"{exact_tokens:,}", f"count_tokens, {model}, as one user message"))
    rows.append(("chunks", f"{len(chunks):,}", f"at most {chunk_tokens:,} tokens each"))
    width = max(len(r[1]) for r in rows)
    click.echo(f"{name}: {len(text):,} characters")
    for label, value, what in rows:
        click.echo(f"  {label:<14}{value:>{width}}  ({what})")
    click.echo(f"estimated input cost of {tokens:,} tokens")
    name_width = max(map(len, models))
    for m in models:
        click.echo(f"  {m:<{name_width}}  {usd(costs[m]):>10}")
    return 0
