"""Every Python example in the README runs (against the simulator, offline), each in a fresh
temporary folder, and leaves nothing behind in the repository."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, tmp_path, monkeypatch, capsys):
    if "opentelemetry" in code and importlib.util.find_spec("opentelemetry.sdk") is None:
        pytest.skip("the OpenTelemetry example needs convo[otel] and opentelemetry-sdk")
    (tmp_path / "samples").symlink_to(ROOT / "samples")  # the examples read samples/ as from the root
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    before = sorted(p.name for p in ROOT.iterdir())
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})  # noqa: S102 (the README's own code)
    assert sorted(p.name for p in ROOT.iterdir()) == before  # chat.json, run.db ... stay in tmp_path
