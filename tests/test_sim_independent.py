"""convo/sim is a second implementation of the API: it imports nothing of convo outside itself
(so convo and the simulator cannot agree merely by sharing code)."""

from __future__ import annotations

import ast
from pathlib import Path

import convo.sim

SIM = Path(convo.sim.__file__).resolve().parent


def _imports(path: Path, package: tuple[str, ...] | None = None) -> list[tuple[int, str]]:
    """(line, module) for every import in a module, relative ones resolved against its package."""
    if package is None:
        package = ("convo", "sim", *path.relative_to(SIM).parent.parts)
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level > len(package):
                    out.append((node.lineno, "<beyond the top package>"))
                    continue
                base = ".".join(package[: len(package) - node.level + 1])
            else:
                base = ""
            if node.module:
                out.append((node.lineno, f"{base}.{node.module}" if base else node.module))
            else:  # "from .. import messages" imports the module convo.messages
                out.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return out


def _outside(name: str) -> bool:
    return name == "convo" or (name.startswith("convo.") and not (name == "convo.sim" or name.startswith("convo.sim.")))


def test_every_sim_module_imports_only_the_sim_or_third_parties():
    modules = sorted(SIM.rglob("*.py"))
    assert len(modules) > 10
    found = [
        f"{path.relative_to(SIM)}:{line} imports {name}"
        for path in modules for line, name in _imports(path) if _outside(name) or name.startswith("<")
    ]  # fmt: skip
    assert found == []


def test_the_scan_catches_what_it_should(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from .. import messages\nfrom ..tokens import x\nimport convo.models\nfrom . import rules\n"
        "from .cache import y\nfrom ... import z\n"
    )
    names = [name for _, name in _imports(probe, ("convo", "sim"))]
    assert names == [
        "convo.messages", "convo.tokens", "convo.models", "convo.sim.rules", "convo.sim.cache", "<beyond the top package>"
    ]  # fmt: skip
    assert [_outside(n) for n in names[:5]] == [True, True, True, False, False]
