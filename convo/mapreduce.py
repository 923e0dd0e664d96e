"""map_reduce: ask the same thing of every part of a long document, then combine the answers.

>>> result = convo.map_reduce(report, "List the risks this part mentions.", client=client)
>>> print(result.text)
>>> [p.error for p in result.failed]      # chunks that failed after the client's retries

The document is cut into chunks (:func:`convo.chunk_text`); the chunks go out as one
``client.batch`` — concurrently, each with the client's retries, rate limits, budget, cache and
redaction — and the answers (``partials``, in document order) are combined by one more
``client.create``. When they are too many to fit one request of ``context_tokens``, they are
combined in groups first (another ``client.batch``), level by level, until they fit.

It uses the client's public methods only, and is written once, as a generator of the calls it
needs, so :func:`map_reduce` (a :class:`convo.Client`) and :func:`amap_reduce` (an
:class:`convo.AsyncClient`) share every decision. ``checkpoint=path`` is the map batch's
checkpoint: each finished chunk is stored at once (SQLite, fsynced), keyed by its index and a
digest of its request — the chunk text, the instruction, the model — so running again after a
crash or Ctrl-C sends only the chunks that had not finished, and a different document never
reuses stale answers. With a client's ``redactor``, the checkpoint holds the answers as the
server wrote them (placeholders, never the values they stand for); ``partials`` and ``text``
are restored.

``mode="batch"`` sends the map step and each combining level as Message Batches
(``client.batch(..., via="batches_api")``, half the price, up to 24 h of latency) and the final
combine as a batch of one. ``result.cost`` is then at batch prices and ``result.sync_cost`` what
the same tokens cost through ``messages.create``. With ``checkpoint=path`` each batch's id is
stored the moment it exists, so a run killed while waiting resumes the same batches and sends
nothing twice; the combining levels and the final combine keep their own checkpoints next to it
(``path.level1``, ``path.level2``, ..., ``path.final``; in either mode).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Self

from ._exceptions import InvalidConfigError
from ._progress import OnProgress, Progress
from .chunking import Chunk, chunk_text
from .messages import to_message
from .prices import UnknownModelError

__all__ = ["MapReduceResult", "Partial", "amap_reduce", "map_reduce"]

REDUCE = (
    "Above are answers to the task below, one for each part of a longer document, in document "
    "order. Combine them into one answer to the task for the whole document: keep every point "
    "that matters, merge repeats, and do not mention the parts."
)
_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
MODES = ("sync", "batch")


@dataclass(frozen=True)
class Partial:
    """One chunk's answer: ``text``, or the ``error`` it still failed with after the retries.
    ``cached`` is True when the answer came from the checkpoint (no request was sent)."""

    chunk: Chunk
    text: str | None = None
    error: BaseException | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        """Whether this chunk was answered (``error`` is None)."""
        return self.error is None


@dataclass(frozen=True)
class MapReduceResult:
    """``text`` is the combined answer; ``partials`` the per-chunk answers in document order.

    ``usage`` sums the tokens of the requests this run sent (``requests`` counts them; answers
    read back from a checkpoint cost nothing); ``cost`` is their price in USD (None when the
    price table does not know the model). ``levels`` is how many rounds of group-combining the
    reduce needed before the final request (0: all partials fit in one). ``mode`` is how the
    requests went (``"sync"`` or ``"batch"``); ``sync_cost`` is what they cost, or would have,
    through ``messages.create`` (equal to ``cost`` in sync mode, twice it in batch mode).
    """

    text: str
    partials: list[Partial]
    usage: dict[str, int]
    cost: float | None
    levels: int = 0
    mode: str = "sync"
    sync_cost: float | None = None

    @property
    def failed(self) -> list[Partial]:
        """The chunks whose answer is missing from ``text`` because they failed."""
        return [p for p in self.partials if not p.ok]

    @property
    def ok(self) -> bool:
        """Whether every chunk was answered, so ``text`` covers the whole document."""
        return not self.failed


def map_reduce(
    text_or_chunks: str | Sequence[str] | Sequence[Chunk],
    instruction: str,
    *,
    client: Any,
    chunk_tokens: int = 2000,
    concurrency: int | None = None,
    reduce_instruction: str | None = None,
    checkpoint: Any = None,
    progress: bool = True,
    max_tokens: int = 1024,
    context_tokens: int = 100_000,
    model: str | None = None,
    on_progress: OnProgress | None = None,
    mode: str = "sync",
) -> MapReduceResult:
    """Run ``instruction`` over every chunk of a document, then combine the answers into one.

    ``text_or_chunks``: a text (cut into chunks of at most ``chunk_tokens``), or chunks you cut
    (strings or :class:`convo.Chunk`). ``client``: a :class:`convo.Client`. ``concurrency``
    defaults to the client's ``max_concurrency``. ``reduce_instruction`` replaces the default
    combining instruction. ``max_tokens`` bounds each answer; ``context_tokens`` bounds each
    combining request (input + ``max_tokens``). ``checkpoint``: a file path that stores finished
    chunks, so a second run after a crash redoes only the rest. ``progress``: a progress bar
    (``tqdm.auto``: on a terminal, or a widget in Jupyter). ``on_progress(done, total)``: called
    after every chunk's answer (those from the checkpoint included), for applications.
    ``mode="batch"``: through the Message Batches API (see the module doc). Raises the first
    chunk's error if every chunk failed.
    """
    from .client import Client

    if not isinstance(client, Client):
        raise InvalidConfigError(f"map_reduce needs a convo.Client, got {type(client).__name__}; use amap_reduce for an AsyncClient")
    job = _Job.build(text_or_chunks, instruction, client, chunk_tokens, concurrency, reduce_instruction,
                     max_tokens, context_tokens, model, mode)
    with _Run(job, client, checkpoint, progress, on_progress) as run:
        core = run.steps()
        answer: Any = None
        while True:
            try:
                ask = core.send(answer)
            except StopIteration as stop:
                result: MapReduceResult = stop.value
                return result
            if isinstance(ask, _Batch):
                answer = client.batch(ask.requests, **job.batch_options(ask))
            else:
                answer = client.create(**ask.request)


async def amap_reduce(
    text_or_chunks: str | Sequence[str] | Sequence[Chunk],
    instruction: str,
    *,
    client: Any,
    chunk_tokens: int = 2000,
    concurrency: int | None = None,
    reduce_instruction: str | None = None,
    checkpoint: Any = None,
    progress: bool = True,
    max_tokens: int = 1024,
    context_tokens: int = 100_000,
    model: str | None = None,
    on_progress: OnProgress | None = None,
    mode: str = "sync",
) -> MapReduceResult:
    """The async twin of :func:`map_reduce` (``client`` is a :class:`convo.AsyncClient`)."""
    from .client import AsyncClient

    if not isinstance(client, AsyncClient):
        raise InvalidConfigError(f"amap_reduce needs a convo.AsyncClient, got {type(client).__name__}; use map_reduce for a Client")
    job = _Job.build(text_or_chunks, instruction, client, chunk_tokens, concurrency, reduce_instruction,
                     max_tokens, context_tokens, model, mode)
    with _Run(job, client, checkpoint, progress, on_progress) as run:
        core = run.steps()
        answer: Any = None
        while True:
            try:
                ask = core.send(answer)
            except StopIteration as stop:
                result: MapReduceResult = stop.value
                return result
            if isinstance(ask, _Batch):
                answer = await client.batch(ask.requests, **job.batch_options(ask))
            else:
                answer = await client.create(**ask.request)


def _positive(value: Any, what: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidConfigError(f"{what} must be a positive int, got {value!r}; {hint}")
    return value


@dataclass
class _Job:
    """A validated map-reduce: the chunks and how to ask about them."""

    chunks: list[Chunk]
    instruction: str
    reduce_instruction: str
    counter: Any
    model: str
    concurrency: int
    max_tokens: int
    context_tokens: int
    mode: str = "sync"

    @classmethod
    def build(cls, source: Any, instruction: Any, client: Any, chunk_tokens: Any, concurrency: Any,
              reduce_instruction: Any, max_tokens: Any, context_tokens: Any, model: Any, mode: Any) -> _Job:
        if mode not in MODES:
            raise InvalidConfigError(f"mode must be 'sync' (messages.create) or 'batch' (Message Batches API), got {mode!r}")
        if not isinstance(instruction, str) or not instruction.strip():
            raise InvalidConfigError("instruction must be a non-empty str, e.g. 'List the key claims in this part.'")
        if reduce_instruction is not None and (not isinstance(reduce_instruction, str) or not reduce_instruction.strip()):
            raise InvalidConfigError("reduce_instruction must be a non-empty str, or None for the default")
        _positive(chunk_tokens, "chunk_tokens", "give the largest chunk in tokens, e.g. chunk_tokens=2000")
        _positive(max_tokens, "max_tokens", "give the longest answer per request, e.g. max_tokens=1024")
        _positive(context_tokens, "context_tokens", "give the context window to fit each request in, e.g. 100_000")
        concurrency = client.max_concurrency if concurrency is None else concurrency
        _positive(concurrency, "concurrency", "give how many chunks may be in flight, or None for the client's")
        model = model or client.model
        if not model:
            raise InvalidConfigError("no model: pass model=... or Client(model=...)")
        counter = client.counter
        chunks = _chunks(source, chunk_tokens, counter)
        return cls(chunks, instruction.strip(), (reduce_instruction or REDUCE).strip(), counter, model, concurrency,
                   max_tokens, context_tokens, mode)

    def batch_options(self, ask: _Batch) -> dict[str, Any]:
        """``client.batch``'s keyword arguments for ``ask`` in this job's mode."""
        via = "batches_api" if self.mode == "batch" else "messages"
        return {"concurrency": self.concurrency, "checkpoint": ask.checkpoint, "progress": False,
                "on_progress": ask.on_progress, "via": via}

    def request(self, content: str) -> dict[str, Any]:
        return {"model": self.model, "max_tokens": self.max_tokens, "messages": [{"role": "user", "content": content}]}

    def map_request(self, i: int) -> dict[str, Any]:
        n = len(self.chunks)
        return self.request(f'<document part="{i + 1} of {n}">\n{self.chunks[i].text}\n</document>\n\n{self.instruction}')

    def reduce_request(self, texts: Sequence[str]) -> dict[str, Any]:
        answers = "\n\n".join(f'<answer part="{k + 1}">\n{t}\n</answer>' for k, t in enumerate(texts))
        return self.request(f"{answers}\n\n{self.reduce_instruction}\n\nThe task: {self.instruction}")

    def groups(self, texts: list[str]) -> list[list[str]]:
        """Consecutive groups whose combining request fits ``context_tokens``, greedily."""
        count = self.counter.count_text
        empty = self.reduce_request([])
        room = self.context_tokens - self.max_tokens - self.counter.count_request([to_message(m) for m in empty["messages"]])
        groups: list[list[str]] = []
        used = room + 1
        for t in texts:
            n = count(t) + 12  # the <answer> wrapper
            if n > room:
                raise InvalidConfigError(
                    f"one answer takes {n} tokens but a combining request has room for {max(room, 0)} "
                    f"(context_tokens={self.context_tokens}, max_tokens={self.max_tokens}); raise "
                    "context_tokens or lower max_tokens"
                )
            if used + n > room:
                groups.append([])
                used = 0
            groups[-1].append(t)
            used += n
        return groups


def _chunks(source: Any, chunk_tokens: int, counter: Any) -> list[Chunk]:
    if isinstance(source, str):
        if not source.strip():
            raise InvalidConfigError("the document is empty; give the text to analyze")
        return list(chunk_text(source, max_tokens=chunk_tokens, counter=counter))
    if isinstance(source, (bytes, bytearray)) or not isinstance(source, Sequence):
        raise InvalidConfigError(f"give a str or a list of chunks (str or convo.Chunk), got {type(source).__name__}")
    if not source:
        raise InvalidConfigError("the list of chunks is empty; give at least one")
    chunks: list[Chunk] = []
    offset = 0
    for i, item in enumerate(source):
        if isinstance(item, str):
            item = Chunk(text=item, start=offset, end=offset + len(item), tokens=counter.count_text(item), index=i)
        elif not isinstance(getattr(item, "text", None), str):
            raise InvalidConfigError(f"chunk {i} is a {type(item).__name__}; give str or convo.Chunk items")
        if not item.text.strip():
            raise InvalidConfigError(f"chunk {i} is empty or blank; the API rejects empty messages")
        chunks.append(item)
        offset = item.end
    return chunks


def _text(reply: Any) -> str:
    return "".join(b.text for b in reply.content if b.type == "text")


@dataclass(frozen=True)
class _Batch:
    """Ask the driver for ``client.batch(requests, checkpoint=...)``."""

    requests: list[dict[str, Any]]
    checkpoint: Any = None
    on_progress: Any = None


@dataclass(frozen=True)
class _Create:
    """Ask the driver for ``client.create(**request)``."""

    request: dict[str, Any]


Steps = Generator["_Batch | _Create", Any, "MapReduceResult"]


class _Run:
    """One execution: the job, its progress bar, the partials and the usage."""

    def __init__(self, job: _Job, client: Any, checkpoint: Any, progress: bool, on_progress: OnProgress | None) -> None:
        self.job = job
        self.prices = client.prices
        self.checkpoint = checkpoint
        self.bar = Progress(len(job.chunks), desc="map", unit="chunk", bar=progress, on_progress=on_progress)
        self.usage = dict.fromkeys((*_USAGE_KEYS, "requests"), 0)
        self.cost: float | None = 0.0
        self.sync_cost: float | None = 0.0

    def checkpoint_of(self, level: int | str) -> Any:
        """The checkpoint of a combining level (or ``"final"``): a file of its own next to the map's."""
        if self.checkpoint is None:
            return None
        return os.fspath(self.checkpoint) + f".level{level}" if isinstance(level, int) else os.fspath(self.checkpoint) + f".{level}"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def charge(self, reply: Any) -> None:
        """Add a reply this run paid for to ``usage`` and ``cost``."""
        self.usage["requests"] += 1
        usage = getattr(reply, "usage", None)
        for key in _USAGE_KEYS:
            self.usage[key] += getattr(usage, key, 0) or 0
        model = getattr(reply, "model", None) or self.job.model
        try:  # at the price it was billed (the batch discount when it went through the Batches API)
            cost: float | None = self.prices.cost(usage, model)
            sync: float | None = self.prices.cost(usage, model, batch=False)
        except UnknownModelError:
            cost = sync = None
        self.cost = None if cost is None or self.cost is None else self.cost + cost
        self.sync_cost = None if sync is None or self.sync_cost is None else self.sync_cost + sync

    def _progress(self, done: int, total: int | None) -> None:
        self.bar.update(done - self.bar.done)

    def steps(self) -> Steps:
        job = self.job
        results = yield _Batch([job.map_request(i) for i in range(len(job.chunks))], self.checkpoint, self._progress)
        partials: list[Partial] = []
        for chunk, result in zip(job.chunks, results, strict=True):
            if not result.ok:
                partials.append(Partial(chunk, error=result.error))
                continue
            if not result.from_checkpoint:
                self.charge(result.message)
            partials.append(Partial(chunk, _text(result.message), cached=result.from_checkpoint))
        answers = [p.text or "" for p in partials if p.ok]
        if not answers:
            first = partials[0].error
            raise first if first is not None else InvalidConfigError("no chunk was answered")
        self.bar.set_description("combining")
        text, levels = yield from self._reduce(answers)
        return MapReduceResult(text, partials, self.usage, self.cost, levels, job.mode, self.sync_cost)

    def _reduce(self, texts: list[str]) -> Generator[_Batch | _Create, Any, tuple[str, int]]:
        """Combine ``texts`` into one answer; returns (answer, group-combining levels)."""
        job = self.job
        if len(texts) == 1:
            return texts[0], 0
        levels = 0
        while True:
            groups = job.groups(texts)
            if len(groups) == 1:
                reply = yield from self._final(job.reduce_request(groups[0]))
                return _text(reply), levels
            if len(groups) == len(texts):
                raise InvalidConfigError(
                    f"context_tokens={job.context_tokens} fits only one answer per combining request, so "
                    f"{len(texts)} answers can never be combined; raise context_tokens or lower max_tokens"
                )
            many = [k for k, g in enumerate(groups) if len(g) > 1]  # a group of one passes on as it is
            results = yield _Batch([job.reduce_request(groups[k]) for k in many], self.checkpoint_of(levels + 1))
            combined = {k: r for k, r in zip(many, results, strict=True)}
            texts = []
            for k, group in enumerate(groups):
                result = combined.get(k)
                if result is None:
                    texts.append(group[0])
                    continue
                if result.error is not None:
                    raise result.error
                if not result.from_checkpoint:
                    self.charge(result.message)
                texts.append(_text(result.message))
            levels += 1

    def _final(self, request: dict[str, Any]) -> Generator[_Batch | _Create, Any, Any]:
        """The last combining request: ``client.create``, or in batch mode a batch of one."""
        if self.job.mode == "sync":
            reply = yield _Create(request)
            self.charge(reply)
            return reply
        (result,) = yield _Batch([request], self.checkpoint_of("final"))
        if result.error is not None:
            raise result.error
        if not result.from_checkpoint:
            self.charge(result.message)
        return result.message
