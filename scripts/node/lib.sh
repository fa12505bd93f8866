# Shared settings for scripts/node/*.sh: one single-node Kubernetes on this machine, its
# addresses and where everything lives. Sourced, not run.
set -euo pipefail

TOOLS_DIR="${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}"
NODE_STATE="${HOUSING_NODE_STATE:-${TMPDIR:-/tmp}/housing-node}"
NODE_NAME="${HOUSING_NODE_NAME:-housing-node}"
# Address ranges of this cluster only (RFC 1918 space nothing on these machines uses; podman
# takes 10.88/16, the host sits in 192.0.2/24): the node's bridge, pods, Services.
NODE_BRIDGE="${HOUSING_NODE_BRIDGE:-hsg0}"
NODE_IP="${HOUSING_NODE_IP:-10.213.0.1}"
POD_CIDR="${HOUSING_POD_CIDR:-10.213.0.0/24}"
SERVICE_CIDR="${HOUSING_SERVICE_CIDR:-10.214.0.0/24}"
KUBERNETES_SERVICE_IP="${HOUSING_KUBERNETES_SERVICE_IP:-10.214.0.1}"
CLUSTER_DOMAIN=cluster.local
APISERVER_PORT=6443
ETCD_PORT=23790          # client; peer is ETCD_PORT+10 — off the default 2379 so a host etcd can't clash
KSERVE_WEBHOOK_PORT=9443
KSERVE_NAMESPACE=kserve
. "$(dirname "${BASH_SOURCE[0]}")/../gateway/traefik.sh"  # traefik's flags and ports, shared with kind
GATEWAY_PORT=$TRAEFIK_WEB_PORT   # traefik's entry point `web` on $NODE_IP (chart: gateway.listenerPort)
GATEWAY_GRPC_PORT=$TRAEFIK_GRPC_PORT  # … and `grpc`, the GRPCRoute's listener (chart: gateway.grpcListenerPort)
GATEWAY_METRICS_PORT=18082  # traefik's /metrics and /ping on 127.0.0.1
# kube-controller-manager's --horizontal-pod-autoscaler-downscale-stabilization: how long an HPA
# keeps its highest recommendation before scaling in, for every HPA without its own
# behavior.scaleDown (KServe v0.20 writes none). Kubernetes' default (kind, managed clusters) is
# 5m0s; 30s here so the autoscale test sees a scale-in within its minutes (docs/capacity.md).
HPA_DOWNSCALE_STABILIZATION="${HOUSING_NODE_HPA_DOWNSCALE_STABILIZATION:-30s}"
MTU=1400                 # the host's
KUBECONFIG_ADMIN="$NODE_STATE/admin.kubeconfig"
CONTAINERD_SOCK="$NODE_STATE/containerd/containerd.sock"
# The loopback registry containerd pulls from (plain HTTP): where skaffold's node profile pushes
# (a kind user has `kind load` or a registry container for this). Started only when
# $TOOLS_DIR/registry exists (scripts/tools/registry.sh).
REGISTRY_ADDR="${HOUSING_NODE_REGISTRY:-127.0.0.1:5001}"

log() { echo "node: $*" >&2; }
die() { echo "node: error: $*" >&2; exit 1; }
pidfile() { echo "$NODE_STATE/pids/$1.pid"; }
running() { local p; p="$(pidfile "$1")"; [[ -f "$p" ]] && kill -0 "$(cat "$p")" 2>/dev/null; }

# start NAME CMD...: run CMD in its own session with its log in $NODE_STATE/logs/NAME.log
start() {
  local name="$1"; shift
  if running "$name"; then log "$name already running (pid $(cat "$(pidfile "$name")"))"; return 0; fi
  mkdir -p "$NODE_STATE/logs" "$NODE_STATE/pids"
  setsid "$@" >>"$NODE_STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$name")"
  log "started $name (pid $!)"
}

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds; on timeout show the log tail
wait_for() {
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then
      log "timed out after ${secs}s waiting for $what"
      [[ -f "$NODE_STATE/logs/$what.log" ]] && tail -n 30 "$NODE_STATE/logs/$what.log" >&2
      return 1
    fi
    sleep 0.5
  done
}

kubectl_admin() { "$TOOLS_DIR/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
