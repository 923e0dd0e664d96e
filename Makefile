# Set-up commands for a fresh clone. Each target creates what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The minimum-versions environment (tests/min-versions.txt), apart from the main one.
MINVENV ?= .venv-min
MINPY   := $(MINVENV)/bin/python
# The core suite run on the minimum versions: everything but the notebooks (their Jupyter stack
# is a test tool, not a dependency) and the long soaks of test_reliability.py (about 3 minutes
# on 2 shared cores). One test is left out: with redis-py 5-7 a password in the URL of a server
# that has none fails at AUTH (redis-py 8 accepts it), which is the server's answer, not convo's.
CORE_TESTS := tests --ignore=tests/test_notebooks.py --ignore=tests/test_reliability.py \
	--deselect tests/test_security.py::test_a_password_in_a_redis_url_is_never_shown

.PHONY: demo test test-min lint docs dist bench clean redis-server postgres notebooks strip-notebooks

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,compat]'
	touch $@

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

$(MINVENV)/.installed: pyproject.toml tests/min-versions.txt
	$(PYTHON) -m venv $(MINVENV)
	$(MINPY) -m pip install --quiet --upgrade pip
	$(MINPY) -m pip install --quiet -c tests/min-versions.txt -e '.[sim,fast,redis]' pytest hypothesis pillow jsonschema
	touch $@

# The tests start their own redis-server on a free loopback port; install it if missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# The tests start their own PostgreSQL (initdb into a temporary folder, a free loopback port)
# and PgBouncers in front of it; install them if neither PATH nor Debian's /usr/lib/postgresql/N/bin
# has initdb, or no pgbouncer is found.
postgres:
	@{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } && \
	  { command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; } || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql pgbouncer >/dev/null; }

## The demo: summarize a long sample document (Python's own docs) on the embedded simulator,
## offline and free even when ANTHROPIC_API_KEY is set.
demo: $(VENV)/.installed
	$(VENV)/bin/convo summarize --sim samples/python-docs.txt

## Run the whole test suite, build the API reference (strict: a missing docstring or a broken
## reference fails), and run the core suite on the minimum versions of the dependencies.
test: $(VENV)/.installed redis-server postgres docs lint
	$(PY) -m pytest -q
	$(MAKE) test-min

## Static checks: ruff over the repository, mypy --strict over the package.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict convo

## The core suite on the lowest declared versions (tests/min-versions.txt), in its own venv.
test-min: $(MINVENV)/.installed
	$(MINPY) -m pytest -q -p no:cacheprovider $(CORE_TESTS)

## The API reference, in site/ (mkdocs + mkdocstrings, strict).
docs: $(VENV)/.docs-installed
	$(VENV)/bin/mkdocs build --strict --quiet

## The wheel and the sdist, in dist/.
dist: $(VENV)/.installed
	$(PY) -m build --outdir dist .

## Run the benchmarks (peers side by side, ratios reported).
bench: $(VENV)/.bench-installed
	$(PY) bench/startup.py
	$(PY) bench/trim.py
	$(PY) bench/token_accuracy.py
	$(PY) bench/chunking.py
	$(PY) bench/sim_throughput.py
	$(PY) bench/client_overhead.py
	$(PY) bench/ratelimit.py
	$(PY) bench/batch.py
	$(PY) bench/mapreduce.py
	$(PY) bench/redaction.py
	$(PY) bench/stores.py
	$(PY) bench/store_threads.py

## Execute the notebooks (as the tests do), and strip their outputs before a commit.
notebooks: $(VENV)/.installed
	$(PY) -m pytest -q tests/test_notebooks.py

strip-notebooks: $(VENV)/.installed
	$(PY) tests/test_notebooks.py --strip

clean:
	rm -rf $(VENV) $(MINVENV) .pytest_cache .hypothesis build dist site *.egg-info
