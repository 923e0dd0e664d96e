"""The API reference covers every public name, and every public name says what it is for.

``make docs`` (run by ``make test``) builds the reference with mkdocs in strict mode, so a broken
reference fails there; this test checks what a build cannot: that nothing public is left out,
and that no public class, function, method or property lacks a docstring. The names still
without one are listed in tests/data/undocumented.txt, which may only shrink.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import convo

ROOT = Path(__file__).resolve().parent.parent
LISTED = ROOT / "tests" / "data" / "undocumented.txt"


def _undocumented() -> set[str]:
    missing: set[str] = set()
    for name in convo.__all__:
        if name == "__version__":
            continue
        obj = getattr(convo, name)
        if not (getattr(obj, "__doc__", None) or "").strip() or (inspect.isclass(obj) and obj.__doc__ is None):
            missing.add(name)
        if not inspect.isclass(obj):
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_"):
                continue
            fn = member.fget if isinstance(member, property) else member
            if isinstance(fn, (staticmethod, classmethod)):
                fn = fn.__func__
            if not (inspect.isfunction(fn) or isinstance(member, property)):
                continue
            inherited = any(
                (getattr(vars(base)[attr], "__doc__", None) or "").strip()
                for base in obj.__mro__[1:] if attr in vars(base)
            )
            if not (fn.__doc__ or "").strip() and not inherited:
                missing.add(f"{name}.{attr}")
    return missing


def test_every_public_name_is_in_the_reference():
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*.md"))
    documented = set(re.findall(r"^::: convo\.(\w+)$", pages, re.MULTILINE))
    assert sorted(set(convo.__all__) - {"__version__"} - documented) == []
    assert sorted(documented - set(convo.__all__)) == []  # no page names something that is gone


def test_every_public_name_has_a_docstring_or_is_listed():
    listed = {line.split()[1] for line in LISTED.read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")}
    missing = _undocumented()
    assert sorted(missing - listed) == [], "write a docstring for these"
    assert sorted(listed - missing) == [], f"documented now: remove these from {LISTED.name}"


def test_the_reference_pages_are_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in (ROOT / "docs" / "api").glob("*.md"):
        assert f"api/{page.name}" in nav, page.name
    assert "strict: true" in nav
