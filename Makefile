# Stratoflow: the two commands a newcomer needs are `make demo` and `make test`.
# Each installs what it needs into .venv (Python 3.11, dependencies pinned in
# requirements.lock) on first use.

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
# The embedded Airflow lives inside the checkout unless AIRFLOW_HOME says otherwise.
export AIRFLOW_HOME ?= $(CURDIR)/.stratoflow/airflow
# `airflow standalone` starts its children by the name `airflow`: the venv's bin goes first.
export PATH := $(BIN):$(PATH)

.PHONY: install demo test up down lint bench clean

install: $(VENV)/.installed

# M2Crypto (needed by the fts3 client) builds from source with Debian's swig and libssl-dev.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(VENV)/.installed: pyproject.toml requirements.lock
	command -v swig >/dev/null && test -e /usr/include/openssl/ssl.h || \
	  $(SUDO) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq swig libssl-dev'
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Python 3.11 or 3.12 is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==0.13.8
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c requirements.lock -e ".[dev]"
	touch $@

demo: install  ## the demo campaign end to end on the embedded Airflow
	$(BIN)/stratoflow demo

# Two workers, a whole test module each (--dist loadfile): each worker has its own Airflow
# home and ports, and a module's Airflow fixtures stay on one worker.
test: lint  ## the linters, then the whole test suite
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadfile

up: install  ## start the embedded Airflow in the background
	$(BIN)/stratoflow up

down:  ## stop the embedded Airflow
	-test -x $(BIN)/stratoflow && $(BIN)/stratoflow down

lint: install  ## style, the layering contracts and the types (settings in pyproject.toml)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/parse_dags.py

clean: down
	rm -rf .stratoflow
