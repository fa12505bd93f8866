# housing — developer entry points. `make demo` and `make test` are the README's quick start.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install lock tools tools-base tools-node demo test unit lint format bench bench-smoke clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# the one lock: requirements/lock.txt (hashed, made by `make lock`); uv syncs .venv to exactly it
$(STAMP): pyproject.toml requirements/lock.txt $(wildcard setup.py) $(wildcard */*.c */*/*.c */*/*.h)
	@uv="$$(bash scripts/tools/uv.sh)" \
	  && { test -x $(PY) || "$$uv" venv -q --seed --python "$$(command -v python3)" $(VENV); } \
	  && VIRTUAL_ENV=$(VENV) "$$uv" pip sync -q --require-hashes requirements/lock.txt \
	  && VIRTUAL_ENV=$(VENV) "$$uv" pip install -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv from the lock (requirements/lock.txt, hashes checked) and install housing in it

lock: ## re-resolve requirements/lock.txt against the index as of now and print what changed (then: make install)
	bash scripts/lock/refresh.sh

tools: tools-base tools-node ## build/install everything the tests use (both lists below)

tools-base: install ## what the unit, integration and bench tiers use: MinIO, Debian packages (prometheus, wrk, Chromium), helm + kubectl, checkov, the MLServer and KServe-runtime venvs
	bash scripts/tools/minio.sh
	bash scripts/tools/debian.sh --with-chromium
	bash scripts/tools/helm.sh
	bash scripts/tools/checkov.sh --install-only
	$(PY) -c "from bench.mlserver import ensure_venv; print(ensure_venv())"
	$(PY) -c "from bench.kserve_runtimes import ensure_venv; print(ensure_venv())"

tools-node: install ## what the helm, images and node tiers use: Kubernetes + KServe from source, CoreDNS, skaffold + helm 3, Prometheus (k8s SD), a registry, traefik (Gateway API), metrics-server, the images
	bash scripts/node/deps.sh
	bash scripts/tools/helm.sh
	bash scripts/tools/kube.sh
	bash scripts/tools/kserve.sh
	bash scripts/tools/skaffold.sh
	bash scripts/tools/prometheus.sh
	bash scripts/tools/traefik.sh
	bash scripts/tools/metrics-server.sh
	bash scripts/tools/registry.sh
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

test: install lint ## everything: unit, integration (real MinIO/MLflow/Prometheus/predictor), bench, helm, images, node
	bash scripts/test.sh $(PYTEST_ARGS)

bench: install ## benchmarks: ours vs the KServe floor, KServe's xgbserver/sklearnserver, MLflow, MLServer; writes docs/benchmarks.md
	$(VENV)/bin/housing bench

clean: ## remove the embedded state (.housing) and caches
	rm -rf .housing .pytest_cache .ruff_cache

-include mk/*.mk
