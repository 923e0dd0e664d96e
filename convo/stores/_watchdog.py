"""A deadline for calls on a connection whose client library has none of its own.

psycopg waits for a server's answer as long as it takes. A server-side ``statement_timeout``
ends a slow statement, but not a wait on a server that does not answer at all (a stopped process,
a host or network gone): the kernel still acknowledges the bytes, so TCP never gives up either,
and the caller hangs. The watchdog shuts the connection's socket down once a call outlasts its
deadline; the client's wait then ends at once with a connection error, which the store reports
as a :class:`~convo.StoreError`, and the next call reconnects.

One daemon thread per watchdog, started on first use (again after a fork), watching every call in
flight (one per pooled connection). Arming and disarming is a lock and a dict entry; the thread
is woken only when it sleeps with nothing armed.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time

__all__ = ["Watchdog"]

_STARTING = threading.Lock()  # one thread per watchdog and process, however many threads arm it first


class Watchdog:
    """Cuts the socket of a call that outlasts ``after`` seconds. ``ticket = arm(fd)`` before the
    call, ``disarm(ticket)`` after it (True when the call was cut)."""

    def __init__(self, after: float, name: str) -> None:
        self.after = after
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._armed: dict[int, tuple[int, float]] = {}  # ticket -> (socket, deadline)
        self._cut: set[int] = set()  # tickets whose call was cut, until disarmed
        self._tickets = itertools.count()
        self._idle = False  # the thread waits with no deadline: arming must wake it
        self._stopped = False
        self._running = False  # this process's thread is watching (it ends after stop, once nothing is armed)
        self._pid = 0

    def arm(self, fd: int) -> int:
        """Watch a call on socket ``fd``; the ticket to pass to :meth:`disarm`."""
        if self._pid != os.getpid():  # no thread yet, or the parent's (threads do not fork)
            self._start()
        with self._cond:
            ticket = next(self._tickets)
            self._armed[ticket] = (fd, time.monotonic() + self.after)
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
                self._armed, self._cut, self._idle, self._stopped = {}, set(), False, False
            self._running = True
            threading.Thread(target=self._watch, name=self._name, daemon=True).start()
            self._pid = os.getpid()

    def disarm(self, ticket: int) -> bool:
        """End the watch; True if the call was cut (its connection is then unusable)."""
        with self._cond:
            self._armed.pop(ticket, None)
            if ticket in self._cut:
                self._cut.discard(ticket)
                return True
            return False

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
                due = [t for t, (_, deadline) in self._armed.items() if deadline <= now]
                for ticket in due:  # under the lock: a disarmed call is never cut afterwards
                    fd, _ = self._armed.pop(ticket)
                    _shut(fd)
                    self._cut.add(ticket)
                if self._armed:  # a later arm only adds a later deadline: waking early is harmless
                    self._cond.wait(min(deadline for _, deadline in self._armed.values()) - now)


def _shut(fd: int) -> None:
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)  # reaches every descriptor of the socket
    except OSError:  # already closed: the wait has ended anyway
        pass
