#!/usr/bin/env bash
# Build the node tier's resource-metrics API (metrics.k8s.io, what the HPA KServe creates reads)
# from the Go module proxy into ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}/metrics-server:
# metrics-server v0.8.0 (sigs.k8s.io/metrics-server, ./cmd/metrics-server), stripped, with the
# version its own Makefile stamps (k8s.io/client-go/pkg/version). v0.9.0 is not an approved
# release: keep v0.8.0. The module tree (its manifests/base RBAC and APIService) is linked as
# metrics-server-src for scripts/node/metrics-server-up.sh.
# Idempotent (a stamp per version); cold ~12 min on 2 shared cores.
set -euo pipefail

METRICS_SERVER_VERSION="${HOUSING_METRICS_SERVER_VERSION:-v0.8.0}"
. "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"

go_build metrics-server "$METRICS_SERVER_VERSION" sigs.k8s.io/metrics-server ./cmd/metrics-server \
  "-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION \
   -X k8s.io/client-go/pkg/version.buildDate=1970-01-01T00:00:00Z"
ln -sfn "$(module_dir "sigs.k8s.io/metrics-server@$METRICS_SERVER_VERSION")" "$TOOLS_DIR/metrics-server-src"
"$TOOLS_DIR/metrics-server" --version 2>&1 | sed -n 1p
