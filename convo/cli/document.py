"""``convo summarize`` and ``convo count``: a long document, map-reduced or measured.

Both read UTF-8 files (or ``-`` for standard input) and cut them with :func:`convo.chunk_text`.
Results go to stdout; progress, usage and cost to stderr, so ``convo summarize doc.txt >
summary.txt`` keeps only the summary.

Spending: before ``summarize`` sends anything it prices the worst case — every chunk's request
at its estimated input plus ``--max-tokens`` of output, and every combining request with every
answer at ``--max-tokens`` — with a margin for the offline estimate. Above ``--max-usd`` it
refuses (on the simulator too, so the guard can be tried for free); on the real API above
:data:`CONFIRM_USD` it asks first when run on a terminal, and says so otherwise.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click

from .._exceptions import ConvoError, InvalidInputError, TokenCountError
from ..budget import BudgetExceededError
from ..models import DEFAULT_MODEL
from ._backend import (
    Backend,
    backend_options,
    choose,
    explain,
    note,
    one_line,
    open_client,
    usd,
)

INSTRUCTION = "Summarize this part of the document in a few sentences, keeping names, facts and conclusions."
#: Smallest --chunk-tokens: each chunk is a request, and below this the instruction and the
#: per-request overhead outweigh the text (a 6,400-token file would already take 64 requests).
MIN_CHUNK_TOKENS = 100
#: On the real API, ask before a summary whose worst case costs more than this (USD).
CONFIRM_USD = 1.0
#: How much the offline token estimate may fall short of the API's count (worst case).
ESTIMATE_MARGIN = 1.15
#: Models on the newer tokenizer (Claude Opus 4.7 and later; the catalogue's ``tokenizer``
#: label) count up to 35% more tokens for the same text, per Anthropic's migration notes.
NEW_TOKENIZER = 1.35


def estimate_margin(model: str) -> float:
    """The margin on the offline estimate for ``model``: larger on the newer tokenizer, and for
    a model the catalogue does not know (assume the larger count)."""
    from ..models import lookup

    info = lookup(model)
    return ESTIMATE_MARGIN * (1.0 if info is not None and info.tokenizer == "claude-3" else NEW_TOKENIZER)
#: Tokens a request adds to its text: the message wrapper, the instruction's framing.
REQUEST_OVERHEAD = 50
#: Combining requests fit in this many tokens (map_reduce's default context_tokens).
CONTEXT_TOKENS = 100_000


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


def _chunk_floor(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value < MIN_CHUNK_TOKENS:
        raise click.BadParameter(
            f"{value} is below {MIN_CHUNK_TOKENS}: every chunk is one request, and chunks that small cost more in "
            f"instructions and overhead than they hold in text; use {MIN_CHUNK_TOKENS} or more (default 2000)",
            ctx=ctx, param=param,
        )
    return value


def chunk_option(func: Any) -> Any:
    return click.option(
        "--chunk-tokens", type=int, default=2000, show_default=True, callback=_chunk_floor,
        help=f"Largest chunk, in tokens (offline estimate; at least {MIN_CHUNK_TOKENS}).",
    )(func)


def worst_case(chunk_tokens: list[int], instruction_tokens: int, max_tokens: int,
               context_tokens: int = CONTEXT_TOKENS, margin: float = ESTIMATE_MARGIN) -> tuple[int, int, int]:
    """(requests, input tokens, output tokens) of a map-reduce at most: every answer is
    ``max_tokens`` long and every estimate ``margin`` short (see :func:`estimate_margin`)."""
    per = instruction_tokens + REQUEST_OVERHEAD
    requests = len(chunk_tokens)
    inputs = sum(math.ceil(n * margin) + per for n in chunk_tokens)
    outputs = requests * max_tokens
    answers = requests
    room = max(2, (context_tokens - max_tokens - per) // (max_tokens + REQUEST_OVERHEAD))
    while answers > 1:  # combine level by level, in groups that fit one request
        groups = math.ceil(answers / room)
        requests += groups
        inputs += answers * (max_tokens + REQUEST_OVERHEAD) + groups * per
        outputs += groups * max_tokens
        answers = groups
    return requests, inputs, outputs


def spending_check(backend: Backend, cost: float, requests: int, max_usd: float | None, assume_yes: bool) -> None:
    """Refuse above --max-usd; on the real API, on a terminal, ask above CONFIRM_USD."""
    what = f"at most {usd(cost)} for {requests:,} requests (worst case, {'simulated' if backend.simulated else backend.kind})"
    if max_usd is not None and cost > max_usd:  # on the simulator too, so the guard can be tried for free
        raise BudgetExceededError(
            f"this summary could cost {what}, above --max-usd {usd(max_usd)}; nothing was sent. Raise --max-usd, or "
            "lower the cost with a larger --chunk-tokens, a smaller --max-tokens or a cheaper --model",
            needed=cost, left=max_usd,
        )
    if not backend.spends or assume_yes or cost <= CONFIRM_USD or (max_usd is not None and cost <= max_usd):
        return
    if not sys.stdin.isatty():
        note(f"this summary may cost {what}; --max-usd USD caps it")
        return
    # Asked on stderr and read from stdin by hand: click.confirm (8.1) writes a space to stdout.
    click.echo(f"convo: this summary may cost {what}. Go on? [y/N]: ", err=True, nl=False)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise BudgetExceededError(
            "not confirmed; nothing was sent (--max-usd USD sets a limit without asking, --yes skips the question)",
            needed=cost, left=0.0,
        )


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
@click.option("--max-usd", type=click.FloatRange(min=0), default=None, metavar="USD",
              help="Refuse to start when the worst-case cost is above this.")
@click.option("--yes", "-y", "assume_yes", is_flag=True,
              help=f"Do not ask before spending more than ${CONFIRM_USD:.2f} on the real API.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr (on a terminal).")
@click.option("--batch", "use_batch", is_flag=True,
              help="Through the Message Batches API: half price, up to 24 h; with --checkpoint a rerun resumes the batches.")
@backend_options
def summarize(file: str, instruction: str, chunk_tokens: int, concurrency: int, checkpoint: str | None,
              max_tokens: int, max_usd: float | None, assume_yes: bool, progress: bool, use_batch: bool,
              model: str | None, base_url: str | None, force_sim: bool, timeout: float | None) -> int:
    """Summarize a long document (map-reduce over its chunks).

    The summary goes to stdout; progress, usage and cost to stderr. Before sending anything it
    prices the worst case: --max-usd caps it, and on the real API a terminal asks above $1.
    """
    from ..chunking import chunk_text
    from ..mapreduce import map_reduce
    from ..prices import PriceTable
    from ..tokens import count_tokens

    name, text = read_document(file)
    chunks = chunk_text(text, max_tokens=chunk_tokens)
    total = count_tokens(text)
    backend = choose(base_url, force_sim)
    model = model or DEFAULT_MODEL
    requests, inputs, outputs = worst_case([c.tokens for c in chunks], count_tokens(instruction), max_tokens,
                                           margin=estimate_margin(model))
    worst = PriceTable.default().cost({"input_tokens": inputs, "output_tokens": outputs}, model, batch=use_batch)
    note(f"{name}: {total:,} tokens in {len(chunks)} chunks of at most {chunk_tokens:,}")
    spending_check(backend, worst, requests, max_usd, assume_yes)
    with open_client(backend, model, timeout=timeout, max_concurrency=concurrency) as (client, backend):
        try:
            result = map_reduce(chunks, instruction, client=client, concurrency=concurrency, checkpoint=checkpoint,
                                progress=progress, max_tokens=max_tokens, mode="batch" if use_batch else "sync")
        except KeyboardInterrupt:
            again = f"; run the same command again to resume from {checkpoint}" if checkpoint else ""
            note(f"interrupted{again}")
            return 130
        click.echo(result.text)
        u = result.usage
        label = f"SIMULATED: what {client.model} would charge for the simulator's tokens" if backend.simulated \
            else f"{client.model} prices"
        batched = f" at batch prices; {usd(result.sync_cost)} through messages.create" if use_batch else ""
        note(
            f"{u['requests']} requests, {u['input_tokens']:,} input + {u['output_tokens']:,} output tokens, "
            f"cost {usd(result.cost)}{batched} ({label})"
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
@click.argument("files", metavar="FILE|-...", nargs=-1, required=True)
@chunk_option
@click.option("--exact", is_flag=True, help="Also count exactly with the API's count_tokens endpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@backend_options
def count(files: tuple[str, ...], chunk_tokens: int, exact: bool, as_json: bool, model: str | None,
          base_url: str | None, force_sim: bool, timeout: float | None) -> int:
    """Count documents' tokens and chunks, and estimate their input cost per model.

    Several files get a line each and a total. The estimate is offline; --exact asks the API's
    count_tokens endpoint (the real API with ANTHROPIC_API_KEY, or --base-url). The embedded
    simulator's count is not Claude's, so --exact uses it only with --sim.
    """
    from ..chunking import chunk_text
    from ..prices import PriceTable
    from ..tokens import count_tokens

    model = model or DEFAULT_MODEL
    backend = choose(base_url, force_sim) if exact else None
    if backend is not None and backend.simulated and not force_sim:
        raise click.UsageError(
            "--exact asks the API's count_tokens, but there is no ANTHROPIC_API_KEY: set it, or give --base-url URL; "
            "--sim counts on the embedded simulator (an offline stand-in whose count is not Claude's)"
        )
    docs: list[dict[str, Any]] = []
    for source in files:
        name, text = read_document(source)
        docs.append({"file": name, "characters": len(text), "tokens_estimate": count_tokens(text),
                     "tokens_exact": None, "chunks": len(chunk_text(text, max_tokens=chunk_tokens)), "text": text})
    if backend is not None:
        with open_client(backend, model, timeout=timeout) as (client, backend):
            for doc in docs:
                try:
                    doc["tokens_exact"] = client.count_tokens([{"role": "user", "content": doc["text"]}])
                except ConvoError as exc:
                    why = explain(exc, backend, model)
                    raise TokenCountError(
                        f"the exact count of {doc['file']} failed ({one_line(why)}); the offline estimate is "
                        f"{doc['tokens_estimate']:,} tokens (drop --exact to use it)"
                    ) from None
    for doc in docs:
        del doc["text"]
    table = PriceTable.default()
    models = sorted(table.models, key=lambda m: (table.models[m].input, m))

    def tokens_of(doc: dict[str, Any]) -> int:
        return int(doc["tokens_exact"] if doc["tokens_exact"] is not None else doc["tokens_estimate"])

    tokens = sum(tokens_of(d) for d in docs)
    costs = {m: table.cost({"input_tokens": tokens}, m) for m in models}
    kind = backend.kind if backend is not None else "offline"
    if as_json:
        totals = {k: sum(d[k] for d in docs) for k in ("characters", "tokens_estimate", "chunks")}
        exact_total = sum(d["tokens_exact"] for d in docs) if backend is not None else None
        data: dict[str, Any] = {
            "backend": kind, "exact_model": model if exact else None, "chunk_tokens": chunk_tokens,
            **(docs[0] if len(docs) == 1 else {"files": docs, **totals, "tokens_exact": exact_total}),
            "input_cost_usd": costs,
        }
        click.echo(json.dumps(data, indent=2))
        return 0
    exact_what = f"count_tokens, {model}, as one user message" + (", SIMULATED" if kind == "simulator" else "")
    rows = [(d, f"{d['characters']:,}", f"{d['tokens_estimate']:,}",
             "" if d["tokens_exact"] is None else f"{d['tokens_exact']:,}", f"{d['chunks']:,}") for d in docs]
    if len(docs) == 1:
        d = docs[0]
        lines = [("tokens", rows[0][2], "offline estimate")]
        if d["tokens_exact"] is not None:
            lines.append(("tokens, exact", rows[0][3], exact_what))
        lines.append(("chunks", rows[0][4], f"at most {chunk_tokens:,} tokens each"))
        width = max(len(r[1]) for r in lines)
        click.echo(f"{d['file']}: {d['characters']:,} characters")
        for label, value, what in lines:
            click.echo(f"  {label:<14}{value:>{width}}  ({what})")
    else:
        head = ["file", "characters", "tokens", *(["exact"] if backend is not None else []), "chunks"]
        body = [[str(d["file"]), c, t, *([x] if backend is not None else []), n] for d, c, t, x, n in rows]
        total = ["total", f"{sum(d['characters'] for d in docs):,}", f"{sum(d['tokens_estimate'] for d in docs):,}",
                 *([f"{sum(d['tokens_exact'] for d in docs):,}"] if backend is not None else []),
                 f"{sum(d['chunks'] for d in docs):,}"]
        widths = [max(len(r[i]) for r in [head, *body, total]) for i in range(len(head))]
        for r in [head, *body, total]:
            click.echo("  ".join(r[0].ljust(widths[0]) if i == 0 else r[i].rjust(widths[i]) for i in range(len(r))))
        click.echo(f"tokens: offline estimate{'; exact: ' + exact_what if backend is not None else ''}; "
                   f"chunks of at most {chunk_tokens:,} tokens")
    click.echo(f"estimated input cost of {tokens:,} tokens" + (" (SIMULATED count)" if kind == "simulator" else ""))
    name_width = max(map(len, models))
    for m in models:
        click.echo(f"  {m:<{name_width}}  {usd(costs[m]):>10}")
    return 0
