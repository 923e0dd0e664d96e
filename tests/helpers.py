"""Helpers shared by the tests (real files and images, built in memory)."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib


def png_bytes(width: int, height: int) -> bytes:
    """A real, minimal PNG of the given size (one grey channel, all zero)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def png_block(width: int, height: int) -> dict:
    data = base64.b64encode(png_bytes(width, height)).decode()
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


MODEL = "claude-sonnet-4-6"


def quick_client(sim, **kw):
    """A Client on the simulator whose retry sleeps do not wait."""
    from convo import Client

    return Client(api_key="test", base_url=sim.base_url, model=MODEL, sleep=lambda s: None, **kw)


def quick_aclient(sim, **kw):
    """The async twin of :func:`quick_client`."""
    from convo import AsyncClient

    async def nap(seconds):
        return None

    return AsyncClient(api_key="test", base_url=sim.base_url, model=MODEL, sleep=nap, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server that a test may stop and start again on the same port."""

    def __init__(self, workdir: str, *, persist: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.persist = persist  # an append-only file in workdir, so a restart keeps the data
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed (make test installs it)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", self.workdir,
             *(["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def kill(self) -> None:
        """The server dies at once (SIGKILL), as in a crash."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.proc = None


class PostgresServer:
    """A private PostgreSQL server in a temporary folder (initdb, trust auth, no fsync) on a free
    loopback port, that a test may stop and start again on the same port and data. ``folder``:
    where initdb and postgres are; ``as_user``: Popen's user and group when running as root
    (PostgreSQL refuses root)."""

    def __init__(self, folder: str, as_user: dict[str, str]) -> None:
        self.folder, self.as_user = folder, as_user
        self.workdir = tempfile.mkdtemp(prefix="convo-pg-")
        self.data = os.path.join(self.workdir, "data")
        if as_user:
            shutil.chown(self.workdir, as_user["user"], as_user["group"])
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dsn = f"postgresql://convo@127.0.0.1:{self.port}/postgres"
        subprocess.run([os.path.join(folder, "initdb"), "-D", self.data, "-U", "convo", "--auth=trust", "-E", "UTF8",
                        "--no-sync", "--no-instructions"], check=True, capture_output=True, **as_user)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [os.path.join(self.folder, "postgres"), "-D", self.data, "-p", str(self.port), "-k", self.workdir,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self.as_user,
        )
        deadline = time.monotonic() + 30
        ready = os.path.join(self.folder, "pg_isready")
        while subprocess.run([ready, "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.proc.kill()
                raise AssertionError("PostgreSQL did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown (SIGINT), as an operator's restart or a failover makes: each backend
        tells its client it is terminating, then goes."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class PgBouncer:
    """A private PgBouncer in front of ``server`` on a free loopback port, pooling ``mode``
    ("transaction" or "session") onto at most ``pool_size`` server connections, so clients share
    them. Runs as ``server.as_user`` (PgBouncer refuses root)."""

    def __init__(self, binary: str, server: PostgresServer, mode: str, pool_size: int = 2) -> None:
        self.binary, self.as_user = binary, server.as_user
        self.workdir = tempfile.mkdtemp(prefix="convo-pgbouncer-")
        self.port = free_port()
        self.dsn = f"postgresql://convo@127.0.0.1:{self.port}/postgres"
        self.ini = os.path.join(self.workdir, "pgbouncer.ini")
        with open(os.path.join(self.workdir, "users.txt"), "w") as f:
            f.write('"convo" ""\n')
        with open(self.ini, "w") as f:
            f.write(f"[databases]\npostgres = host=127.0.0.1 port={server.port} dbname=postgres user=convo\n"
                    f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\nauth_type = trust\n"
                    f"auth_file = {self.workdir}/users.txt\npool_mode = {mode}\ndefault_pool_size = {pool_size}\n"
                    f"unix_socket_dir =\nlogfile = {self.workdir}/pgbouncer.log\n")
        if self.as_user:
            for path in (self.workdir, self.ini, os.path.join(self.workdir, "users.txt")):
                shutil.chown(path, self.as_user["user"], self.as_user["group"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, self.ini], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     **self.as_user)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise AssertionError(f"PgBouncer did not start: {self.log()[-1000:]}")

    def log(self) -> str:
        try:
            with open(os.path.join(self.workdir, "pgbouncer.log")) as f:
                return f.read()
        except OSError:
            return ""

    def remove(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def in_background(fn, *args) -> tuple[threading.Thread, list[BaseException]]:
    """``fn(*args)`` started in a thread: the thread, and the list its exception lands in (if any)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors
