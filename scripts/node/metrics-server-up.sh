#!/usr/bin/env bash
# Serve the resource-metrics API (metrics.k8s.io, what an HPA reads) on the node: metrics-server
# v0.8.0 (scripts/tools/metrics-server.sh), registered the way its own manifests register it on
# kind — its RBAC (manifests/base/rbac.yaml), a Service kube-system/metrics-server and the
# APIService v1beta1.metrics.k8s.io — except that, like the KServe manager and traefik here, it
# runs on the host (no registry for an in-cluster image): the Service has no selector and an
# EndpointSlice with the host's address, and it authenticates with a client certificate
# (user housing-metrics-server) instead of a ServiceAccount.
#  - the kubelets' serving certificates are signed by the node's CA, so they are verified
#    (--kubelet-certificate-authority): no --kubelet-insecure-tls (kind needs it: its kubelets'
#    certificates are self-signed);
#  - the API server reaches it through the aggregation layer (front-proxy client certificate,
#    scripts/node/up.sh); the APIService's caBundle is the node's CA.
# Not started by up.sh: an HPA with metrics acts, and the other node tests keep KServe's HPAs idle.
#   bash scripts/node/metrics-server-up.sh          start (idempotent); waits for node metrics
#   bash scripts/node/metrics-server-up.sh --down   unregister the APIService first, then stop it
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
METRICS_SERVER_PORT=4443
PKI="$NODE_STATE/pki"
SRC="$TOOLS_DIR/metrics-server-src/manifests/base/rbac.yaml"
USER_NAME=housing-metrics-server

if [[ "${1:-}" == --down ]]; then
  # the APIService goes first: an unavailable aggregated API breaks discovery (kubectl, helm)
  kubectl_admin delete apiservice v1beta1.metrics.k8s.io --ignore-not-found --wait >/dev/null
  kubectl_admin -n kube-system delete service metrics-server --ignore-not-found >/dev/null
  kubectl_admin -n kube-system delete endpointslice metrics-server-host --ignore-not-found >/dev/null
  p="$(pidfile metrics-server)"
  if [[ -f "$p" ]]; then
    pid="$(cat "$p")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$p"
    log "stopped metrics-server (pid $pid)"
  fi
  exit 0
fi

[[ -x "$TOOLS_DIR/metrics-server" ]] || die "$TOOLS_DIR/metrics-server missing: bash scripts/tools/metrics-server.sh"
[[ -f "$SRC" ]] || die "$SRC missing: bash scripts/tools/metrics-server.sh"
[[ -s "$PKI/metrics-server.crt" && -s "$NODE_STATE/metrics-server.kubeconfig" ]] \
  || die "no metrics-server certificate in $PKI: the node was started by an older scripts/node/up.sh"

log "metrics-server RBAC ($SRC) for user $USER_NAME"
python3 - "$SRC" "$USER_NAME" <<'PY' | kubectl_admin apply -f - >/dev/null
import sys, yaml
src, user = sys.argv[1:]
out = []
for d in yaml.safe_load_all(open(src)):
    if not d or d["kind"] == "ServiceAccount":
        continue
    if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
        d["subjects"] = [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    out.append(d)
print(yaml.safe_dump_all(out))
PY

mkdir -p "$NODE_STATE/metrics-server"
start metrics-server "$TOOLS_DIR/metrics-server" \
  --kubeconfig "$NODE_STATE/metrics-server.kubeconfig" \
  --authentication-kubeconfig "$NODE_STATE/metrics-server.kubeconfig" \
  --authorization-kubeconfig "$NODE_STATE/metrics-server.kubeconfig" \
  --bind-address "$NODE_IP" --secure-port "$METRICS_SERVER_PORT" \
  --tls-cert-file "$PKI/metrics-server.crt" --tls-private-key-file "$PKI/metrics-server.key" \
  --cert-dir "$NODE_STATE/metrics-server" \
  --kubelet-preferred-address-types InternalIP --kubelet-use-node-status-port \
  --kubelet-certificate-authority "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/metrics-server.crt" --kubelet-client-key "$PKI/metrics-server.key" \
  --metric-resolution 15s

kubectl_admin apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
  labels: {k8s-app: metrics-server}
spec:
  ports:
  - {name: https, port: 443, protocol: TCP, targetPort: $METRICS_SERVER_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-host
  namespace: kube-system
  labels:
    kubernetes.io/service-name: metrics-server
    endpointslice.kubernetes.io/managed-by: housing-node
addressType: IPv4
ports:
- {name: https, port: $METRICS_SERVER_PORT, protocol: TCP}
endpoints:
- addresses: ["$NODE_IP"]
  conditions: {ready: true}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
  labels: {k8s-app: metrics-server}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {name: metrics-server, namespace: kube-system, port: 443}
  caBundle: $(base64 -w0 < "$PKI/ca.crt")
YAML
# Ready once the API answers with this node's usage (its first scrape: one resolution or two)
wait_for metrics-server 120 bash -c \
  "'$TOOLS_DIR/kubectl' --kubeconfig '$KUBECONFIG_ADMIN' get --raw /apis/metrics.k8s.io/v1beta1/nodes | grep -q '\"name\":\"$NODE_NAME\"'"
log "metrics-server $("$TOOLS_DIR/metrics-server" --version 2>&1 | head -1) serving metrics.k8s.io on $NODE_IP:$METRICS_SERVER_PORT"
