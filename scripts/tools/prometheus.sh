#!/usr/bin/env bash
# Build Prometheus with Kubernetes service discovery into ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}/prometheus-k8s.
#
# Debian's prometheus (2.42, what the integration tier runs) is built without the kubernetes SD
# plugin ("field kubernetes_sd_configs not found"), and the node tier's rollout gates must find
# the predictor pods the way a user's Prometheus does: kubernetes_sd_configs against the API
# server plus the chart's prometheus.io/* pod annotations. So the node tier builds Prometheus
# v3.16 (Go module github.com/prometheus/prometheus v0.316.0) with only the kubernetes, file and
# http discovery plugins (the module's own build tags). Its web UI assets are left out; the API
# is all the tests use. Idempotent (a stamp per version); cold ~10-20 min on 2 cores.
set -euo pipefail

PROMETHEUS_MODULE_VERSION="${HOUSING_PROMETHEUS_MODULE_VERSION:-v0.316.0}"
. "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"

go_build prometheus-k8s "$PROMETHEUS_MODULE_VERSION" github.com/prometheus/prometheus ./cmd/prometheus \
  "-X github.com/prometheus/common/version.Version=$PROMETHEUS_MODULE_VERSION" "remove_all_sd,enable_kubernetes_sd"
"$TOOLS_DIR/prometheus-k8s" --version | sed -n 1p
