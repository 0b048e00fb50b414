# AVCaption — `make run` starts the whole platform on the embedded defaults, `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MEMBERS := libs/common services/gateway services/upload services/media services/stats services/webhooks clients/python
# Never download a Python interpreter: use the machine's own.
export UV_PYTHON_DOWNLOADS := never
UV = $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
PYTEST_ARGS ?=

.PHONY: help setup run test lint fmt lock clean

help:
	@echo "make run    set up (first time) and start the whole platform on the embedded defaults"
	@echo "make test   set up (first time) and run the test suite"
	@echo "make lint   ruff + mypy"
	@echo "make lock   re-resolve dependencies and refresh requirements.lock"

setup: $(STAMP)

# uv comes from PyPI when the machine does not have it yet.
$(STAMP): requirements.lock pyproject.toml $(addsuffix /pyproject.toml,$(MEMBERS))
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
	  $(PYTHON) -m pip install --user --quiet uv 2>/dev/null || \
	  $(PYTHON) -m pip install --user --quiet --break-system-packages uv 2>/dev/null || \
	  $(PYTHON) -m pip install --quiet uv || \
	  { echo "setup: could not install uv with '$(PYTHON) -m pip'; install pip for $(PYTHON) first" >&2; exit 1; }
	$(UV) venv --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip sync --python $(BIN)/python --require-hashes requirements.lock
	$(UV) pip install --python $(BIN)/python --no-deps --no-build-isolation \
	  -e . $(addprefix -e ,$(MEMBERS))
	@touch $(STAMP)

run: setup
	$(BIN)/avcaption serve

test: setup
	$(BIN)/pytest -rs --durations=20 $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make lock LOCK_ARGS=--upgrade` moves every pin to the newest release.
# uv.lock stays out of git (it records the registry's addresses); requirements.lock holds
# versions and hashes only.
lock:
	$(UV) lock $(LOCK_ARGS)
	$(UV) export --frozen --all-groups --no-emit-workspace --no-header --format requirements-txt \
	  -o requirements.lock >/dev/null

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

.PHONY: bench-gateway fuzz

# Gateway overhead: an authenticated GET through the gateway vs the service directly
# (bench/README.md). BENCH_ARGS="--requests 2000 --concurrency 16" to change the load.
BENCH_ARGS ?=
bench-gateway: setup
	$(BIN)/python bench/gateway/run.py $(BENCH_ARGS)

# Schemathesis over the public OpenAPI of an all-in-one server with an API key; fails on any
# 5xx. FUZZ_ARGS="--max-examples 50" for a longer run.
FUZZ_ARGS ?=
fuzz: setup
	$(BIN)/python -m tests.e2e.fuzz $(FUZZ_ARGS)

.PHONY: asyncapi

# The AsyncAPI document of the bus events, generated from avc_common.events (docs/events.md);
# tests/events fails until the committed copy matches the code.
asyncapi: setup
	$(BIN)/python -m avc_common.asyncapi > docs/asyncapi.yaml.tmp
	mv docs/asyncapi.yaml.tmp docs/asyncapi.yaml

.PHONY: deploy-tools lock-deploy-tools reliability

# checkov (tests/deploy) pins versions that clash with the application's, so it gets its own
# virtualenv from its own hashed lock; `.ci/run` installs it, tests/deploy skips its checks
# (saying so) where it is missing.
CHECKOV_VENV := $(VENV)/tools/checkov
deploy-tools: setup $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed: deploy/tools/checkov.lock
	$(UV) venv --allow-existing --python $(PYTHON) $(CHECKOV_VENV)
	$(UV) pip sync --python $(CHECKOV_VENV)/bin/python --require-hashes deploy/tools/checkov.lock
	@touch $@

lock-deploy-tools:
	$(UV) pip compile --python-version 3.11 --generate-hashes --no-header --no-annotate \
	  deploy/tools/checkov.in -o deploy/tools/checkov.lock

# Whole-system fault tests alone (they also run in `make test`): every target as its own
# process over the local RabbitMQ and Redis, S3 on moto; see tests/reliability.
reliability: setup
	$(BIN)/pytest -rs tests/reliability $(PYTEST_ARGS)
