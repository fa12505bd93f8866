#!/usr/bin/env bash
# Build the dev-loop tools from the Go module proxy into ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}:
#   skaffold     v2.16.1 (v2.17.0 is not served), ./cmd/skaffold
#   helm3/helm   helm v3.22.0 for skaffold only: skaffold's helm deployer runs
#                `helm version --client`, a flag helm 4 dropped ("unknown flag: --client"), so
#                the README's skaffold line and tests/cluster/test_skaffold.py put helm3/ first on PATH. Everything else
#                (tests, README commands) keeps helm 4 from scripts/tools/helm.sh.
# Idempotent: a binary whose stamp matches its pinned version is kept. Cold: ~5-15 min each on 2 cores.
set -euo pipefail

SKAFFOLD_VERSION="${HOUSING_SKAFFOLD_VERSION:-v2.16.1}"
HELM3_VERSION="${HOUSING_HELM3_VERSION:-v3.22.0}"
. "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
mkdir -p "$TOOLS_DIR/helm3"

go_build skaffold "$SKAFFOLD_VERSION" github.com/GoogleContainerTools/skaffold/v2 ./cmd/skaffold \
  "-X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$SKAFFOLD_VERSION"
# helm's own build sets the Kubernetes version `helm template` assumes offline (else v1.20.0,
# below the chart's kubeVersion); the stamp carries it so a change rebuilds
HELM3_KUBE_MINOR="${HOUSING_HELM3_KUBE_MINOR:-35}"
go_build helm3/helm "$HELM3_VERSION+k8s1.$HELM3_KUBE_MINOR" helm.sh/helm/v3 ./cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION \
   -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM3_KUBE_MINOR \
   -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM3_KUBE_MINOR"
"$TOOLS_DIR/skaffold" version
"$TOOLS_DIR/helm3/helm" version --client --short
