# Set-up commands for a fresh clone. Each target creates what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test bench clean redis-server notebooks strip-notebooks

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,compat]'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

# The tests start their own redis-server on a free loopback port; install it if missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

## The demo: summarize a long sample document (Python's own docs) on the embedded simulator,
## offline and free even when ANTHROPIC_API_KEY is set.
demo: $(VENV)/.installed
	$(VENV)/bin/convo summarize --sim samples/python-docs.txt

## Run the whole test suite.
test: $(VENV)/.installed redis-server
	$(PY) -m pytest -q

## Run the benchmarks (peers side by side, ratios reported).
bench: $(VENV)/.bench-installed
	$(PY) bench/trim.py
	$(PY) bench/token_accuracy.py
	$(PY) bench/chunking.py
	$(PY) bench/sim_throughput.py
	$(PY) bench/client_overhead.py
	$(PY) bench/ratelimit.py
	$(PY) bench/batch.py
	$(PY) bench/mapreduce.py
	$(PY) bench/redaction.py

## Execute the notebooks (as the tests do), and strip their outputs before a commit.
notebooks: $(VENV)/.installed
	$(PY) -m pytest -q tests/test_notebooks.py

strip-notebooks: $(VENV)/.installed
	$(PY) tests/test_notebooks.py --strip

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
