#!/usr/bin/env bash
# Build the node tier's Gateway API implementation from the Go module proxy into
# ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}/traefik: traefik v3.6.12
# (github.com/traefik/traefik/v3, ./cmd/traefik), stripped.
#
# `go install …@v3.6.12` is refused (its go.mod has replace directives), so go-build.sh builds it
# from a writable copy of the module. Its web UI is empty (the module zip carries no built UI
# files); the node tier uses its Kubernetes Gateway provider (backendRefs[].weight → weighted
# round robin) and its Prometheus metrics. It supports the standard channel of Gateway API v1.4:
# the CRDs are the ones scripts/tools/kserve.sh links (gateway-api-src, at scripts/kind/lib.sh's
# GATEWAY_API_VERSION), installed by scripts/node/kserve-up.sh. traefik v3.7.x does not build here
# (its go-http-auth fork and some DNS-provider modules are not served).
# Idempotent (a stamp per version); cold ~20-25 min on 2 shared cores.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../gateway/traefik.sh"  # TRAEFIK_VERSION, shared with kind
TRAEFIK_VERSION="${HOUSING_TRAEFIK_VERSION:-$TRAEFIK_VERSION}"
. "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"

go_build traefik "$TRAEFIK_VERSION" github.com/traefik/traefik/v3 ./cmd/traefik \
  "-X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION"
# the module tree (its documented Gateway provider RBAC) for scripts/node/gateway-up.sh
ln -sfn "$(module_dir "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")" "$TOOLS_DIR/traefik-src"
"$TOOLS_DIR/traefik" version | sed -n 1,2p
