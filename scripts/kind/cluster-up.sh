#!/usr/bin/env bash
# Create the kind cluster and install, at pinned versions, what KServe needs:
#   cert-manager, Gateway API CRDs, traefik as the Gateway API implementation (the node tier's,
#   scripts/kind/gateway.sh), KServe CRDs and controller from KServe's Helm charts (Standard mode;
#   its own ingress creation off: the chart's gateway.enabled route is the one clients use).
# With --serverless (or HOUSING_KSERVE_MODE=Knative) it also installs Knative Serving with
# Kourier and makes Knative KServe's default mode. Idempotent: re-running upgrades in place.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="${HOUSING_KSERVE_MODE:-Standard}"
for arg in "$@"; do
  case "$arg" in
    --serverless|--knative) MODE=Knative ;;
    --standard) MODE=Standard ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

require_docker_and_kind
require_tools

if kind get clusters 2>/dev/null | grep -x "${CLUSTER_NAME}" >/dev/null; then
  log "kind cluster ${CLUSTER_NAME} exists"
else
  log "creating kind cluster ${CLUSTER_NAME}"
  kind create cluster --name "${CLUSTER_NAME}" --config "${KIND_CONFIG}" --wait 120s
fi

log "cert-manager ${CERT_MANAGER_VERSION}"
h upgrade --install cert-manager cert-manager --repo https://charts.jetstack.io \
  --version "${CERT_MANAGER_VERSION}" --namespace cert-manager --create-namespace \
  --set crds.enabled=true --wait --timeout 10m

log "Gateway API CRDs ${GATEWAY_API_VERSION} (standard channel)"
k apply --server-side --force-conflicts -f \
  "https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"

bash "$(dirname "${BASH_SOURCE[0]}")/gateway.sh"   # traefik: NodePorts 30080 (HTTP) / 30082 (gRPC)

if [[ "$MODE" == "Knative" ]]; then
  log "Knative Serving ${KNATIVE_VERSION} with Kourier (Serverless mode)"
  base="https://github.com/knative"
  k apply -f "${base}/serving/releases/download/${KNATIVE_VERSION}/serving-crds.yaml"
  k apply -f "${base}/serving/releases/download/${KNATIVE_VERSION}/serving-core.yaml"
  k apply -f "${base}/net-kourier/releases/download/${KNATIVE_VERSION}/kourier.yaml"
  k patch configmap/config-network -n knative-serving --type merge \
    -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
  k patch configmap/config-domain -n knative-serving --type merge -p '{"data":{"example.com":""}}'
  # The predictor pod runs with a restricted securityContext and an emptyDir for /tmp.
  k patch configmap/config-features -n knative-serving --type merge -p \
    '{"data":{"kubernetes.podspec-securitycontext":"enabled","kubernetes.podspec-emptydir":"enabled","secure-pod-defaults":"enabled"}}'
  k -n kourier-system patch service kourier --type merge -p \
    "{\"spec\":{\"type\":\"NodePort\",\"ports\":[{\"name\":\"http2\",\"port\":80,\"nodePort\":${KOURIER_HTTP_NODEPORT}}]}}"
  k -n knative-serving wait --for=condition=Available deployment --all --timeout=10m
fi

log "KServe ${KSERVE_VERSION}: CRDs and controller (default mode ${MODE})"
h upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
  --version "${KSERVE_VERSION}" --namespace kserve --create-namespace --wait
h upgrade --install kserve oci://ghcr.io/kserve/charts/kserve \
  --version "${KSERVE_VERSION}" --namespace kserve --create-namespace \
  -f "$(dirname "${BASH_SOURCE[0]}")/kserve-values.yaml" --set kserve.controller.deploymentMode="${MODE}" \
  --wait --timeout 10m

k create namespace "${NAMESPACE}" --dry-run=client -o yaml | k apply -f -
log "cluster ${CLUSTER_NAME} ready (context $(kctx)); next: skaffold run  (or: make e2e)"
log "Standard mode: install the chart with --set gateway.enabled=true; requests go to localhost:8080 (REST) and localhost:8082 (gRPC)"
