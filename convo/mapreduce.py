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
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Self

from ._exceptions import InvalidConfigError
from ._progress import OnProgress, Progress
from ._telemetry import span
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
    reduce needed before the final request (0: all partials fit in one).
    """

    text: str
    partials: list[Partial]
    usage: dict[str, int]
    cost: float | None
    levels: int = 0

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
) -> MapReduceResult:
    """Run ``instruction`` over every chunk of a document, then combine the answers into one.

    ``text_or_chunks``: a text (cut into chunks of at most ``chunk_tokens``), or chunks you cut
    (strings or :class:`convo.Chunk`). ``client``: a :class:`convo.Client`. ``concurrency``
    defaults to the client's ``max_concurrency``. ``reduce_instruction`` replaces the default
    combining instruction. ``max_tokens`` bounds each answer; ``context_tokens`` bounds each
    combining request (input + ``max_tokens``). ``checkpoint``: a file path that stores finished
    chunks, so a second run after a crash redoes only the rest. ``progress``: a progress bar
    (``tqdm.auto``: on a terminal, or a widget in Jupyter). ``on_progress(done, total)``: called
    after every chunk's answer (those from the checkpoint included), for applications. Raises the first chunk's error if every chunk failed.
    """
    from .client import Client

    if not isinstance(client, Client):
        raise InvalidConfigError(f"map_reduce needs a convo.Client, got {type(client).__name__}; use amap_reduce for an AsyncClient")
    job = _Job.build(text_or_chunks, instruction, client, chunk_tokens, concurrency, reduce_instruction,
                     max_tokens, context_tokens, model)
    with _Run(job, client, checkpoint, progress, on_progress) as run, span("map_reduce", _attributes(job)):
        core = run.steps()
        answer: Any = None
        while True:
            try:
                ask = core.send(answer)
            except StopIteration as stop:
                result: MapReduceResult = stop.value
                return result
            if isinstance(ask, _Batch):
                answer = client.batch(ask.requests, concurrency=job.concurrency, checkpoint=ask.checkpoint,
                                      progress=False, on_progress=ask.on_progress)
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
) -> MapReduceResult:
    """The async twin of :func:`map_reduce` (``client`` is a :class:`convo.AsyncClient`)."""
    from .client import AsyncClient

    if not isinstance(client, AsyncClient):
        raise InvalidConfigError(f"amap_reduce needs a convo.AsyncClient, got {type(client).__name__}; use map_reduce for a Client")
    job = _Job.build(text_or_chunks, instruction, client, chunk_tokens, concurrency, reduce_instruction,
                     max_tokens, context_tokens, model)
    with _Run(job, client, checkpoint, progress, on_progress) as run, span("map_reduce", _attributes(job)):
        core = run.steps()
        answer: Any = None
        while True:
            try:
                ask = core.send(answer)
            except StopIteration as stop:
                result: MapReduceResult = stop.value
                return result
            if isinstance(ask, _Batch):
                answer = await client.batch(ask.requests, concurrency=job.concurrency, checkpoint=ask.checkpoint,
                                            progress=False, on_progress=ask.on_progress)
            else:
                answer = await client.create(**ask.request)


def _attributes(job: _Job) -> dict[str, Any]:
    """The map-reduce span's attributes (its calls are its children)."""
    return {"gen_ai.request.model": job.model, "convo.chunks": len(job.chunks)}


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

    @classmethod
    def build(cls, source: Any, instruction: Any, client: Any, chunk_tokens: Any, concurrency: Any,
              reduce_instruction: Any, max_tokens: Any, context_tokens: Any, model: Any) -> _Job:
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
                   max_tokens, context_tokens)

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
        try:
            cost: float | None = self.prices.cost(usage, getattr(reply, "model", None) or self.job.model)
        except UnknownModelError:
            cost = None
        self.cost = None if cost is None or self.cost is None else self.cost + cost

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
        return MapReduceResult(text, partials, self.usage, self.cost, levels)

    def _reduce(self, texts: list[str]) -> Generator[_Batch | _Create, Any, tuple[str, int]]:
        """Combine ``texts`` into one answer; returns (answer, group-combining levels)."""
        job = self.job
        if len(texts) == 1:
            return texts[0], 0
        levels = 0
        while True:
            groups = job.groups(texts)
            if len(groups) == 1:
                reply = yield _Create(job.reduce_request(groups[0]))
                self.charge(reply)
                return _text(reply), levels
            if len(groups) == len(texts):
                raise InvalidConfigError(
                    f"context_tokens={job.context_tokens} fits only one answer per combining request, so "
                    f"{len(texts)} answers can never be combined; raise context_tokens or lower max_tokens"
                )
            many = [k for k, g in enumerate(groups) if len(g) > 1]  # a group of one passes on as it is
            results = yield _Batch([job.reduce_request(groups[k]) for k in many])
            combined = {k: r for k, r in zip(many, results, strict=True)}
            texts = []
            for k, group in enumerate(groups):
                result = combined.get(k)
                if result is None:
                    texts.append(group[0])
                    continue
                if result.error is not None:
                    raise result.error
                self.charge(result.message)
                texts.append(_text(result.message))
            levels += 1
