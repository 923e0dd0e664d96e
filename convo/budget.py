"""Spending caps: a request whose worst case would pass the cap is refused before it is sent.

>>> from convo.budget import Budget
>>> budget = Budget(usd=5.0, alerts=(0.5, 0.8), on_alert=print)

Each attempt reserves its worst case (the estimated input, plus a 25% margin for the estimate's
error, at the highest input rate, + max_tokens of output) and settles to its real cost when the response arrives. Reservations count against
the cap, so spend never exceeds it, also with many requests in flight. Alerts fire once per
fraction crossed. ``per_user_usd`` caps each user (``Client(user=...)``) as well.

``period="day"`` or ``"month"`` (UTC; or a number of seconds) starts the spend, the user caps and
the alerts over at each period's start. ``store=RedisStore(url)`` keeps the books in Redis, shared
by every process and machine with the same store and ``name`` and kept across restarts (the
reserve is one atomic Lua script; periods follow the Redis server's clock); ``store=SQLiteStore(path)``
does the same for the processes of one machine, in a file, with no server. A shared budget fails
closed: when its store cannot be reached, requests raise :class:`BudgetStoreError` and are not sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._budget_redis import RedisLedger
from ._budget_sqlite import SQLiteLedger
from ._budget_store import HOLD_TTL, BudgetStoreError, Hold, MemoryLedger, Period, Refusal
from ._exceptions import ConvoError, InvalidConfigError
from ._numbers import number
from ._numbers import usd as _usd
from .shared_sqlite import SQLiteStore

__all__ = ["Budget", "BudgetExceededError", "BudgetStoreError", "Hold"]


class BudgetExceededError(ConvoError):
    """The request could cost more than what is left of the budget; it was not sent."""

    def __init__(self, message: str, *, needed: float, left: float, user: str | None = None) -> None:
        super().__init__(message)
        self.needed = needed
        self.left = left
        self.user = user


class Budget:
    """A USD cap shared by every request of the clients that use it (thread-safe); with
    ``store=``, by every process that uses the same store and ``name``.

    ``hold_ttl`` (shared budgets): seconds after which the hold of a request that never settled
    (its process died) is given back. ``clock`` (in-process budgets): the wall clock periods
    follow (Unix seconds).
    """

    def __init__(
        self,
        usd: float,
        *,
        alerts: Sequence[float] = (),
        on_alert: Callable[[float, float, float], Any] | None = None,
        per_user_usd: float | None = None,
        period: str | float | None = None,
        store: Any = None,
        name: str = "default",
        hold_ttl: float = HOLD_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        number("Budget(usd=...)", usd, positive=True, hint=" (a positive amount in USD)")
        if isinstance(alerts, (str, bytes)) or not isinstance(alerts, Iterable):
            raise InvalidConfigError(f"alerts must be a sequence of fractions in (0, 1], got {alerts!r}")
        alerts = tuple(alerts)
        for a in alerts:
            number("each of alerts", a, positive=True)
            if a > 1:
                raise InvalidConfigError(f"alerts are fractions of the budget in (0, 1], got {alerts}")
        if per_user_usd is not None:
            number("per_user_usd", per_user_usd, positive=True, hint=" (a positive amount in USD, or None)")
        number("hold_ttl", hold_ttl, positive=True, hint=" (seconds a hold outlives a process that died)")
        if not callable(clock):
            raise InvalidConfigError(f"clock must be a callable returning Unix seconds (like time.time), got {clock!r}")
        if on_alert is not None and not callable(on_alert):
            raise InvalidConfigError(f"on_alert must be callable (fraction, spent, usd), got {type(on_alert).__name__}")
        self.usd = float(usd)
        self.alerts = tuple(sorted(alerts))
        self.on_alert = on_alert
        self.per_user_usd = per_user_usd
        self.period = Period(period)
        self.store = store
        self.name = name
        self._ledger: MemoryLedger | RedisLedger | SQLiteLedger
        if store is None:
            self._ledger = MemoryLedger(self.period, clock)
        elif isinstance(store, SQLiteStore):
            self._ledger = SQLiteLedger(store, name, self.period, hold_ttl)
        elif callable(getattr(store, "register", None)) and callable(getattr(store, "run_script", None)):
            self._ledger = RedisLedger(store, name, self.period, hold_ttl)
        else:
            raise InvalidConfigError(
                f"Budget(store=...) must be a convo.RedisStore or convo.SQLiteStore (shared by processes), got "
                f"{type(store).__name__}; "
                "leave it out for a budget in this process"
            )

    @property
    def io(self) -> bool:
        """Whether reserving and settling may block (a network store)."""
        return self.store is not None

    def __repr__(self) -> str:
        if self.store is not None:  # no network call in a repr
            return f"Budget(usd={self.usd}, store={self.store!r}, name={self.name!r})"
        return f"Budget(usd={self.usd}, spent={self.spent:.6f})"

    @property
    def spent(self) -> float:
        """USD spent so far in the current period (a shared budget asks its store)."""
        spent: float = self._ledger.snapshot()["spent"]
        return spent

    @property
    def left(self) -> float:
        """USD still free: the cap less what was spent and what requests in flight hold."""
        snap = self._ledger.snapshot()
        left: float = self.usd - snap["spent"] - snap["held"]
        return left

    def user_spent(self, user: str | None) -> float:
        """USD spent so far by ``user`` (None: requests without a user); holds in
        flight are not included.
        """
        return self._ledger.user_total(user)

    def reserve(self, usd: float, user: str | None = None) -> Hold:
        """Hold ``usd`` (a worst case) or raise BudgetExceededError without holding anything;
        BudgetStoreError when a shared budget's store cannot be reached."""
        got = self._ledger.reserve(usd, user, self.usd, self.per_user_usd)
        if isinstance(got, Hold):
            return got
        raise self._refused(got, usd, user)

    def _refused(self, refusal: Refusal, usd: float, user: str | None) -> BudgetExceededError:
        where = f" (shared budget {self.name!r})" if self.store is not None else ""
        cap = (self.per_user_usd or 0.0) if refusal.kind == "user" else self.usd
        # What is neither spent nor left is held by requests in flight: under concurrency that
        # can be most of the cap, and a refusal that left it out would read as money gone.
        held = cap - refusal.spent - refusal.left
        in_flight = held > 1e-9
        books = f"spent ${refusal.spent:.6f}" + (f", held by requests in flight ${held:.6f}" if in_flight else "")
        if refusal.kind == "user":
            return BudgetExceededError(
                f"user {user!r} could spend up to ${usd:.6f} more but only ${max(refusal.left, 0):.6f} of "
                f"their {_usd(cap)} cap is left{where} ({books})",
                needed=usd,
                left=refusal.left,
                user=user,
            )
        return BudgetExceededError(
            f"this request could cost up to ${usd:.6f} but only ${max(refusal.left, 0):.6f} of the "
            f"{_usd(cap)} budget{where} is left ({books}); raise the budget or lower max_tokens"
            + ("; or retry when requests in flight have settled" if in_flight else ""),
            needed=usd,
            left=refusal.left,
            user=user,
        )

    def settle(self, hold: Hold, actual: float) -> None:
        """Replace a hold by what the request really cost. A shared budget whose store is down
        keeps the settlement and records it as soon as the store answers again (a background retry,
        the next call, or the process's exit, whichever comes first)."""
        fired, spent = self._ledger.settle(hold, max(actual, 0.0), self.usd, self.alerts)
        for fraction in fired:  # outside any lock: a callback may read the budget
            if self.on_alert is not None:
                self.on_alert(fraction, spent, self.usd)

    def as_dict(self) -> dict[str, Any]:
        """A snapshot for logs and metrics: ``usd`` (the cap), ``spent``, ``held`` (by requests in
        flight), ``left``, and ``by_user`` (the users who have spent anything); with a period,
        also ``period`` (its id) and ``resets_at`` (Unix seconds); with a store, ``store`` and ``name``.
        """
        snap = self._ledger.snapshot()
        out: dict[str, Any] = {
            "usd": self.usd,
            "spent": snap["spent"],
            "held": snap["held"],
            "left": self.usd - snap["spent"] - snap["held"],
            "by_user": snap["by_user"],
        }
        if self.period.kind != "all":
            out["period"], out["resets_at"] = snap["period"], snap["resets_at"]
        if self.store is not None:
            out["store"], out["name"] = repr(self.store), self.name
        return out
