"""When to retry, how long to wait, and when to stop: one policy for every request convo sends.

The SDK's own retries are turned off (``max_retries=0``) and tenacity decides instead, so plain
calls and streams follow one rule set:

- Retried: 408, 409, 429, 5xx, 529, connection errors and timeouts, and — for streams — an SSE
  ``error`` event of a transient type, a dropped connection and a stream that ends without
  ``message_stop``. A server's ``x-should-retry`` header overrides the status.
- Not retried: 400, 401, 403, 404, 413 and a 429 without ``retry-after`` that reports the spend
  limit; they raise at once as typed errors saying what to fix.
- Wait: ``retry-after-ms`` or ``retry-after`` when the server sends one (capped at
  ``max_retry_after``), otherwise exponential backoff with full jitter, capped at ``max_backoff``.
- Retry budget (the AWS SDKs' retry quota): each client holds ``budget`` tokens; a retry costs
  5 (10 after a timeout), a first-try success gives 1 back, and a success after retries gives its
  cost back. When most calls fail the tokens run out and retries are refused at once, so an
  outage fails fast instead of multiplying load.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import anthropic
import httpx2
import tenacity

from ._exceptions import InvalidConfigError
from ._numbers import number

__all__ = ["RetryBudget", "RetryPolicy", "StreamInterrupted", "is_retryable", "server_wait"]

RETRYABLE_STATUS = frozenset({408, 409, 429})
#: Error types that an SSE ``error`` event may carry and that are worth another attempt.
TRANSIENT_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})
RETRY_COST = 5
TIMEOUT_RETRY_COST = 10
SUCCESS_REFUND = 1


class StreamInterrupted(Exception):
    """A stream ended without ``message_stop`` or sent an event that is not valid JSON.

    Raised and handled inside convo's stream flow; callers see StreamError if retries fail.
    """


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) if isinstance(exc, anthropic.APIStatusError) else None


def is_spend_limit(exc: BaseException) -> bool:
    """A 429 that no amount of waiting fixes: the account's spend limit is reached."""
    if _status(exc) != 429:
        return False
    headers = exc.response.headers  # type: ignore[attr-defined]
    if "retry-after" in headers or "retry-after-ms" in headers:
        return False
    code = getattr(exc, "error_code", None)
    text = str(getattr(exc, "api_message", "") or exc).lower()
    return code == "enforced_spend_limit_reached" or "usage limit" in text or "spend limit" in text


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt may succeed (see the module doc for the rules)."""
    if isinstance(exc, anthropic.APIStatusError):
        override = exc.response.headers.get("x-should-retry")
        if override in ("true", "false"):
            return override == "true"
        status = exc.status_code
        if status == 200:  # an SSE error event after the stream opened
            return getattr(exc, "type", None) in TRANSIENT_TYPES or _body_type(exc) in TRANSIENT_TYPES
        if is_spend_limit(exc):
            return False
        return status in RETRYABLE_STATUS or status >= 500
    return isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError, StreamInterrupted))


def _body_type(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return err.get("type")
    return None


def server_wait(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after``), if any.

    A header that is not a finite, non-negative number (or, for ``retry-after``, an HTTP date)
    is ignored, as if it were absent, so the caller falls back to its backoff.
    """
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = _seconds(headers.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000
    after = headers.get("retry-after")
    seconds = _seconds(after)
    if seconds is not None or not after:
        return seconds
    try:
        parsed = email.utils.parsedate_to_datetime(after)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # an HTTP date is always GMT
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return max(0.0, parsed.timestamp() - time.time())


def _seconds(value: str | None) -> float | None:
    """A header's value as a finite, non-negative number, or None."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException))


class RetryBudget:
    """The retry quota shared by all requests of one client (thread-safe). See module doc."""

    def __init__(self, tokens: int = 500) -> None:
        number("RetryBudget(tokens=...)", tokens, integer=True, minimum=0)
        self.capacity = tokens
        self._tokens = tokens
        self._lock = threading.Lock()
        self.refused = 0

    @property
    def tokens(self) -> int:
        """Retry tokens left now (``capacity`` when none are spent)."""
        return self._tokens

    def acquire(self, exc: BaseException) -> int | None:
        """Take the cost of retrying after ``exc``; None (and nothing taken) if too little is left."""
        cost = TIMEOUT_RETRY_COST if is_timeout(exc) else RETRY_COST
        with self._lock:
            if self._tokens < cost:
                self.refused += 1
                return None
            self._tokens -= cost
            return cost

    def succeeded(self, spent: int) -> None:
        """A call succeeded having spent ``spent`` tokens on retries."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + (spent or SUCCESS_REFUND))

    def __repr__(self) -> str:
        return f"RetryBudget({self._tokens}/{self.capacity})"


class _wait_server_or_backoff(tenacity.wait.wait_base):
    """Wait what the server asked for (capped), else exponential backoff with full jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.cap = policy.max_retry_after
        self.backoff = tenacity.wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        hinted = server_wait(exc) if exc is not None else None
        if hinted is not None:
            return min(hinted, self.cap)
        return float(self.backoff(retry_state))


class _stop_without_budget(tenacity.stop.stop_base):
    """Stop when the client's retry budget cannot pay for another attempt."""

    def __init__(self, budget: RetryBudget | None, spent: list[int]) -> None:
        self.budget = budget
        self.spent = spent

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if self.budget is None:
            return False
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        cost = self.budget.acquire(exc) if exc is not None else None
        if cost is None:
            return True
        self.spent[0] += cost
        return False


class _stop_after_elapsed(tenacity.stop.stop_base):
    """Stop once ``max_elapsed`` seconds have passed since ``start`` on the client's clock
    (tenacity's own ``stop_after_delay`` reads ``time.monotonic``, which an injected clock
    would not move)."""

    def __init__(self, max_elapsed: float, clock: Callable[[], float], start: float) -> None:
        self.max_elapsed = max_elapsed
        self.clock = clock
        self.start = start

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() - self.start >= self.max_elapsed


@dataclass(frozen=True)
class RetryPolicy:
    """How convo retries. All times in seconds.

    ``max_attempts`` counts the first try. ``max_elapsed`` caps the total time spent on one
    call (None: no cap). ``budget`` is the size of the client's retry quota (0 disables it).
    ``fallback_after`` consecutive overloaded (529) answers move to the next fallback model.
    ``stream_resume`` is how a stream that fails after text reached the caller goes on:
    ``"continue"`` sends a continuation after the text so far (as an assistant prefill where
    the model accepts one, else as an assistant turn and a user turn asking it to continue)
    and stitches; ``"prefill"`` is an older name for it; ``"restart"`` starts over (the caller
    is told, see ``Client.stream``).
    """

    max_attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 20.0
    max_retry_after: float = 60.0
    max_elapsed: float | None = None
    budget: int = 500
    fallback_after: int = 2
    stream_resume: str = "continue"

    def __post_init__(self) -> None:
        number("max_attempts", self.max_attempts, integer=True, minimum=1, hint=" (attempts, counting the first try)")
        for name in ("initial_backoff", "max_backoff", "max_retry_after"):
            number(name, getattr(self, name), minimum=0, hint=" (seconds)")
        if self.max_elapsed is not None:
            number("max_elapsed", self.max_elapsed, minimum=0, hint=" (seconds, or None for no cap)")
        number("budget", self.budget, integer=True, minimum=0, hint=" (retry tokens; 0 disables the quota)")
        number("fallback_after", self.fallback_after, integer=True, minimum=1)
        if self.stream_resume not in ("continue", "prefill", "restart"):
            raise InvalidConfigError(
                f"stream_resume must be 'continue' (or its older name 'prefill') or 'restart', "
                f"got {self.stream_resume!r}"
            )

    def new_budget(self) -> RetryBudget | None:
        """A fresh :class:`RetryBudget` of ``budget`` tokens for one client, or None when
        ``budget`` is 0 (no quota).
        """
        return RetryBudget(self.budget) if self.budget else None

    def retrying(
        self,
        budget: RetryBudget | None,
        spent: list[int],
        *,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
    ) -> tenacity.Retrying:
        """A tenacity controller for one call; ``spent[0]`` accumulates the budget it used.

        convo drives it with ``iter()`` (as tenacity's own loop does), so the same decisions
        serve the sync and the async client. ``max_elapsed`` is measured on ``clock`` (the
        client's) from ``start`` (the call's start; now when not given).
        """
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.max_attempts)
        if self.max_elapsed is not None:
            stop = stop | _stop_after_elapsed(self.max_elapsed, clock, clock() if start is None else start)
        stop = stop | _stop_without_budget(budget, spent)  # evaluated last: pays only for real retries
        return tenacity.Retrying(
            stop=stop,
            wait=_wait_server_or_backoff(self),
            retry=tenacity.retry_if_exception(is_retryable),
            reraise=True,
        )
