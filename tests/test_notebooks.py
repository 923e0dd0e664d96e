"""Every notebook in notebooks/ runs top to bottom on the simulator, and none stores outputs.

The notebooks run in a kernel of this interpreter (the venv's), through a kernelspec written
to a temporary Jupyter path, so whatever kernels the machine has installed play no part.

    python tests/test_notebooks.py --strip     # remove outputs before committing
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "convo-test-venv"


def strip(path: Path) -> bool:
    """Remove outputs and execution counts in place; True if the file changed."""
    import nbformat

    book = nbformat.read(path, as_version=4)
    changed = False
    for cell in book.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count = [], None
            changed = True
        if cell.metadata.pop("execution", None) is not None:
            changed = True
    if book.metadata.pop("widgets", None) is not None:
        changed = True
    if changed:
        nbformat.write(book, path)
    return changed


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec that starts this interpreter's ipykernel, on a private JUPYTER_PATH."""
    pytest.importorskip("ipykernel")
    spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "convo tests (venv)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "JUPYTER_PLATFORM_DIRS", "ANTHROPIC_API_KEY", "MPLBACKEND")}
    os.environ["JUPYTER_PATH"] = str(spec_dir.parent.parent)
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    os.environ.pop("ANTHROPIC_API_KEY", None)  # the notebooks must run with no API key
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend draws the plots
    try:
        yield KERNEL
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"chatbot.ipynb", "long_document.ipynb", "rate_limited_batch.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_stores_no_outputs(path):
    book = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(book["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} of {path.name} has outputs; run `make strip-notebooks`"
            assert cell.get("execution_count") is None, f"cell {i} of {path.name} has an execution count"


def _execute(path: Path, kernel: str) -> Any:
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(path, as_version=4)
    NotebookClient(
        book, timeout=120, kernel_name=kernel, resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    ).execute()
    return book


@pytest.fixture(scope="module")
def executed(kernel):
    """Every notebook, executed; they run side by side (each in its own kernel) to save time."""
    with ThreadPoolExecutor(len(NOTEBOOKS)) as pool:
        futures = {path: pool.submit(_execute, path, kernel) for path in NOTEBOOKS}
        return {path: future.exception() or future.result() for path, future in futures.items()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, executed):
    book = executed[path]
    if isinstance(book, BaseException):
        raise book
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew no plot"


if __name__ == "__main__":
    if sys.argv[1:] != ["--strip"]:
        sys.exit("usage: python tests/test_notebooks.py --strip")
    for notebook in NOTEBOOKS:
        print(f"{'stripped' if strip(notebook) else 'clean   '} {notebook.relative_to(ROOT)}")
