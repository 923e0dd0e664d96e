"""``convo batch submit|status|collect``: JSONL of requests through the Message Batches API.

    convo batch submit requests.jsonl --max-usd 5   # prints the batch id; returns at once
    convo batch status msgbatch_01...               # JSON: processing_status, request_counts
    convo batch collect msgbatch_01... > out.jsonl  # waits for the end; one JSON line per request

Each input line is one request: ``create``'s arguments (``{"messages": [...], "max_tokens":
256, "model": ...}``) or the API's own form (``{"custom_id": ..., "params": {...}}``, whose
``params`` are sent). In the batch, ``custom_id`` is the line's index (0-based, blank lines
skipped); ``collect`` writes one line per request in input order, with that ``index``, the
reply's ``text`` and the API's ``result``. ``--max-usd`` is a budget:
``submit`` holds every request's worst case at batch prices and refuses, request by request, what
does not fit; ``collect`` settles the results into it and holds what it sends again.

The batch lives at the backend: across commands that is the real API or a ``--base-url``
server (``convo sim --port 8080`` for a free try); the embedded simulator stops with the command.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .._exceptions import InvalidInputError
from ._backend import backend_options, choose, note, one_line, open_client, usd
from .document import read_document

__all__ = ["batch"]


def read_requests(source: str) -> list[dict[str, Any]]:
    """The requests of a JSONL file (or ``-``); a bad line says which and why."""
    name, text = read_document(source)
    requests = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{name}, line {number}: not JSON ({exc.msg}); each line is one request") from None
        if isinstance(item, dict) and isinstance(item.get("params"), dict):
            item = item["params"]
        if not isinstance(item, dict) or "messages" not in item:
            raise InvalidInputError(
                f"{name}, line {number}: a request needs 'messages', e.g. "
                '{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 256}'
            )
        requests.append(item)
    if not requests:
        raise InvalidInputError(f"{name} holds no request; give one JSON object per line")
    return requests


def _budget(max_usd: float | None) -> dict[str, Any]:
    from ..budget import Budget

    return {"budget": Budget(max_usd)} if max_usd else {}


def _line(result: Any) -> dict[str, Any]:
    if result.ok:
        return {"index": result.index, "custom_id": str(result.index), "text": result.text,
                "result": {"type": "succeeded", "message": result.message.model_dump(mode="json")}}
    error = result.error
    kind = getattr(error, "error_type", None) or type(error).__name__
    return {"index": result.index, "custom_id": str(result.index), "text": None,
            "result": {"type": "errored", "error": {"type": kind, "message": one_line(str(error))}}}


def _max_usd(func: Any) -> Any:
    return click.option("--max-usd", type=click.FloatRange(min=0, min_open=True), default=None, metavar="USD",
                        help="A budget: hold each request's worst case at batch prices; refuse what does not fit.")(func)


@click.group()
def batch() -> None:
    """Send JSONL of requests through the Message Batches API (half price; up to 24 h)."""


@batch.command()
@click.argument("file", metavar="FILE.jsonl|-")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Record the job here (requests, batch ids, results), for `collect CHECKPOINT`.")
@_max_usd
@backend_options
def submit(file: str, checkpoint: str | None, max_usd: float | None, model: str | None, base_url: str | None,
           force_sim: bool, timeout: float | None) -> int:
    """Submit the requests of FILE.jsonl; prints the batch id and returns at once."""
    requests = read_requests(file)
    backend = choose(base_url, force_sim)
    if backend.simulated:
        note("the embedded simulator stops when this command ends, and the batch with it; for status and collect "
             "in later commands run `convo sim --port 8080` and pass --base-url http://127.0.0.1:8080")
    with open_client(backend, model, timeout=timeout, **_budget(max_usd)) as (client, backend):
        job = client.batch(requests, via="batches_api", wait=False, checkpoint=checkpoint, progress=False)
        refused = [r for r in job.unsent if not r.ok]
        for r in refused[:10]:
            note(f"request {r.index} was not sent: {one_line(str(r.error))}")
        for batch_id in job.ids:
            click.echo(batch_id)
        sent = len(requests) - len(job.unsent)
        where = f" (checkpoint {checkpoint})" if checkpoint else ""
        note(f"{sent} of {len(requests)} requests submitted in {len(job.ids)} batch(es){where}; "
             f"`convo batch status ID` and `convo batch collect {checkpoint or 'ID'}` follow it")
    return 1 if refused else 0


@batch.command()
@click.argument("source", metavar="ID|CHECKPOINT")
@backend_options
def status(source: str, model: str | None, base_url: str | None, force_sim: bool, timeout: float | None) -> int:
    """Where a batch (or a checkpoint's job) stands, as JSON."""
    from ..batch_job import BatchJob

    backend = choose(base_url, force_sim)
    with open_client(backend, model, timeout=timeout) as (client, backend):
        state = BatchJob.resume(source, client=client).status()
        click.echo(json.dumps({"backend": backend.kind, "ids": list(state.batch_ids),
                               "processing_status": state.processing_status,
                               "request_counts": state.request_counts}, indent=2))
    return 0


@batch.command()
@click.argument("source", metavar="ID|CHECKPOINT")
@click.option("--max-wait", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Give up waiting after this long (default 48 h); the batch goes on.")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Send again items that errored in passing or expired (needs a CHECKPOINT).")
@_max_usd
@backend_options
def collect(source: str, max_wait: float | None, retries: int, max_usd: float | None, model: str | None,
            base_url: str | None, force_sim: bool, timeout: float | None) -> int:
    """Wait for the batch to end, then write one JSON line per request, in input order."""
    from ..batch_job import BatchJob

    backend = choose(base_url, force_sim)
    with open_client(backend, model, timeout=timeout, **_budget(max_usd)) as (client, backend):
        results = BatchJob.resume(source, client=client).results(max_wait=max_wait, retries=retries)
        for result in results:
            click.echo(json.dumps(_line(result)))
        failed = [r for r in results if not r.ok]
        label = "SIMULATED " if backend.simulated else ""
        note(f"{len(results) - len(failed)} succeeded, {len(failed)} failed; {label}cost {usd(client.stats.cost_usd)} "
             "at batch prices")
    return 1 if failed else 0
