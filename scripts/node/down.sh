#!/usr/bin/env bash
# Stop the node started by scripts/node/up.sh and remove what it made: every process by its pid
# file (workloads first, the API server before etcd), pod sandboxes and their mounts, kube-proxy's
# and our iptables rules, the bridge, the state directory. Safe to run twice or after a failed up.
#   bash scripts/node/down.sh [--keep-state]     (--keep-state keeps logs for a post-mortem)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KEEP=0; [[ "${1:-}" == --keep-state ]] && KEEP=1

stop() {  # stop NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS
  local name="$1" secs="${2:-10}" p pid
  p="$(pidfile "$name")"; [[ -f "$p" ]] || return 0
  pid="$(cat "$p")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + secs))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$p"
}

[[ -d "$NODE_STATE" ]] || { log "nothing to stop ($NODE_STATE absent)"; }
stop metrics-server
stop traefik
stop kserve-manager
stop coredns
stop kube-proxy
stop kubelet 15
# The pods' containers and sandboxes (with their network namespaces) go while containerd runs.
if [[ -S "$CONTAINERD_SOCK" ]] && running containerd; then
  crictl=("$TOOLS_DIR/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 20s)
  "${crictl[@]}" stopp $("${crictl[@]}" pods -q 2>/dev/null) >/dev/null 2>&1 || true
  "${crictl[@]}" rmp -f $("${crictl[@]}" pods -q 2>/dev/null) >/dev/null 2>&1 || true
fi
stop containerd 15
stop registry
# containerd-shim processes are reparented away from containerd's session: end them by socket path.
pkill -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
stop kube-scheduler
stop kube-controller-manager
stop kube-apiserver 15
stop etcd

if [[ -x "$TOOLS_DIR/kube-proxy" ]]; then "$TOOLS_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
# what the kubelet itself adds (KUBE-FIREWALL, KUBE-KUBELET-CANARY, …) survives kube-proxy --cleanup
for table in filter nat mangle; do
  iptables -t "$table" -S 2>/dev/null | grep -E '^-A .*-j KUBE-' | sed 's/^-A/-D/' | while read -r rule; do
    eval "iptables -t $table $rule" 2>/dev/null || true
  done || true
  for chain in $(iptables -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\)$/\1/p'); do
    iptables -t "$table" -F "$chain" 2>/dev/null || true
  done
  for chain in $(iptables -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[A-Z0-9-]*\)$/\1/p'); do
    iptables -t "$table" -X "$chain" 2>/dev/null || true
  done
done
iptables -D FORWARD -j HOUSING-NODE 2>/dev/null || true
iptables -F HOUSING-NODE 2>/dev/null || true
iptables -X HOUSING-NODE 2>/dev/null || true
iptables -D OUTPUT -j HOUSING-NODE-OUT 2>/dev/null || true
iptables -F HOUSING-NODE-OUT 2>/dev/null || true
iptables -X HOUSING-NODE-OUT 2>/dev/null || true
ip link del "$NODE_BRIDGE" 2>/dev/null || true
# veths of pods whose sandboxes could not be removed
for v in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  [[ "$(ip -o link show "$v" 2>/dev/null)" == *"master $NODE_BRIDGE"* ]] && ip link del "$v" 2>/dev/null || true
done

if [[ -d "$NODE_STATE" ]]; then
  # unmount pod volumes, overlay snapshots and network namespaces below the state dir, deepest first
  findmnt -rn -o TARGET | grep -F "$NODE_STATE" | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  # empty cgroups kubelet made for pods (cgroup v1, cgroupfs driver)
  for c in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$c" ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  if (( KEEP )); then log "state kept in $NODE_STATE"; else rm -rf "$NODE_STATE"; fi
fi
log "node down"
