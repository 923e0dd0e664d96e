"""How convo's clients connect to Redis and PostgreSQL: TCP keepalives, and Redis's client options.

An operating system's default waits two hours before it probes an idle connection (Linux:
``tcp_keepalive_time`` 7200 s). NATs and firewalls forget idle flows much sooner (AWS's default:
350 s), so a pooled connection idle for a few minutes can be dropped silently; the next call is
then sent into the void and waits out its whole timeout. Probing after a minute keeps the flow
alive, and finds a peer that vanished within a minute and a half.
"""

from __future__ import annotations

import importlib.util
import socket
from typing import Any

__all__ = ["KEEPALIVE_COUNT", "KEEPALIVE_IDLE", "KEEPALIVE_INTERVAL", "keepalive_options", "redis_options"]

KEEPALIVE_IDLE = 60  # seconds idle before the first probe
KEEPALIVE_INTERVAL = 10  # seconds between probes
KEEPALIVE_COUNT = 3  # unanswered probes before the connection is given up


def keepalive_options() -> dict[int, int]:
    """The socket options (``TCP_KEEPIDLE`` and friends, as this platform names them) for a
    client that takes them as a mapping, such as redis-py's ``socket_keepalive_options``."""
    idle = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)  # macOS: TCP_KEEPALIVE
    wanted = ((idle, KEEPALIVE_IDLE), (getattr(socket, "TCP_KEEPINTVL", None), KEEPALIVE_INTERVAL),
              (getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_COUNT))
    return {option: value for option, value in wanted if option is not None}


def redis_options(timeout: float) -> dict[str, Any]:
    """``redis.Redis.from_url`` arguments shared by convo's Redis clients (conversation store,
    ``RedisStore``, ``RedisCache``): every call bounded by one ``timeout``, no retries of the
    client's own (a write is never sent twice behind the caller's back, and a call costs one
    timeout at most), and keepalives where redis-py leaves them off (5.x to 7.x; 8.0 on probes
    idle connections after 30 s by itself)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
    if importlib.util.find_spec("redis._defaults") is None:
        options.update(socket_keepalive=True, socket_keepalive_options=keepalive_options())
    return options
