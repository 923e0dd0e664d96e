"""A deadline for calls on a connection whose client library has none of its own.

psycopg waits for a server's answer as long as it takes. At the deadline the watchdog asks the
server to cancel the statement (a slow one, or one stuck behind another client's lock): the
call then fails with the server's answer. It does not rely on a
server-side ``statement_timeout``, which connection poolers such as PgBouncer refuse as a startup
setting and would leak to other clients as a session one. A server that does not answer at all
(a stopped process, a host or network gone) answers no cancel either, and the kernel still
acknowledges the bytes, so TCP never gives up: a moment later the watchdog shuts the connection's
socket down; the client's wait then ends at once with a connection error, which the store reports
as a :class:`~convo.StoreError`, and the next call reconnects.

One daemon thread per watchdog, started on first use (again after a fork), watching every call in
flight (one per pooled connection). Arming and disarming is a lock and a dict entry; the thread
is woken only when it sleeps with nothing armed.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["Watchdog"]

log = logging.getLogger("convo.stores")

_STARTING = threading.Lock()  # one thread per watchdog and process, however many threads arm it first


class _Watch:
    """One call watched: its socket, how to cancel it, and when."""

    __slots__ = ("cancel", "cancel_at", "cut_at", "fd")

    def __init__(self, fd: int, cancel: Callable[[], object] | None, cancel_at: float, cut_at: float) -> None:
        self.fd, self.cancel, self.cancel_at, self.cut_at = fd, cancel, cancel_at, cut_at

    def due(self) -> float:
        return self.cancel_at if self.cancel is not None else self.cut_at


class Watchdog:
    """Cancels a call that outlasts ``cancel_after`` seconds (if it was armed with a way to) and
    cuts its socket once it outlasts ``after``. ``ticket = arm(fd, cancel)`` before the call,
    ``disarm(ticket)`` after it: ``"cut"``, ``"cancelled"`` or ``""``."""

    def __init__(self, after: float, name: str, cancel_after: float | None = None) -> None:
        self.after = after
        self.cancel_after = after if cancel_after is None else min(cancel_after, after)
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._armed: dict[int, _Watch] = {}
        self._acted: dict[int, str] = {}  # tickets acted on ("cut", "cancelled"), until disarmed
        self._tickets = itertools.count()
        self._idle = False  # the thread waits with no deadline: arming must wake it
        self._stopped = False
        self._running = False  # this process's thread is watching (it ends after stop, once nothing is armed)
        self._pid = 0

    def arm(self, fd: int, cancel: Callable[[], object] | None = None) -> int:
        """Watch a call on socket ``fd`` (``cancel``: asks the server to end it, called in a
        thread of its own, so a server that does not answer holds up no other watch); the
        ticket to pass to :meth:`disarm`."""
        if self._pid != os.getpid():  # no thread yet, or the parent's (threads do not fork)
            self._start()
        with self._cond:
            ticket = next(self._tickets)
            now = time.monotonic()
            self._armed[ticket] = _Watch(fd, cancel, now + self.cancel_after, now + self.after)
            if self._idle:
                self._cond.notify()
            running = self._running
        if not running:  # stopped and ended before this call armed (a call racing close): watch it anyway
            self._start()
        return ticket

    def _start(self) -> None:
        with _STARTING:
            if self._pid == os.getpid() and self._running:
                return
            if self._pid != os.getpid():
                self._cond = threading.Condition(threading.Lock())  # after a fork the parent's copy may be held
                self._armed, self._acted, self._idle, self._stopped = {}, {}, False, False
            self._running = True
            threading.Thread(target=self._watch, name=self._name, daemon=True).start()
            self._pid = os.getpid()

    def disarm(self, ticket: int) -> str:
        """End the watch: ``"cut"`` (its connection is then unusable), ``"cancelled"`` (the
        server was asked to end it) or ``""``."""
        with self._cond:
            self._armed.pop(ticket, None)
            return self._acted.pop(ticket, "")

    def stop(self) -> None:
        """End the thread once no call is armed: a call still in flight stays bounded."""
        if self._pid != os.getpid():  # no thread of this process to stop
            self._stopped = True
            return
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while True:
                if not self._armed:
                    if self._stopped:
                        self._running = False
                        return
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                now = time.monotonic()
                for ticket, watch in list(self._armed.items()):  # under the lock: a disarmed call is never acted on
                    if watch.cancel is not None and watch.cancel_at <= now:
                        threading.Thread(target=_quietly, args=(watch.cancel,), name=f"{self._name}-cancel",
                                         daemon=True).start()
                        watch.cancel = None
                        self._acted[ticket] = "cancelled"
                    if watch.cut_at <= now:
                        del self._armed[ticket]
                        _shut(watch.fd)
                        self._acted[ticket] = "cut"
                if self._armed:  # a later arm only adds a later deadline: waking early is harmless
                    self._cond.wait(min(watch.due() for watch in self._armed.values()) - now)


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - a cancel that fails leaves the cut to end the call
        log.debug("cancelling a call past its timeout failed (%s: %s); it is cut a moment later", type(exc).__name__, exc)


def _shut(fd: int) -> None:
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)  # reaches every descriptor of the socket
    except OSError:  # already closed: the wait has ended anyway
        pass
