# Set-up commands for a fresh clone. Each target creates what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: test bench clean redis-server

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

# The tests start their own redis-server on a free loopback port; install it if missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

## Run the whole test suite.
test: $(VENV)/.installed redis-server
	$(PY) -m pytest -q

## Run the benchmarks (peers side by side, ratios reported).
bench: $(VENV)/.bench-installed
	$(PY) bench/trim.py
	$(PY) bench/token_accuracy.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
