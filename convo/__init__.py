"""convo: multi-turn conversations for the Claude API that fit their token budget.

>>> import convo
>>> conv = convo.Conversation("You are terse.", model="claude-sonnet-4-6", budget=8000)
>>> conv.add_user("Hello")
>>> conv.request()["messages"]
[{'role': 'user', 'content': 'Hello'}]

Every public name is imported on first use, so ``import convo`` (and ``convo --help``) loads
neither the SDK nor tiktoken, numpy or aiohttp until something needs them. The names and their
modules are listed once, in ``__init__.pyi`` beside this file, which type checkers read too:
adding a public name is one line there.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__version__ = "0.1.0"


def _read_exports() -> dict[str, str]:
    """``{name: module}`` from the stub's ``from .module import Name as Name`` lines."""
    path = os.path.join(os.path.dirname(__file__), "__init__.pyi")
    with open(path, encoding="utf-8") as f:
        exports: dict[str, str] = {}
        for line in f:
            words = line.split()
            if len(words) == 6 and words[0] == "from" and words[2] == "import" and words[4] == "as":
                if words[3] != words[5] or not words[1].startswith("."):
                    raise ImportError(f"convo/__init__.pyi: {line.strip()!r} should read 'from .module import X as X'")
                exports[words[3]] = words[1]
    return exports


_EXPORTS = _read_exports()
__all__ = sorted([*_EXPORTS, "__version__"])  # noqa: PLE0605 (built from the stub, one list)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'convo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
