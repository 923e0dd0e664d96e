"""A :class:`~convo.Budget`'s books in a :class:`~convo.SQLiteStore` file, shared by the processes
of one machine (see :mod:`convo._budget_store`).

Each step is one transaction of the store: a reserve reads the period's spend and the holds in
it and takes a hold only if it fits under the cap and the user's cap, so processes that reserve
at once never pass either. Holds carry a deadline (``hold_ttl``): the hold of a process that died
mid-request is given back once it passes. A hold is charged to the period it was taken in, as in
Redis. Periods follow the machine's wall clock. A failure while reserving raises
:class:`BudgetStoreError` (nothing is sent); while settling, the settlement is kept and written
as soon as the file is free (in the background, before the next call, and at exit), so a spend is never lost.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ._budget_store import HOLD_TTL, BudgetStoreError, Hold, Period, Refusal, SharedLedger, outage, user_key, user_of
from ._exceptions import InvalidConfigError, RateLimitStoreError
from .shared_sqlite import SQLiteStore

__all__ = ["SQLiteLedger"]


class SQLiteLedger(SharedLedger):
    """The books of the budget ``name`` in ``store``'s file."""

    def __init__(self, store: SQLiteStore, name: str, period: Period, hold_ttl: float = HOLD_TTL) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidConfigError(f"a shared budget's name must be a non-empty string, got {name!r}")
        if isinstance(hold_ttl, bool) or not isinstance(hold_ttl, (int, float)) or hold_ttl <= 0:
            raise InvalidConfigError(f"hold_ttl must be a positive number of seconds, got {hold_ttl!r}")
        super().__init__()
        self.store, self.name, self.period, self.hold_ttl = store, name, period, float(hold_ttl)
        self._pruned: str | None = None  # the period whose older books this process last removed

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.store!r}, name={self.name!r})"

    @contextmanager
    def _books(self, what: str, write: bool = True) -> Iterator[tuple[sqlite3.Connection, str, float | None, float]]:
        """One transaction on the books: the connection, the current period, its end, and now;
        expired holds are given back first. ``write=False``: a snapshot that takes no lock (a
        reader leaves expired holds in place and does not count them)."""
        try:
            with self.store.transaction(what, write=write) as conn:
                now = self.store.clock()
                pid, ends = self.period.at(now)
                if write:
                    conn.execute("DELETE FROM convo_budget_holds WHERE budget = ? AND deadline < ?", (self.name, now))
                yield conn, pid, ends, now
        except RateLimitStoreError as exc:  # the store's error, said as the budget's
            raise BudgetStoreError(
                f"the budget {self.name!r} could not use its store {self.store!r} ({exc}); {outage(what)}",
                store=repr(self.store),
            ) from None

    def _get(self, conn: sqlite3.Connection, pid: str, field: str) -> float:
        row = conn.execute("SELECT value FROM convo_budget_books WHERE budget = ? AND period = ? AND field = ?",
                           (self.name, pid, field)).fetchone()
        return float(row[0]) if row else 0.0

    def _add(self, conn: sqlite3.Connection, pid: str, field: str, amount: float) -> None:
        conn.execute(
            "INSERT INTO convo_budget_books VALUES (?, ?, ?, ?) ON CONFLICT (budget, period, field) "
            "DO UPDATE SET value = value + excluded.value", (self.name, pid, field, amount),
        )

    def _held(self, conn: sqlite3.Connection, pid: str, user: str | None = None, now: float | None = None) -> float:
        """USD held in ``pid`` (by ``user``); with ``now``, only the holds not expired by then."""
        sql = "SELECT coalesce(sum(usd), 0) FROM convo_budget_holds WHERE budget = ? AND period = ?"
        args: tuple[Any, ...] = (self.name, pid)
        if now is not None:
            sql, args = sql + " AND deadline >= ?", (*args, now)
        if user is not None:
            sql, args = sql + " AND user = ?", (*args, user)
        return float(conn.execute(sql, args).fetchone()[0])

    def reserve(self, usd: float, user: str | None, cap: float, per_user: float | None) -> Hold | Refusal:
        self._flush()
        ukey = user_key(user)
        with self._books("reserve") as (conn, pid, _ends, now):
            if self._pruned != pid:  # books of past periods are read by no one: keep the file small
                conn.execute(
                    "DELETE FROM convo_budget_books WHERE budget = ? AND period <> ? AND period NOT IN "
                    "(SELECT period FROM convo_budget_holds WHERE budget = ?)", (self.name, pid, self.name),
                )
                self._pruned = pid
            spent = self._get(conn, pid, "spent")
            left = cap - spent - self._held(conn, pid)
            if usd > left + 1e-12:
                return Refusal("cap", left, spent)
            if per_user is not None:
                user_spent = self._get(conn, pid, "s:" + ukey)
                user_left = per_user - user_spent - self._held(conn, pid, ukey)
                if usd > user_left + 1e-12:
                    return Refusal("user", user_left, user_spent)
            id = secrets.token_hex(8)
            conn.execute("INSERT INTO convo_budget_holds VALUES (?, ?, ?, ?, ?, ?)",
                         (self.name, id, pid, float(usd), ukey, now + self.hold_ttl))
        return Hold(usd, user, id, pid)

    def _settle(self, hold: Hold, actual: float, cap: float, alerts: Sequence[float]) -> tuple[list[float], float]:
        with self._books("settle") as (conn, pid, _ends, _now):
            conn.execute("DELETE FROM convo_budget_holds WHERE budget = ? AND id = ?", (self.name, hold.id or ""))
            charged = hold.period or pid  # a hold is charged to the period it was taken in
            self._add(conn, charged, "spent", actual)
            self._add(conn, charged, "s:" + user_key(hold.user), actual)
            spent = self._get(conn, charged, "spent")
            fired = []
            for fraction in alerts:
                flag = f"f:{fraction!r}"
                if spent >= fraction * cap and not self._get(conn, charged, flag):
                    self._add(conn, charged, flag, 1.0)
                    fired.append(fraction)
        return fired, spent

    def snapshot(self) -> dict[str, Any]:
        self._flush()
        with self._books("read", write=False) as (conn, pid, ends, now):  # no lock: a dashboard waits for no writer
            rows = conn.execute("SELECT field, value FROM convo_budget_books WHERE budget = ? AND period = ?",
                                (self.name, pid)).fetchall()
            held = self._held(conn, pid, now=now)
        fields = dict(rows)
        return {
            "spent": float(fields.get("spent", 0.0)),
            "held": held,
            "by_user": {user_of(k[2:]): float(v) for k, v in fields.items() if k.startswith("s:") and v},
            "period": pid,
            "resets_at": ends,
        }

