"""The simulator's state: its configuration, the parts that keep state between requests, and
the record of the requests it received.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import protocol as p
from . import rules
from .batches import BatchFaults, BatchStore, ScaledClock
from .cache import PromptCache
from .errors import ErrorReply
from .events import message_json
from .faults import Faults
from .limits import RateLimits
from .model import OfflineModel, Reply
from .request import Request, parse_message_request
from .tokens import Tokenizer

__all__ = ["MODEL", "RECORD", "RID", "Recorded", "SimState"]

#: Per-request values the middleware and the handlers share: its id, the model it names, its record.
RID = web.RequestKey("rid", str)
MODEL = web.RequestKey("model", str)


@dataclass
class Recorded:
    """One request as the simulator received it; secrets in headers are masked."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None  # the parsed JSON body, when there was one
    request_id: str = ""
    status: int | None = None  # the status it was answered with
    fault: str | None = None  # the fault applied, if any

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


RECORD: web.RequestKey[Recorded | None] = web.RequestKey("record")


@dataclass
class SimState:
    """Configuration and mutable state shared by the handlers (lives on the server's loop)."""

    seed: int = 0
    latency: float = 0.0
    token_latency: float = 0.0
    api_key: str | None = None
    faults: Faults = field(default_factory=Faults)
    limits: RateLimits = field(default_factory=RateLimits)
    clock: Callable[[], float] = time.time
    batch_seconds: float = 0.5
    batch_speed: float = 1.0
    batch_faults: BatchFaults = field(default_factory=BatchFaults)
    max_request_bytes: int = 32 * 1024 * 1024
    max_batch_bytes: int = 256 * 1024 * 1024
    record: int | None = 10_000
    counter: Tokenizer = field(default_factory=Tokenizer)

    def __post_init__(self) -> None:
        self.model = OfflineModel(self.seed, self.counter)
        self.cache = PromptCache(self.counter, lambda: self.clock())
        self.ids = p.Ids(self.seed)
        self.batch_clock = ScaledClock(lambda: self.clock(), self.batch_speed)
        self.batches = BatchStore(
            self._run_batch_request, batch_seconds=self.batch_seconds, seed=self.seed, faults=lambda: self.batch_faults
        )
        self.recorded: deque[Recorded] = deque(maxlen=self.record if self.record else 0)

    # -- shared pieces -------------------------------------------------------------------

    def answer(self, req: Request, stop: str = "") -> Reply:
        return self.model.reply(
            req.messages, max_tokens=req.max_tokens, stop_sequences=req.stop_sequences,
            tools=req.tools, tool_choice=req.tool_choice, thinking=req.thinking, label=req.label, stop=stop,
            output=req.output,
        )  # fmt: skip

    def count(self, req: Request) -> int:
        return self.counter.count_request(req.messages, system=req.system, tools=req.tools, label=req.label)

    def _run_batch_request(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            req = parse_message_request(params)
            rules.check(req, batch=True)
            input_tokens = self.count(req)
            rules.check_context(req, input_tokens)
        except ErrorReply as err:
            return "errored", p.error_body(err, self.ids.request())
        msg = message_json(self.ids.message(), req.name, self.answer(req), input_tokens, service_tier="batch")
        return "succeeded", msg
