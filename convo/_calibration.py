"""Calibration: the offline estimate learns each model's real token counts from responses.

The offline counter (cl100k_base x 1.10, see :mod:`convo.tokens`) is a guess at a tokenizer
that is not public. Every response says what the server counted (``usage``: ``input_tokens`` +
``cache_creation_input_tokens`` + ``cache_read_input_tokens``), so convo compares it with its
own estimate of the very request that was sent and keeps, per model, a correction factor:

- an exponentially weighted mean of the ratio ``server / estimate`` (recent requests count most);
- never below the recent peak ratio by more than ``margin`` (conservative: an underestimate is a
  context-overflow error at the API, an overestimate only trims a little early); the peak jumps
  up at once and decays toward the mean;
- clamped to ``[low, high]`` (0.5..2.0 by default), so no run of strange usage (or a server that
  lies) can move the estimate by more than that;
- 1.0 until the first response: without evidence the estimate is as measured offline.

>>> cal = Calibration()
>>> cal.observe("claude-sonnet-4-6", estimate=100, actual=120)
1.2
>>> cal.apply("claude-sonnet-4-6", 1000)
1200

Thread-safe; one per counter (``OfflineCounter().calibration``), shared by the clients and
conversations that use that counter.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from typing import Any

from ._exceptions import InvalidConfigError
from .models import lookup

__all__ = ["Calibration", "calibration_of", "total_input"]

#: Each new ratio moves the mean this far (0..1).
ALPHA = 0.3
#: Each new ratio moves the peak this far toward the mean.
PEAK_DECAY = 0.2
#: Requests estimated below this many tokens say little (fixed overheads dominate): ignored.
MIN_TOKENS = 16
#: After this many samples of a model the factor is settled: from then on one response in
#: ``SETTLED_EVERY`` is enough to follow drift, and the others skip estimating their request.
SETTLED = 32
SETTLED_EVERY = 8


def total_input(usage: Any) -> int:
    """All input tokens a response reports: uncached, written to and read from the prompt cache."""
    if usage is None:
        return 0
    return sum(int(getattr(usage, name, 0) or 0)
               for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))  # fmt: skip


@functools.lru_cache(maxsize=256)
def _key(model: str) -> str:
    """One entry per model, whichever alias or snapshot names it."""
    info = lookup(model)
    return info.id if info is not None else model


@dataclass
class _State:
    mean: float
    peak: float
    samples: int = 1
    seen: int = 0  # responses passed over since the last one observed, once settled


class Calibration:
    """Per-model correction factors for an estimate, learned from the server's counts."""

    def __init__(
        self, *, alpha: float = ALPHA, low: float = 0.5, high: float = 2.0, margin: float = 0.05,
        min_tokens: int = MIN_TOKENS,
    ) -> None:  # fmt: skip
        if not 0 < alpha <= 1:
            raise InvalidConfigError(f"alpha must be in (0, 1], got {alpha}")
        if not 0 < low <= 1 <= high:
            raise InvalidConfigError(f"the clamp must satisfy 0 < low <= 1 <= high, got low={low}, high={high}")
        if not 0 <= margin < 1:
            raise InvalidConfigError(f"margin must be in [0, 1), got {margin}")
        self.alpha = alpha
        self.low = low
        self.high = high
        self.margin = margin
        self.min_tokens = min_tokens
        self._models: dict[str, _State] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        factors = ", ".join(f"{m}={self.factor(m):.3f}" for m in sorted(self._models))
        return f"Calibration({factors})"

    def observe(self, model: str, estimate: int, actual: int) -> float | None:
        """Learn from one response: ``estimate`` (uncorrected) vs the server's ``actual`` count.

        Returns the model's new factor, or None when the sample was ignored (too small to say
        anything, or not a count).
        """
        if estimate < max(1, self.min_tokens) or actual <= 0:
            return None
        ratio = actual / estimate
        if not math.isfinite(ratio):
            return None
        ratio = min(max(ratio, self.low), self.high)
        model = _key(model)
        with self._lock:
            state = self._models.get(model)
            if state is None:
                self._models[model] = _State(ratio, ratio)
            else:
                state.mean += self.alpha * (ratio - state.mean)
                state.peak = max(ratio, state.peak + PEAK_DECAY * (state.mean - state.peak))
                state.samples += 1
        return self.factor(model)

    def factor(self, model: str) -> float:
        """The multiplier for ``model``'s estimates (1.0 before any response)."""
        state = self._models.get(_key(model))
        if state is None:
            return 1.0
        value = max(state.mean, state.peak * (1 - self.margin))
        return min(max(value, self.low), self.high)

    def wants(self, model: str) -> bool:
        """Whether the next response of ``model`` should be observed (all of them until the
        factor has settled, then one in ``SETTLED_EVERY``): estimating a request costs a pass
        over its messages, which a settled factor does not need on every call."""
        state = self._models.get(_key(model))
        if state is None or state.samples < SETTLED:
            return True
        state.seen = (state.seen + 1) % SETTLED_EVERY
        return state.seen == 0

    def samples(self, model: str) -> int:
        """How many responses of ``model`` the factor has learned from."""
        state = self._models.get(_key(model))
        return state.samples if state is not None else 0

    def apply(self, model: str, estimate: int) -> int:
        """``estimate`` corrected for ``model`` (rounded up)."""
        f = self.factor(model)
        return estimate if f == 1.0 else math.ceil(estimate * f)

    def fit_budget(self, model: str, budget: int, max_tokens: int) -> int:
        """The budget to fit uncorrected estimates into so that corrected ones fit ``budget``.

        For fitting a history: input x factor + ``max_tokens`` <= ``budget``.
        """
        f = self.factor(model)
        if f == 1.0 or budget <= max_tokens:
            return budget
        return max_tokens + math.floor((budget - max_tokens) / f)

    def reset(self, model: str | None = None) -> None:
        """Forget what was learned (for one model, or all)."""
        with self._lock:
            if model is None:
                self._models.clear()
            else:
                self._models.pop(_key(model), None)

    def as_dict(self) -> dict[str, float]:
        """Each model's current factor."""
        return {m: self.factor(m) for m in sorted(self._models)}


def calibration_of(counter: Any) -> Calibration | None:
    """The calibration a counter carries (the offline and cached counters do; exact ones do not)."""
    cal = getattr(counter, "calibration", None)
    return cal if isinstance(cal, Calibration) else None
