"""Fixtures shared by the test modules: the simulator, and a real redis-server and PostgreSQL
server on free loopback ports."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time

import pytest

from convo.sim import Simulator
from tests.helpers import PgBouncer, PostgresServer


@pytest.fixture(scope="module")
def sim():
    """One simulator per test module (fast to share; ``fresh`` resets it per test)."""
    with Simulator(seed=0) as s:
        yield s


@pytest.fixture
def fresh(sim):
    """The module's simulator with no faults and an empty request log."""
    sim.faults = None
    sim.clear_requests()
    return sim


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A private redis-server for the session (no persistence); stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; run the tests with `make test`, which installs it")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _postgres_binaries() -> str | None:
    """The folder of initdb and postgres: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return os.path.dirname(os.path.realpath(found))
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.path.exists(os.path.join(folder, "initdb")):
            return folder
    return None


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL server for the session (see :class:`tests.helpers.PostgresServer`);
    stopped and removed at the end. Run as the ``postgres`` user when the tests run as root
    (PostgreSQL refuses root)."""
    folder = _postgres_binaries()
    if folder is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run("apt-get update -qq && apt-get install -y -qq postgresql", shell=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        folder = _postgres_binaries()
    if folder is None:
        pytest.skip("PostgreSQL is not installed and could not be installed (apt-get install postgresql); "
                    "`make test` installs it")
    as_user: dict[str, str] = {}
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root with no 'postgres' user to run PostgreSQL as (initdb refuses root)")
        as_user = {"user": "postgres", "group": "postgres"}
    try:
        server = PostgresServer(folder, as_user)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"PostgreSQL did not initialize: {exc} {detail.decode(errors='replace')[-500:]}")
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server):
    """The DSN of the session's PostgreSQL server."""
    return postgres_server.dsn


@pytest.fixture
def pgbouncer(postgres_server):
    """Start a PgBouncer in front of the session's PostgreSQL: ``pgbouncer("transaction")`` (or
    "session"); each is stopped at the end of the test. Installed with apt when missing (as root)."""
    binary = shutil.which("pgbouncer") or next(iter(glob.glob("/usr/sbin/pgbouncer")), None)
    if binary is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run("apt-get install -y -qq pgbouncer || (apt-get update -qq && apt-get install -y -qq pgbouncer)",
                       shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        binary = shutil.which("pgbouncer") or next(iter(glob.glob("/usr/sbin/pgbouncer")), None)
    if binary is None:
        pytest.skip("PgBouncer is not installed (apt-get install pgbouncer); `make test` installs it")
    started: list[PgBouncer] = []

    def start(mode: str, pool_size: int = 2) -> PgBouncer:
        bouncer = PgBouncer(binary, postgres_server, mode, pool_size)
        started.append(bouncer)
        bouncer.start()
        return bouncer

    yield start
    for bouncer in started:
        bouncer.remove()


@pytest.fixture(autouse=True)
def _fresh_calibration():
    """Each test starts with the shared default counter untaught, so no test depends on which
    test files ran before it (the calibration is process-wide by design)."""
    from convo.tokens import calibration_of, default_counter

    cal = calibration_of(default_counter())
    if cal is not None:
        cal.reset()
    yield
