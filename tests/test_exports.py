"""The public names: one sorted list in convo/__init__.pyi, each importable, errors under ConvoError."""

import subprocess
import sys
from pathlib import Path

import pytest

import convo

STUB = Path(convo.__file__).with_name("__init__.pyi")


def _stub_lines() -> list[str]:
    return [line for line in STUB.read_text(encoding="utf-8").splitlines() if line.startswith("from ")]


def test_all_is_sorted_and_complete():
    assert convo.__all__ == sorted(convo.__all__)
    for name in convo.__all__:
        assert hasattr(convo, name), name


def test_stub_lists_each_name_once_in_one_form():
    names = []
    for line in _stub_lines():
        words = line.split()
        assert len(words) == 6 and words[2] == "import" and words[3] == words[5], line
        names.append(words[3])
    assert len(names) == len(set(names))
    assert sorted([*names, "__version__"]) == convo.__all__


def test_each_name_comes_from_the_module_the_stub_names():
    for line in _stub_lines():
        _, module, _, name, _, _ = line.split()
        obj = getattr(convo, name)
        home = sys.modules["convo" + module]
        assert getattr(home, name) is obj, line


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Conversaton'"):
        convo.Conversaton  # noqa: B018
    assert "Conversation" in dir(convo)


def test_star_import_gives_every_name():
    code = "from convo import *; import convo; missing = [n for n in convo.__all__ if n not in globals()]; print(missing)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_errors_share_one_base():
    for name in convo.__all__:
        obj = getattr(convo, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, convo.ConvoError), name


def test_version():
    assert isinstance(convo.__version__, str) and convo.__version__.count(".") == 2
