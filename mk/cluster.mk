# Cluster packaging targets (included by the top-level Makefile: include mk/*.mk).
#   make cluster-tools  helm v4 + kubectl v1.35 into ~/.cache/housing/bin
#   make chart-lint     helm lint --strict charts/housing
#   make manifests      regenerate k8s/ from the chart (default values)
#   make cluster-up     kind cluster + cert-manager + Gateway API + Envoy Gateway + KServe
#   make cluster-down   delete the kind cluster
#   make e2e            kind end-to-end (skips with a message without docker/kind)
#   make cluster-test   pytest -m cluster tests/cluster
#   make node-up        a real single-node Kubernetes + KServe v0.20.0 here (root; scripts/node/up.sh)
#   make node-down      stop it and remove its state (scripts/node/down.sh)
#   make node-test      pytest -m node (the chart on that node)

HOUSING_TOOLS_DIR ?= $(HOME)/.cache/housing/bin
HELM ?= $(HOUSING_TOOLS_DIR)/helm
CLUSTER_PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: cluster-tools chart-lint manifests cluster-up cluster-up-serverless cluster-down e2e cluster-test node-up node-down node-test

cluster-tools:
	HOUSING_TOOLS_DIR=$(HOUSING_TOOLS_DIR) bash scripts/tools/helm.sh

chart-lint: cluster-tools
	$(HELM) lint --strict charts/housing

manifests: cluster-tools
	HELM=$(HELM) bash scripts/kind/manifests.sh

cluster-up:
	bash scripts/kind/cluster-up.sh

cluster-up-serverless:
	bash scripts/kind/cluster-up.sh --serverless

cluster-down:
	bash scripts/kind/cluster-down.sh

e2e:
	bash scripts/kind/e2e.sh

cluster-test: cluster-tools
	$(CLUSTER_PYTHON) -m pytest -m cluster tests/cluster

node-up:
	bash scripts/tools/kube.sh && bash scripts/tools/kserve.sh && bash scripts/images/build.sh >/dev/null
	bash scripts/node/up.sh

node-down:
	bash scripts/node/down.sh

node-test:
	$(CLUSTER_PYTHON) -m pytest -m node tests/cluster
