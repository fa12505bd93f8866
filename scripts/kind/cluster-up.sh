#!/usr/bin/env bash
# Create the kind cluster and install, at pinned versions, what KServe needs:
#   cert-manager, Gateway API CRDs, Envoy Gateway (+ GatewayClass/Gateway for KServe),
#   KServe CRDs and controller from KServe's Helm charts (Standard mode, Gateway API).
# With --serverless (or HOUSING_KSERVE_MODE=Knative) it also installs Knative Serving with
# Kourier and makes Knative KServe's default mode. Idempotent: re-running upgrades in place.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="${HOUSING_KSERVE_MODE:-Standard}"
for arg in "$@"; do
  case "$arg" in
    --serverless|--knative) MODE=Knative ;;
    --standard) MODE=Standard ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
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

log "Envoy Gateway ${ENVOY_GATEWAY_VERSION}"
# --skip-crds: the Gateway API CRDs come from the step above; Envoy Gateway's own CRDs are
# installed from its crds chart so both stay pinned.
h upgrade --install eg-crds oci://docker.io/envoyproxy/gateway-crds-helm \
  --version "${ENVOY_GATEWAY_VERSION}" --namespace envoy-gateway-system --create-namespace \
  --set crds.gatewayAPI.enabled=false --set crds.envoyGateway.enabled=true
h upgrade --install eg oci://docker.io/envoyproxy/gateway-helm --skip-crds \
  --version "${ENVOY_GATEWAY_VERSION}" --namespace envoy-gateway-system --create-namespace \
  --wait --timeout 10m

log "GatewayClass + Gateway kserve/kserve-ingress-gateway (NodePort ${GATEWAY_HTTP_NODEPORT} -> localhost:8080)"
k create namespace kserve --dry-run=client -o yaml | k apply -f -
k apply -f - <<YAML
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyProxy
metadata:
  name: kind-nodeport
  namespace: kserve
spec:
  provider:
    type: Kubernetes
    kubernetes:
      envoyService:
        type: NodePort
        patch:
          type: StrategicMerge
          value:
            spec:
              ports:
                - port: 80
                  nodePort: ${GATEWAY_HTTP_NODEPORT}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: envoy
spec:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: kserve-ingress-gateway
  namespace: kserve
spec:
  gatewayClassName: envoy
  infrastructure:
    parametersRef:
      group: gateway.envoyproxy.io
      kind: EnvoyProxy
      name: kind-nodeport
  listeners:
    - name: http
      protocol: HTTP
      port: 80
      allowedRoutes:
        namespaces:
          from: All
YAML

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
