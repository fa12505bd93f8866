# Shared settings for scripts/kind/*.sh (sourced). Versions are pinned here, in one place.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER_NAME="${HOUSING_KIND_CLUSTER:-housing}"
KIND_CONFIG="${REPO_ROOT}/kind-config.yaml"
NAMESPACE="${HOUSING_NAMESPACE:-housing}"
RELEASE="${HOUSING_RELEASE:-housing}"

CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.1}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.4.0}"
KSERVE_VERSION="${KSERVE_VERSION:-v0.21.0}"
KNATIVE_VERSION="${KNATIVE_VERSION:-knative-v1.20.0}"

GATEWAY_HTTP_NODEPORT=30080   # traefik's entry point web (scripts/kind/gateway.sh) -> localhost:8080
GATEWAY_GRPC_NODEPORT=30082   # … and grpc -> localhost:8082
GATEWAY_NAMESPACE=traefik
KOURIER_HTTP_NODEPORT=30081

TOOLS_DIR="${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}"
export PATH="${TOOLS_DIR}:${PATH}"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# Exit 0 when docker (with a reachable daemon) and kind are usable; print why not otherwise.
docker_and_kind_missing_reason() {
  if ! command -v docker >/dev/null 2>&1; then
    echo "docker is not installed (https://docs.docker.com/engine/install/)"; return 0
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "docker is installed but its daemon is not reachable (is it running? can this user use it?)"; return 0
  fi
  if ! command -v kind >/dev/null 2>&1; then
    echo "kind is not installed (go install sigs.k8s.io/kind@latest, or https://kind.sigs.k8s.io)"; return 0
  fi
  return 1
}

require_docker_and_kind() {
  local reason
  if reason="$(docker_and_kind_missing_reason)"; then
    die "$reason"
  fi
}

require_tools() {
  if ! command -v helm >/dev/null 2>&1 || ! command -v kubectl >/dev/null 2>&1; then
    log "installing helm and kubectl into ${TOOLS_DIR}"
    bash "${REPO_ROOT}/scripts/tools/helm.sh" >/dev/null
  fi
  command -v helm >/dev/null 2>&1 || die "helm not found (scripts/tools/helm.sh failed)"
  command -v kubectl >/dev/null 2>&1 || die "kubectl not found (scripts/tools/helm.sh failed)"
}

kctx() { echo "kind-${CLUSTER_NAME}"; }
k() { kubectl --context "$(kctx)" "$@"; }
h() { helm --kube-context "$(kctx)" "$@"; }
