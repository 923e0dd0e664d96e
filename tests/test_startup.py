"""``import convo`` and ``convo --help`` load nothing heavy: each name is imported on first use."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("anthropic", "httpx2", "numpy", "tiktoken", "aiohttp", "pydantic", "tenacity", "tqdm")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_import_convo_loads_nothing_heavy():
    assert _loaded_after("import convo") == []


def test_cli_help_loads_nothing_heavy():
    code = "from convo.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == []
    for command in ("summarize", "count", "chat", "sim"):
        assert _loaded_after(code.replace("'--help'", f"'{command}', '--help'")) == [], command


def test_a_name_loads_its_dependencies_on_first_use():
    loaded = _loaded_after("import convo\nconvo.Client")
    assert "anthropic" in loaded
    # (the SDK itself imports aiohttp when it is installed, for its optional transport)
    assert "numpy" not in loaded and "tiktoken" not in loaded
