# pm_polars entry points. A fresh machine needs only python3 and make:
#   make demo    run the synthetic demo end to end (creates .venv on first use)
#                (DEMO_ARGS=--serve: the live dashboard at http://127.0.0.1:8080/)
#   make test    ruff + mypy + pytest (installs redis-server, chromium and chromium-driver
#                via apt-get if missing)
#   make bench   run the benchmark scripts in bench/ (BENCH=engine for one)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the stamp lives inside the venv: a recreated venv is reinstalled, and so is a changed pyproject
STAMP := $(VENV)/.pm-polars-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check
DEMO_ARGS ?=
BENCH ?=
BENCH_ARGS ?=

.PHONY: help install demo test lint typecheck unit bench redis-server chromium

help:
	@echo "make demo   - run the synthetic demo (DEMO_ARGS='--events 1000000 --seed 3')"
	@echo "make demo DEMO_ARGS=--serve - the live demo dashboard at http://127.0.0.1:8080/"
	@echo "make test   - ruff, mypy and pytest (redis-server, chromium installed if missing)"
	@echo "make bench  - run bench/*.py (BENCH=engine for one; BENCH_ARGS passed through)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "installing pm_polars and its dependencies into $(VENV) ..."
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	@touch $@

install: $(STAMP)

demo: install
	$(BIN)/pm-polars demo $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check pm_polars tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

test: install redis-server chromium
	$(BIN)/ruff check pm_polars tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

# every bench/<name>.py script (not _helpers); BENCH=engine runs only bench/engine.py
bench: install
	@shopt -s nullglob; \
	if [ -n "$(BENCH)" ]; then scripts=(bench/$(BENCH).py); else scripts=(bench/[!_]*.py); fi; \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no bench scripts found"; exit 0; fi; \
	for script in "$${scripts[@]}"; do \
	  module=bench.$$(basename "$$script" .py); \
	  echo "== $$script"; $(BIN)/python -m "$$module" $(BENCH_ARGS) || exit $$?; \
	done

# The integration tests start their own redis-server on a free port; they only need the binary.
redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  echo "redis-server not found: installing it with apt-get"; \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi
	@command -v redis-server >/dev/null

# The dashboard's browser tests drive Debian's chromium through its chromedriver (one source
# package builds both, so their versions match; see tests/support/browser.py).
chromium:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "chromium/chromedriver not found: installing them with apt-get"; \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver >/dev/null; \
	fi
	@test -x /usr/bin/chromium && test -x /usr/bin/chromedriver
