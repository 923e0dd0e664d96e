"""A process's connections to one database, shared by its threads: one per call in flight, up to
a limit, reused afterwards, handed out first come, first served.

Behind one connection shared under a lock, every thread of a process (an async server's worker
threads included) waits for the slowest call in flight: a PostgreSQL write stuck behind another
client's row lock, a SQLite write waiting for another process to let go of the file. The stores
take their connections from here instead. Connections are opened on demand, so a single-threaded
script holds one. After a fork the parent's connections are forgotten, never used or closed by
the child (they share the parent's sockets); a connection that failed is closed, not reused, and
so is an idle one the server has let go of meanwhile (a restart, a failover, an idle timeout),
and one left idle past ``max_idle`` (a burst's extra connections do not hold server resources,
or a pooler's server connections, for good).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Busy", "Pool"]

C = TypeVar("C")

_FORKED = threading.Lock()  # a child resets a pool once, however many of its threads find it first


class Busy(Exception):
    """Every connection stayed in use for the whole wait."""


class _Waiter(Generic[C]):
    """A call waiting for a connection: handed one (``conn``), or a free place to open one in."""

    __slots__ = ("conn", "ready")

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.conn: C | None = None


class Pool(Generic[C]):
    """Up to ``size`` connections made by ``connect``, closed by ``close``. Calls that find them
    all busy are served first come, first served (a thread that gives one back and asks again
    queues behind them), so no call waits much longer than the others."""

    def __init__(
        self, connect: Callable[[], C], close: Callable[[C], None], size: int,
        alive: Callable[[C], bool] | None = None, max_idle: float | None = None,
    ) -> None:
        self.size, self.max_idle = size, max_idle
        self._connect, self._close, self._alive = connect, close, alive
        self._lock = threading.Lock()
        # (connection, when it was given back), newest last: the newest is taken first, so a
        # burst's extra connections are the ones left idle, and expire.
        self._idle: list[tuple[C, float]] = []
        self._waiters: deque[_Waiter[C]] = deque()  # only while nothing is idle
        self._open = 0  # connections made or being made (idle or in use), or places handed to waiters
        self._pid = os.getpid()
        self._closed = False

    def take(self, wait: float) -> C:
        """An idle connection (that ``alive`` passes), else a new one below ``size``, else the next
        one given back within ``wait`` seconds (:class:`Busy` if none). ``connect``'s error if it fails."""
        if self._pid != os.getpid():
            self._forked()
        waiter: _Waiter[C] | None = None
        dead: list[C] = []
        try:
            with self._lock:
                dead.extend(self._expired())
                while self._idle:
                    conn, _ = self._idle.pop()
                    if self._alive is None or self._alive(conn):
                        return conn
                    # The server let it go while it sat here (a restart, an idle timeout): its
                    # place goes to the next idle one, or to a new connection.
                    self._open -= 1
                    dead.append(conn)
                if self._open < self.size:
                    self._open += 1
                else:
                    waiter = _Waiter()
                    self._waiters.append(waiter)
        finally:
            for conn in dead:  # outside the lock
                self._close(conn)
        if waiter is not None:
            if not waiter.ready.wait(wait):
                with self._lock:
                    if not waiter.ready.is_set():  # else served just as the wait ended
                        self._waiters.remove(waiter)
                        raise Busy(f"all {self.size} connections stayed busy for {wait:g} s")
            if waiter.conn is not None:
                return waiter.conn
        try:
            return self._connect()  # outside the lock: other threads go on meanwhile
        except BaseException:
            self._lost()
            raise

    def _expired(self) -> list[C]:
        """Take the connections idle past ``max_idle`` out of the pool (under the lock), to close."""
        if self.max_idle is None or not self._idle:
            return []
        horizon = time.monotonic() - self.max_idle
        n = 0
        while n < len(self._idle) and self._idle[n][1] < horizon:
            n += 1
        gone = [conn for conn, _ in self._idle[:n]]
        del self._idle[:n]
        self._open -= n
        return gone

    def _forked(self) -> None:
        """In a forked child: forget the parent's connections (their sockets are the parent's)
        and its lock (which a parent thread may have held at the fork)."""
        with _FORKED:
            if self._pid != os.getpid():
                self._lock = threading.Lock()
                self._idle, self._waiters, self._open, self._pid = [], deque(), 0, os.getpid()

    def give(self, conn: C, reusable: bool) -> None:
        """Give back a connection taken by :meth:`take`: handed to the first waiting call, or kept
        for the next, if ``reusable`` (and the pool is open); else closed."""
        expired: list[C] = []
        with self._lock:
            kept = reusable and not self._closed
            if kept and self._waiters:
                waiter = self._waiters.popleft()
                waiter.conn = conn
                waiter.ready.set()
            elif kept:
                self._idle.append((conn, time.monotonic()))
                expired = self._expired()
        for old in expired:  # outside the lock
            self._close(old)
        if not kept:
            self._lost()
            self._close(conn)

    def _lost(self) -> None:
        """A connection is gone (closed, or never made): its place goes to the first waiting call."""
        with self._lock:
            if self._waiters:
                self._waiters.popleft().ready.set()  # no connection: it opens one in this place
            else:
                self._open -= 1

    def close(self) -> None:
        """Close the idle connections now and the ones in use when they are given back."""
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn, _ in idle:
            self._close(conn)
