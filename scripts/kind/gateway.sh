#!/usr/bin/env bash
# The kind cluster's Gateway API implementation: the node tier's traefik (same version, same flags:
# scripts/gateway/traefik.sh), here in-cluster as a Deployment in namespace `traefik` with its
# RBAC, behind a NodePort Service kind publishes on localhost (kind-config.yaml):
#   localhost:8080 -> NodePort 30080 -> entry point web  (8000: the chart's HTTP listener)
#   localhost:8082 -> NodePort 30082 -> entry point grpc (8001: the chart's GRPCRoute listener)
# The GatewayClass and the Gateway are the chart's (gateway.enabled); KServe's own ingress creation
# is off (scripts/kind/kserve-values.yaml: disableIngressCreation), so the chart's route is the one
# clients use and rollouts move, as on the node tier. The RBAC is the ClusterRole traefik documents
# for its Gateway provider, read from its module tree (scripts/tools/traefik.sh) or, without
# it, from the release tag on GitHub.
#   bash scripts/kind/gateway.sh            apply to the kind cluster (cluster-up.sh runs it)
#   bash scripts/kind/gateway.sh --print    print the manifests only (no cluster needed)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "${REPO_ROOT}/scripts/gateway/traefik.sh"

RBAC_PATH="docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml"

rbac() {
  local local_copy="${TOOLS_DIR}/traefik-src/${RBAC_PATH}"
  local built=""
  [[ -x "${TOOLS_DIR}/traefik" ]] && built="$("${TOOLS_DIR}/traefik" version 2>/dev/null || true)"
  if [[ -f "$local_copy" && "$built" == *"Version:"*"${TRAEFIK_VERSION}"* ]]; then
    cat "$local_copy"
  else
    curl -fsSL "https://raw.githubusercontent.com/traefik/traefik/${TRAEFIK_VERSION}/${RBAC_PATH}"
  fi
}

manifests() {
  local rbac_file
  rbac_file="$(mktemp)"
  rbac > "$rbac_file"
  traefik_args "" ":${TRAEFIK_METRICS_PORT}" | "$(python_with_yaml)" "${REPO_ROOT}/scripts/gateway/manifests.py" kind \
    --rbac "$rbac_file" --version "${TRAEFIK_VERSION}" --namespace "${GATEWAY_NAMESPACE}" \
    --web-port "${TRAEFIK_WEB_PORT}" --grpc-port "${TRAEFIK_GRPC_PORT}" --metrics-port "${TRAEFIK_METRICS_PORT}" \
    --web-node-port "${GATEWAY_HTTP_NODEPORT}" --grpc-node-port "${GATEWAY_GRPC_NODEPORT}"
  rm -f "$rbac_file"
}

case "${1:-}" in
  --print) manifests ;;
  "")
    log "traefik ${TRAEFIK_VERSION} (Gateway API provider) in namespace ${GATEWAY_NAMESPACE}"
    manifests | k apply -f -
    k -n "${GATEWAY_NAMESPACE}" rollout status deployment/traefik --timeout=5m
    ;;
  *) die "unknown argument: $1 (--print prints the manifests)" ;;
esac
