"""A deadline for calls on a connection whose client library has none of its own.

psycopg waits for a server's answer as long as it takes. A server-side ``statement_timeout``
ends a slow statement, but not a wait on a server that does not answer at all (a stopped process,
a host or network gone): the kernel still acknowledges the bytes, so TCP never gives up either,
and the caller hangs. The watchdog shuts the connection's socket down once a call outlasts its
deadline; the client's wait then ends at once with a connection error, which the store reports
as a :class:`~convo.StoreError`, and the next call reconnects.

One daemon thread per watchdog, started on first use (again after a fork). Arming and disarming
is a lock and two assignments; the thread is woken only when it sleeps with nothing armed.
"""

from __future__ import annotations

import os
import socket
import threading
import time

__all__ = ["Watchdog"]

_STARTING = threading.Lock()  # one thread per watchdog and process, however many threads arm it first


class Watchdog:
    """Cuts the socket of a call that outlasts ``after`` seconds. ``arm(fd)`` before the call,
    ``disarm()`` after it (True when the call was cut)."""

    def __init__(self, after: float, name: str) -> None:
        self.after = after
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._fd = -1  # the armed call's socket (-1: none)
        self._deadline = 0.0
        self._cut = False
        self._idle = False  # the thread waits with no deadline: arming must wake it
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def arm(self, fd: int) -> None:
        if self._pid != os.getpid():  # no thread yet, or the parent's (threads do not fork)
            self._start()
        with self._cond:
            self._fd, self._deadline, self._cut = fd, time.monotonic() + self.after, False
            if self._idle:
                self._cond.notify()

    def _start(self) -> None:
        with _STARTING:
            if self._pid == os.getpid():
                return
            self._cond = threading.Condition(threading.Lock())  # after a fork the parent's copy may be held
            self._fd, self._idle, self._stopped = -1, False, False
            self._thread = threading.Thread(target=self._watch, name=self._name, daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def disarm(self) -> bool:
        """End the watch; True if the call was cut (its connection is then unusable)."""
        with self._cond:
            self._fd = -1
            return self._cut

    def stop(self) -> None:
        if self._pid != os.getpid():  # no thread of this process to stop
            self._stopped = True
            return
        with self._cond:
            self._stopped, self._fd = True, -1
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._fd < 0:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:  # a later arm only moves the deadline on: waking early is harmless
                    self._cond.wait(left)
                    continue
                _shut(self._fd)  # under the lock: a disarmed call is never cut afterwards
                self._fd, self._cut = -1, True


def _shut(fd: int) -> None:
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)  # reaches every descriptor of the socket
    except OSError:  # already closed: the wait has ended anyway
        pass
