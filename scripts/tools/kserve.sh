#!/usr/bin/env bash
# Build what the single-node cluster tier runs besides Kubernetes itself, from the Go module
# proxy, into ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}:
#   kserve-manager  KServe's controller (cmd/manager) at v0.20.0, the newest kserve the proxy
#                   serves; its module tree also gives the CRDs, RBAC, ConfigMap, webhooks and
#                   Helm charts that scripts/node/kserve-up.sh installs
#   coredns         CoreDNS v1.15.0 (cluster DNS: pods reach Services by name)
#   crictl          cri-tools v1.34.0 (v1.35.0 is not served), to look inside containerd
#   kserve-src, gateway-api-src  links to the module trees the node installer reads
# Idempotent: a binary whose stamp matches its pinned version is kept. ~3-8 min each, cold.
set -euo pipefail

KSERVE_VERSION="${HOUSING_KSERVE_VERSION:-v0.20.0}"
COREDNS_VERSION="${HOUSING_COREDNS_VERSION:-v1.15.0}"
CRICTL_VERSION="${HOUSING_CRICTL_VERSION:-v1.34.0}"
. "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"

go_build kserve-manager "$KSERVE_VERSION" github.com/kserve/kserve ./cmd/manager
go_build coredns "$COREDNS_VERSION" github.com/coredns/coredns . \
  "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
go_build crictl "$CRICTL_VERSION" sigs.k8s.io/cri-tools ./cmd/crictl \
  "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"

# The kserve module tree (CRDs, config/, charts/) for the installer, at the same version, and the
# Gateway API CRDs at the version scripts/kind/lib.sh pins (KServe's Gateway API mode needs them).
src="$(module_dir "github.com/kserve/kserve@$KSERVE_VERSION")"
ln -sfn "$src" "$TOOLS_DIR/kserve-src"
GATEWAY_API_VERSION="$(sed -n 's/^GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-\(.*\)}"$/\1/p' \
  "$(dirname "${BASH_SOURCE[0]}")/../kind/lib.sh")"
[[ -n "$GATEWAY_API_VERSION" ]] || die "no GATEWAY_API_VERSION in scripts/kind/lib.sh"
src="$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
[[ -d "$src/config/crd/standard" ]] || die "no config/crd/standard in gateway-api@$GATEWAY_API_VERSION"
ln -sfn "$src" "$TOOLS_DIR/gateway-api-src"
"$TOOLS_DIR/coredns" -version | sed -n 1p
"$TOOLS_DIR/crictl" --version
echo "kserve-manager $KSERVE_VERSION: $TOOLS_DIR/kserve-manager (tree: $TOOLS_DIR/kserve-src)"
