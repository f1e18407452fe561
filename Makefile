# aiaas — one command each: make run, make test. Both set up what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
ARGS ?=
TEXT ?= 1
QUICK ?=

.PHONY: setup protos docs run test triton-client test-fast lint format bench soak clean help

help:  ## List targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): clients/python/pyproject.toml services/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e clients/python -e 'services[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## Create .venv and install everything (idempotent)

protos: setup  ## Regenerate Python code from protos/ into clients/python
	PYTHON=$(PY) bash scripts/gen_protos.sh

docs: setup  ## Regenerate docs/configuration.md from the settings classes
	$(PY) scripts/settings_table.py > docs/configuration.md

run: setup  ## Start the four services and run the demo: train, export, deploy, infer; digits then text (ARGS=--once to exit after it, TEXT=0 skips text)
	AIAAS_RUN_TEXT=$(TEXT) $(PY) -m aiaas_services.demo $(ARGS)

test: setup triton-client  ## Run the whole test suite
	$(PY) -m pytest tests

TRITON_VENV := .venv-triton
$(TRITON_VENV)/.setup-stamp-http:
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q 'tritonclient[grpc,http]==2.73.0' 'protobuf>=5,<7' 'numpy<3'
	touch $@

triton-client: $(TRITON_VENV)/.setup-stamp-http  ## Build .venv-triton: NVIDIA's tritonclient (protobuf < 7), as a user's client has it

lint: setup  ## ruff (lint + format check) and mypy on our code
	$(VENV)/bin/ruff check services clients tests bench
	$(VENV)/bin/ruff format --check services clients tests bench
	$(VENV)/bin/mypy

format: setup  ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix services clients tests bench
	$(VENV)/bin/ruff format services clients tests bench

bench: setup  ## Benchmarks; QUICK=1 for the short form. Writes bench/results/latest.json
	$(PY) -m bench $(if $(QUICK),--quick,)

soak: setup  ## Long soak test of the inference service
	AIAAS_SOAK_SECONDS=300 $(PY) -m pytest -s tests/integration/robustness/test_soak_and_overload.py

clean:  ## Remove the virtualenv, caches and local data of tests
	rm -rf $(VENV) .venv-* .pytest_cache .mypy_cache .ruff_cache bench/results/*.json bench/results/*.png
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
