"""What the calls under a parent span (a turn, a batch, a map-reduce) added up to: the tally each
parent span keeps, filled as its calls end (from any thread) and passed up to the parent above.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TALLY", "Tally"]


@dataclass
class Tally:
    """What the calls under one parent span (a turn, a batch, a map-reduce) spent, summed as they
    end (from any thread) and passed on to the enclosing parent's tally."""

    parent: Tally | None = None
    usage: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0
    calls: int = 0
    response_model: str | None = None
    finish_reasons: list[str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, attributes: dict[str, Any], *, spent: bool) -> None:
        """One call's end attributes; ``spent``: its usage was paid for (not a cached answer)."""
        with self.lock:
            self.calls += 1
            if isinstance(attributes.get("gen_ai.response.model"), str):
                self.response_model = attributes["gen_ai.response.model"]
            if attributes.get("gen_ai.response.finish_reasons"):
                self.finish_reasons = list(attributes["gen_ai.response.finish_reasons"])
            self.cost += float(attributes.get("convo.cost_usd") or 0.0)
            if spent:
                for key, value in attributes.items():
                    if key.startswith("gen_ai.usage."):
                        self.usage[key] = self.usage.get(key, 0) + int(value)
        if self.parent is not None:
            self.parent.add(attributes, spent=spent)

    def attributes(self, *, answer: bool) -> dict[str, Any]:
        """Summed usage, cost and calls; ``answer``: also the last call's model and finish reason
        (a turn's answer; a batch's last call to end answers nothing of the whole)."""
        with self.lock:
            if not self.calls:  # nothing ran under it (a Batches API job's submission)
                return {}
            out: dict[str, Any] = {**self.usage, "convo.calls": self.calls, "convo.cost_usd": self.cost}
            if answer and self.response_model is not None:
                out["gen_ai.response.model"] = self.response_model
            if answer and self.finish_reasons:
                out["gen_ai.response.finish_reasons"] = self.finish_reasons
        return out


#: The tally of the parent span whose calls are running (None outside one).
TALLY: ContextVar[Tally | None] = ContextVar("convo_tally", default=None)
