#!/usr/bin/env bash
# Run the node tier's Gateway API implementation: traefik v3.6 (scripts/tools/traefik.sh) with its
# Kubernetes Gateway provider, on the host like the KServe controller (no registry for an
# in-cluster image here; a kind user runs it as a Deployment, scripts/kind/cluster-up.sh).
#  - RBAC: the ClusterRole traefik documents for its Gateway provider (read from its module tree,
#    docs/…/kubernetes-gateway-rbac.yml), bound to the client certificate traefik runs with;
#  - its flags are scripts/gateway/traefik.sh's (kind runs the same): entry point `web` on
#    $NODE_IP:$GATEWAY_PORT serves the chart's HTTP listener (gateway.listenerPort), `grpc` on
#    $NODE_IP:$GATEWAY_GRPC_PORT its GRPCRoute listener (gateway.grpcListenerPort); traefik sends
#    each request straight to a ready pod of the backend Service (EndpointSlices), weighted round
#    robin across backendRefs;
#  - its Prometheus metrics (per service and code, latency histogram) and /ping on
#    127.0.0.1:$GATEWAY_METRICS_PORT.
# Run by scripts/node/up.sh when $TOOLS_DIR/traefik exists; idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -x "$TOOLS_DIR/traefik" ]] || die "$TOOLS_DIR/traefik missing: bash scripts/tools/traefik.sh"
RBAC="$TOOLS_DIR/traefik-src/docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml"
[[ -f "$RBAC" ]] || die "$RBAC missing: bash scripts/tools/traefik.sh"

log "traefik's Gateway provider RBAC (ClusterRole from $RBAC) for user housing-traefik"
"$(python_with_yaml)" "$(dirname "${BASH_SOURCE[0]}")/../gateway/manifests.py" rbac --rbac "$RBAC" --user housing-traefik \
  | kubectl_admin apply -f - >/dev/null

mkdir -p "$NODE_STATE/traefik"
mapfile -t args < <(traefik_args "$NODE_IP" "127.0.0.1:$GATEWAY_METRICS_PORT")
KUBECONFIG="$NODE_STATE/traefik.kubeconfig" start traefik "$TOOLS_DIR/traefik" "${args[@]}"
wait_for traefik 60 curl -fsS "http://127.0.0.1:$GATEWAY_METRICS_PORT/ping"
echo "$NODE_IP:$GATEWAY_PORT" > "$NODE_STATE/gateway.addr"
echo "$NODE_IP:$GATEWAY_GRPC_PORT" > "$NODE_STATE/gateway-grpc.addr"
echo "127.0.0.1:$GATEWAY_METRICS_PORT" > "$NODE_STATE/gateway-metrics.addr"
log "traefik $("$TOOLS_DIR/traefik" version | sed -n 's/^Version: *//p') serving Gateways on $NODE_IP:$GATEWAY_PORT (gRPC :$GATEWAY_GRPC_PORT; metrics 127.0.0.1:$GATEWAY_METRICS_PORT/metrics)"
