"""Where a :class:`~convo.Budget` keeps its books: in this process, or in Redis for every process.

A ledger holds the spend of the current period (``period``: ``None`` for all time, ``"day"`` or
``"month"`` in UTC, or a number of seconds, windows counted from the Unix epoch), the holds of
requests in flight, the same per user, and which alert fractions have fired. ``reserve`` is
atomic: a hold is taken only if it fits under the cap and the user's cap, so concurrent callers
can never together pass either.

The shared ledgers are in :mod:`convo._budget_redis` and :mod:`convo._budget_sqlite`.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ._exceptions import ConvoError, InvalidConfigError

__all__ = ["HOLD_TTL", "BudgetStoreError", "Hold", "MemoryLedger", "Period", "Refusal", "SharedLedger", "user_key", "user_of"]

log = logging.getLogger("convo.budget")

#: Seconds a hold in Redis lives without being settled (a request longer than this is rare: the
#: SDK's own timeout is 10 minutes).
HOLD_TTL = 900.0
EPOCH = date(1970, 1, 1)


class BudgetStoreError(ConvoError):
    """The store that a shared :class:`~convo.Budget` keeps its books in failed (Redis down,
    timed out, refused; an SQLite file locked). Raised by a call: nothing was reserved and the
    request was not sent; by ``as_dict`` and the totals: the books could not be read. A spend
    settled meanwhile is not lost: it is kept and written once the store answers again (retried
    in the background, sent before the next call, and at exit). ``store`` names it."""

    def __init__(self, message: str, *, store: str) -> None:
        super().__init__(message)
        self.store = store


@dataclass
class Hold:
    """One reservation: its worst case, the user it is charged to, and (in a shared store) its id
    and the period it was taken in."""

    usd: float
    user: str | None
    id: str | None = None
    period: str | None = None


@dataclass(frozen=True)
class Refusal:
    """Why a reservation did not fit: ``"cap"`` or ``"user"``, what was left, what was spent."""

    kind: str
    left: float
    spent: float


class Period:
    """A budget period: ``None`` (all time), ``"day"``, ``"month"`` (UTC) or a number of seconds."""

    def __init__(self, spec: str | float | None) -> None:
        if spec is None or spec in ("day", "month"):
            self.kind, self.length = ("all" if spec is None else str(spec)), 0.0
        elif isinstance(spec, (int, float)) and not isinstance(spec, bool) and 0 < spec < math.inf:
            self.kind, self.length = "seconds", float(spec)
        else:
            raise InvalidConfigError(
                f"period must be None, 'day', 'month' or a positive finite number of seconds, got {spec!r}"
            )
        self.spec = spec

    def at(self, now: float) -> tuple[str, float | None]:
        """The id of the period that ``now`` (Unix seconds) falls in, and when it ends."""
        if self.kind == "all":
            return "all", None
        if self.kind == "day":
            day = int(now // 86_400)
            return f"d{day}", (day + 1) * 86_400.0
        if self.kind == "seconds":
            index = int(now // self.length)
            return f"s{self.length:g}:{index}", (index + 1) * self.length
        moment = EPOCH + timedelta(days=int(now // 86_400))  # whole days, as the Lua script counts
        year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        return f"m{moment.year:04d}-{moment.month:02d}", datetime(year, month, 1, tzinfo=UTC).timestamp()


def user_key(user: str | None) -> str:
    """A user as a shared store keys it: ``"n"`` for none, else ``"u"`` + the name."""
    return "n" if user is None else "u" + user


def user_of(key: str) -> str | None:
    return None if key == "n" else key[1:]


_OUTAGE = {  # what a store's failure meant, by the ledger's operation
    "reserve": "the request was not sent (a shared budget fails closed)",
    "settle": "the spend is not in the books yet",
    "read": "its books could not be read",
    "release": "unused holds are not given back yet",
    "restore": "its books could not be restored",
}


def outage(what: str) -> str:
    """What a shared budget's store failing during ``what`` means for the caller."""
    return _OUTAGE.get(what, f"{what} failed")


#: Between attempts to record settlements an outage held back: half a second, doubling, at most 30 s.
RETRY_WAIT = {"multiplier": 0.5, "min": 0.5, "max": 30.0}


class SharedLedger:
    """What the shared ledgers (Redis, SQLite) have in common: a settlement their store could not
    take is kept and recorded as soon as the store answers again. A thread retries it in the
    background (an idle worker may make its next call much later, and the cap counts it only
    then), each call sends it first, and the process sends it before it exits (its last call's
    spend has no next call), so a spend is never lost to an outage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time: a held-back settlement is sent once
        self._pending: list[tuple[Hold, float, float, tuple[float, ...]]] = []
        self._retrying = False
        self._pid = os.getpid()

    def _settle(self, hold: Hold, actual: float, cap: float, alerts: Sequence[float]) -> tuple[list[float], float]:
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def _flush(self) -> None:
        """Record the settlements an outage held back (oldest first; stop at the first failure)."""
        if self._pid != os.getpid():  # a forked child: what the parent held back is the parent's to send
            with self._lock:
                if self._pid != os.getpid():
                    self._pending, self._retrying, self._pid = [], False, os.getpid()
                    self._flushing = threading.Lock()
        if not self._pending:
            return
        with self._flushing:
            while self._pending:
                with self._lock:
                    if not self._pending:
                        return
                    hold, actual, cap, alerts = self._pending[0]
                self._settle(hold, actual, cap, alerts)
                with self._lock:
                    if self._pending and self._pending[0][0] is hold:
                        self._pending.pop(0)

    def settle(self, hold: Hold, actual: float, cap: float, alerts: Sequence[float]) -> tuple[list[float], float]:
        try:
            self._flush()
            return self._settle(hold, actual, cap, alerts)
        except BudgetStoreError as exc:
            with self._lock:
                self._pending.append((hold, actual, cap, tuple(alerts)))
            log.warning("convo: could not record a spend of $%.6f in the shared budget (%s); it is kept and "
                        "recorded once the store answers again", actual, exc)
            self._retry_soon()
            return [], float("nan")

    def _retry_soon(self) -> None:
        """Start the background retry, unless one is running."""
        _HELD_BACK.add(self)
        with self._lock:
            if self._retrying:
                return
            self._retrying = True
        threading.Thread(target=self._retry, name="convo-budget-retry", daemon=True).start()

    def _retry(self) -> None:
        import tenacity  # here: importing convo loads nothing heavy

        again = True
        try:
            wait = tenacity.wait_exponential(**RETRY_WAIT)
            for attempt in tenacity.Retrying(wait=wait, retry=tenacity.retry_if_exception_type(BudgetStoreError)):
                with attempt:
                    self._flush()
            log.debug("convo: recorded the spend an outage held back in the shared budget")
        except Exception:  # not an outage: left to the next call, whose error the caller sees
            log.exception("convo: recording the spend an outage held back failed; the next call tries again")
            again = False
        finally:
            with self._lock:
                self._retrying = False
                again = again and bool(self._pending)  # held back after the last attempt looked
            if again:
                self._retry_soon()

    def user_total(self, user: str | None) -> float:
        by_user: dict[str | None, float] = self.snapshot()["by_user"]
        return by_user.get(user, 0.0)


_HELD_BACK: weakref.WeakSet[SharedLedger] = weakref.WeakSet()  # ledgers that held a settlement back


@atexit.register
def _record_before_exit() -> None:
    """A process's last spend has no next call to carry it: send what is still held back (one
    attempt each, bounded by the store's timeout), and say what could not be recorded."""
    for ledger in list(_HELD_BACK):
        if not ledger._pending or ledger._pid != os.getpid():
            continue
        try:
            ledger._flush()
        except BudgetStoreError as exc:
            left = sum(actual for _, actual, _, _ in ledger._pending)
            log.error("convo: %d spend(s) of $%.6f in all were not recorded in the shared budget before exit (%s)",
                      len(ledger._pending), left, exc)


class MemoryLedger:
    """The books of a budget in this process (thread-safe); periods on the wall ``clock``."""

    def __init__(self, period: Period, clock: Callable[[], float] = time.time) -> None:
        self.period = period
        self.clock = clock
        self._lock = threading.Lock()
        self._id: str | None = None
        self._ends: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.spent = 0.0
        self.held = 0.0
        self.user_spent: defaultdict[str | None, float] = defaultdict(float)
        self.user_held: defaultdict[str | None, float] = defaultdict(float)
        self.fired: set[float] = set()

    def _roll(self) -> str:
        pid, ends = self.period.at(self.clock())
        if pid != self._id:
            if self._id is not None:  # a new period: spend and alerts start over; holds carry on
                held, user_held = self.held, self.user_held
                self._reset()
                self.held, self.user_held = held, user_held
            self._id, self._ends = pid, ends
        return pid

    def reserve(self, usd: float, user: str | None, cap: float, per_user: float | None) -> Hold | Refusal:
        with self._lock:
            pid = self._roll()
            left = cap - self.spent - self.held
            if usd > left + 1e-12:
                return Refusal("cap", left, self.spent)
            if per_user is not None:
                user_left = per_user - self.user_spent[user] - self.user_held[user]
                if usd > user_left + 1e-12:
                    return Refusal("user", user_left, self.user_spent[user])
            self.held += usd
            self.user_held[user] += usd
            return Hold(usd, user, None, pid)

    def settle(self, hold: Hold, actual: float, cap: float, alerts: Sequence[float]) -> tuple[list[float], float]:
        with self._lock:
            pid = self._roll()
            self.held -= hold.usd
            self.user_held[hold.user] -= hold.usd
            if hold.period in (None, pid):  # a hold from a past period is charged to that one: gone
                self.spent += actual
                self.user_spent[hold.user] += actual
            fired = [f for f in alerts if f not in self.fired and self.spent >= f * cap]
            self.fired.update(fired)
            return fired, self.spent

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            pid = self._roll()
            return {
                "spent": self.spent,
                "held": self.held,
                "by_user": {u: v for u, v in self.user_spent.items() if v},
                "period": pid,
                "resets_at": self._ends,
            }

    def user_total(self, user: str | None) -> float:
        with self._lock:
            self._roll()
            return self.user_spent[user]
