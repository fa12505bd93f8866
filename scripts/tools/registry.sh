#!/usr/bin/env bash
# Build the CNCF Distribution registry (github.com/distribution/distribution/v3, ./cmd/registry)
# into ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}/registry.
#
# The skaffold loop on the node tier pushes the image it builds to a registry on 127.0.0.1 that
# the node's containerd pulls from — the part a kind user gets from `kind load` or a local
# registry container. No container registry is reachable from these machines, and Debian's
# docker-registry package is 2.8; v3.0.0 builds from the Go module proxy. Idempotent (a stamp per
# version); cold ~5-6 min on 2 cores.
set -euo pipefail

REGISTRY_VERSION="${HOUSING_REGISTRY_VERSION:-v3.0.0}"
. "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"

go_build registry "$REGISTRY_VERSION" github.com/distribution/distribution/v3 ./cmd/registry \
  "-X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION"
"$TOOLS_DIR/registry" --version | sed -n 1p
