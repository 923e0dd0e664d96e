"""Start-up time: ``import convo`` and ``convo --help`` against ``import anthropic``.

Each command runs in a fresh interpreter (``python -X importtime`` is not used: it slows what it
measures). Rounds alternate the commands so that load elsewhere on the machine hits them alike;
the table gives the median wall time and its ratio to ``python -c "import anthropic"``, with a
bare ``python -c pass`` for the interpreter's own start. Target: ``convo --help`` at most half
of ``import anthropic``.

Run: ``make bench`` or ``.venv/bin/python bench/startup.py`` (``--rounds N``, ``--quick``).
Writes ``bench/results/startup.md``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine

SCRIPT = Path(sys.executable).with_name("convo")
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import anthropic": [sys.executable, "-c", "import anthropic"],
    "import convo": [sys.executable, "-c", "import convo"],
    "convo --help": [str(SCRIPT), "--help"],
    "from convo import Conversation": [sys.executable, "-c", "from convo import Conversation"],
}
BASE = "import anthropic"


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 rounds, print only")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    for command in COMMANDS.values():  # warm the file cache and the .pyc files
        wall(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for i in range(rounds):
        names = list(COMMANDS) if i % 2 == 0 else list(reversed(COMMANDS))
        for name in names:
            times[name].append(wall(COMMANDS[name]))
    base = statistics.median(times[BASE])
    lines = [
        "# Start-up time",
        "",
        machine("anthropic"),
        "",
        f"Median wall time of {rounds} runs each, in a fresh interpreter; ratio to `{BASE}`.",
        "",
        "| command | median ms | ratio |",
        "| --- | ---: | ---: |",
    ]
    for name, values in times.items():
        med = statistics.median(values)
        lines.append(f"| `{name}` | {med * 1000:.0f} | {med / base:.2f} |")
    ratio = statistics.median(times["convo --help"]) / base
    lines += ["", f"`convo --help` takes {ratio:.2f}x the time of `{BASE}` (target: at most 0.5x)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        out = Path(__file__).with_name("results") / "startup.md"
        out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
