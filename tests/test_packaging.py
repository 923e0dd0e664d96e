"""What users install: declared bounds that `make test-min` really tests, a wheel without the
test suite, and an sdist that carries everything its own tests need."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import convo

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
MIN_EXTRAS = ("sim", "fast", "redis")  # what `make test-min` installs besides the core


def _bounds(requirements: list[str]) -> dict[str, str]:
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*>=\s*([^,;\s]+)\s*(?:,.*)?", req)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_every_lower_bound_is_pinned_for_make_test_min():
    wanted = _bounds(PROJECT["dependencies"])
    for extra in MIN_EXTRAS:
        wanted |= _bounds(PROJECT["optional-dependencies"][extra])
    pins = dict(
        line.split("==") for line in (ROOT / "tests" / "min-versions.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert set(wanted) == set(pins), "tests/min-versions.txt must pin exactly the declared lower bounds"
    for name, low in wanted.items():
        assert re.fullmatch(rf"{re.escape(low)}(\.0)*", pins[name]), (name, low, pins[name])


# import name -> distribution, for the third-party packages convo's own modules import
DISTRIBUTIONS = {"anthropic": "anthropic", "httpx2": "httpx2", "tenacity": "tenacity", "pydantic": "pydantic",
                 "click": "click", "tqdm": "tqdm", "tiktoken": "tiktoken", "numpy": "numpy", "aiohttp": "aiohttp",
                 "redis": "redis"}
OPTIONAL = {"numpy", "aiohttp", "redis"}  # in an extra, unless a core module imports them at load


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"(?:import|from) (\w+)", line)  # column 0 only: imports inside functions are lazy
        if m and m.group(1) in DISTRIBUTIONS:
            names.add(DISTRIBUTIONS[m.group(1)])
    return names


def test_core_dependencies_match_what_the_core_imports():
    core = {re.split(r"[<>=\[ ]", r, maxsplit=1)[0].lower() for r in PROJECT["dependencies"]}
    imported = set().union(*(_top_level_imports(p) for p in (ROOT / "convo").rglob("*.py")
                             if "sim" not in p.relative_to(ROOT / "convo").parts))
    assert sorted(imported - core) == [], "imported when convo loads, so it must be a core dependency"
    assert sorted((core & OPTIONAL) - imported) == [], "no core module imports it at load: move it to its extra"
    assert _top_level_imports(ROOT / "convo" / "sim" / "app.py") == {"aiohttp"}
    for req in PROJECT["dependencies"]:
        assert ">=" in req and "<" in req, f"{req}: give a lower and an upper bound"
    assert "convo[sim,fast,redis]" in PROJECT["optional-dependencies"]["dev"]


def test_version_and_license_agree():
    assert PROJECT["version"] == convo.__version__
    assert PROJECT["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert any(c.startswith("Programming Language :: Python :: 3.11") for c in PROJECT["classifiers"])
    assert f"## [{convo.__version__}]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    try:  # the `build` distribution (a setuptools build/ folder in the checkout would import too)
        importlib.metadata.version("build")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the build package is not installed (it is in the dev extra)")
    out = tmp_path_factory.mktemp("dist")
    # the sdist, then the wheel built from the unpacked sdist (as pip does), so no build/ is left here
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=600)
    return out


def test_the_sdist_carries_the_tests_and_what_they_need(dist, tmp_path):
    (sdist,) = dist.glob("convo-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path, filter="data")
    git = subprocess.run(["git", "ls-files", "tests", "samples", "docs", "notebooks", "convo"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    tracked = git.stdout.split() if git.returncode == 0 else []
    if tracked:  # a git checkout (not an unpacked sdist): every tracked file of those folders is in it
        assert sorted(set(tracked) - names) == []
    for needed in ("tests/conftest.py", "tests/helpers.py", "tests/min-versions.txt", "tests/data/undocumented.txt",
                   "samples/python-docs.txt", "LICENSE", "CHANGELOG.md", "mkdocs.yml", "Makefile",
                   "convo/__init__.pyi", "convo/py.typed"):
        assert needed in names, needed
    assert not any("__pycache__" in n for n in names)
    # its own tests run from the unpacked folder, importing the unpacked package
    (src,) = tmp_path.glob("convo-*")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_exports.py",
                          "tests/test_docs.py", "tests/test_chunking.py", "-k", "not sdist"],
                         check=False, cwd=src, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    imported = subprocess.run([sys.executable, "-c", "import convo; print(convo.__file__)"], cwd=src,
                              env={"PYTHONPATH": str(src)}, capture_output=True, text=True, check=True).stdout
    assert imported.strip().startswith(str(src))


def test_the_wheel_has_the_package_and_its_data_but_no_tests(dist):
    (wheel,) = dist.glob("convo-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        meta = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"convo/__init__.py", "convo/__init__.pyi", "convo/py.typed", "convo/data/models.json"} <= names
    assert not any(n.startswith(("tests/", "bench/", "samples/")) for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Provides-Extra: sim" in meta and "Requires-Dist: aiohttp<4,>=3.14; extra == \"sim\"" in meta
    assert "Requires-Dist: anthropic<3,>=2.10" in meta
