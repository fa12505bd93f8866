# housing — developer entry points. `make demo` and `make test` are the README's quick start.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install tools demo test unit lint format bench bench-smoke clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(wildcard setup.py)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install housing with its dev tools

tools: install ## build/install what the tests use (MinIO, Kubernetes + KServe from source, node images, skaffold + helm 3, Prometheus, a registry, wrk, Chromium, MLServer venv, KServe runtimes venv, helm, kubectl, checkov)
	bash scripts/tools/minio.sh
	bash scripts/tools/debian.sh --with-chromium
	bash scripts/node/deps.sh
	$(PY) -c "from bench.mlserver import ensure_venv; print(ensure_venv())"
	bash scripts/tools/helm.sh
	bash scripts/tools/kube.sh
	bash scripts/tools/kserve.sh
	$(PY) -c "from bench.kserve_runtimes import ensure_venv; print(ensure_venv())"
	bash scripts/tools/skaffold.sh
	bash scripts/tools/prometheus.sh
	bash scripts/tools/registry.sh
	bash scripts/tools/checkov.sh --install-only
	bash scripts/images/build.sh

demo: install ## train → serve → V1/V2 predictions → a canary step, all embedded on this machine
	bash scripts/tools/debian.sh
	$(VENV)/bin/housing demo

lint: install ## ruff (lint + format check)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: install ## fast tests only (no servers)
	$(VENV)/bin/pytest -m "not integration and not cluster" $(PYTEST_ARGS)

test: install tools lint ## everything: unit, integration (real MinIO/MLflow/Prometheus/predictor), cluster (helm)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: install ## benchmarks: ours vs the KServe floor, KServe's xgbserver/sklearnserver, MLflow, MLServer; writes docs/benchmarks.md
	$(VENV)/bin/housing bench

clean: ## remove the embedded state (.housing) and caches
	rm -rf .housing .pytest_cache .ruff_cache

-include mk/*.mk
