"""The line every results file starts with: machine, packages, load and time (shared by the benches)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import time
from importlib.metadata import PackageNotFoundError, version


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor() or platform.machine()


def reference_ms() -> float:
    """Median ms of a fixed pure-Python loop: how fast this (shared, virtual) CPU was just now.
    The load average misses time the host takes from the machine; this shows it, so results
    of different days can be set side by side."""
    times = []
    for _ in range(30):
        start = time.perf_counter()
        total = 0
        for i in range(100_000):
            total += i
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def machine(*packages: str, convo: str | None = None) -> str:
    """``Python ..., N CPUs (cpu), OS; convo X, pkg Y, ...; load L; date UTC; reference loop ms``.

    ``convo`` replaces the "convo X" label (e.g. with a commit); ``packages`` are reported by version.
    """
    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    import convo as _convo

    parts = [convo or f"convo {_convo.__version__}", *(f"{p} {ver(p)}" for p in packages)]
    load = f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), {os.cpu_count()} CPUs "
        f"({_cpu() or platform.machine()}), {platform.system()} {platform.release()}; {', '.join(parts)}{load}; "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; reference loop {reference_ms():.2f} ms"
    )
