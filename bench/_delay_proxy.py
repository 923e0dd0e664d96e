"""A TCP proxy that holds every chunk for a fixed time in each direction: a server that far away.

Run: ``python bench/_delay_proxy.py LISTEN_PORT TARGET_PORT ONE_WAY_MS`` (loopback on both sides).
Used by ``store_threads.py`` to put PostgreSQL a network hop away, as in a data centre, where
loopback has no such wait (and ``tc netem`` is not available on every machine). Threads and
``time.sleep`` rather than an event loop: epoll waits in whole milliseconds, too coarse here.
"""

from __future__ import annotations

import queue
import socket
import sys
import threading
import time


def _pipe(source: socket.socket, sink: socket.socket, delay: float) -> None:
    held: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def forward() -> None:
        while True:
            due, data = held.get()
            if not data:
                sink.shutdown(socket.SHUT_WR)
                return
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sink.sendall(data)

    threading.Thread(target=forward, daemon=True).start()
    try:
        while data := source.recv(65536):
            held.put((time.monotonic() + delay, data))
    except OSError:
        pass
    held.put((0.0, b""))


def main(listen: int, target: int, delay: float) -> None:
    server = socket.create_server(("127.0.0.1", listen))
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", target))
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_pipe, args=(client, upstream, delay), daemon=True).start()
        threading.Thread(target=_pipe, args=(upstream, client, delay), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000)
