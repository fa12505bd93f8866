#!/usr/bin/env bash
# Bring up a real single-node Kubernetes on this machine, with the KServe controller:
#   etcd, kube-apiserver (RBAC + Node authorization, PodSecurity admission), kube-controller-
#   manager, kube-scheduler, containerd (runc, CNI bridge), kubelet, kube-proxy (iptables),
#   CoreDNS, and KServe v0.20.0 (CRDs and resources from its own Helm charts, the manager on
#   the host with its mutating/validating webhooks served under a self-signed certificate).
# Binaries come from scripts/tools/kube.sh and scripts/tools/kserve.sh (built once, cached),
# images from scripts/images/build.sh (imported into containerd here).
#
#   sudo bash scripts/node/up.sh          # state in ${TMPDIR:-/tmp}/housing-node
#   export KUBECONFIG=/tmp/housing-node/admin.kubeconfig
#   bash scripts/node/down.sh             # stops everything, removes the state and network
#
# Idempotent: running components are left alone. Needs root (containerd, kubelet, iptables).
# Everything listens on loopback or on this cluster's own bridge address (10.213.0.1).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
T0=$SECONDS

[[ $(id -u) -eq 0 ]] || die "needs root (containerd, kubelet and kube-proxy manage mounts, cgroups, iptables)"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy pause \
         kubectl helm kserve-manager coredns crictl; do
  [[ -x "$TOOLS_DIR/$b" ]] || die "$TOOLS_DIR/$b missing: run bash scripts/tools/kube.sh, scripts/tools/kserve.sh, scripts/tools/helm.sh"
done
for b in containerd runc iptables openssl; do command -v "$b" >/dev/null || die "$b missing: bash scripts/node/deps.sh"; done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/portmap ]] \
  || die "CNI plugins missing in /usr/lib/cni: bash scripts/node/deps.sh"

mkdir -p "$NODE_STATE"/{pki,logs,pids,etcd,containerd,kubelet,cni/net.d,cni/ipam,kserve/certs}
PKI="$NODE_STATE/pki"

# --- network: the node's bridge, forwarding, and a fence around the pods -----------------------
if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
  ip link add "$NODE_BRIDGE" type bridge
  ip link set "$NODE_BRIDGE" mtu "$MTU"
fi
ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
modprobe br_netfilter 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1
[[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] && sysctl -qw net.bridge.bridge-nf-call-iptables=1
# Pods talk to each other, to Services and to the node; nothing they send leaves the machine.
iptables -N HOUSING-NODE 2>/dev/null || iptables -F HOUSING-NODE
iptables -A HOUSING-NODE -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -j REJECT
iptables -C FORWARD -j HOUSING-NODE 2>/dev/null || iptables -I FORWARD 1 -j HOUSING-NODE
# A Service address kube-proxy has not (or no longer) rewritten — a Service just deleted, as a
# rolled-back canary's is — must be refused here as on a cluster. Without this the packet takes
# the machine's default route, and this sandbox's HTTP proxy answers it "404" with an empty body
# (seen on the node tier). kube-proxy's DNAT (nat OUTPUT) runs before this filter rule, so
# Services it knows are unaffected.
iptables -N HOUSING-NODE-OUT 2>/dev/null || iptables -F HOUSING-NODE-OUT
iptables -A HOUSING-NODE-OUT -d "$SERVICE_CIDR" -p tcp -j REJECT --reject-with tcp-reset
iptables -A HOUSING-NODE-OUT -d "$SERVICE_CIDR" -j REJECT
iptables -C OUTPUT -j HOUSING-NODE-OUT 2>/dev/null || iptables -I OUTPUT 1 -j HOUSING-NODE-OUT

# --- PKI: one CA; serving certs for the API server, kubelet, KServe's webhooks; client certs ----
cert() {  # cert NAME CN [O] [SANs]: a key and a certificate signed by the CA
  local name="$1" cn="$2" org="${3:-}" sans="${4:-}"
  [[ -s "$PKI/$name.crt" ]] && return 0
  local subj="/CN=$cn"; [[ -n "$org" ]] && subj="/O=$org$subj"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
  local ext="$PKI/$name.ext"
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n "$sans" ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$sans"
    else echo "extendedKeyUsage=clientAuth"; fi; } > "$ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}
if [[ ! -s "$PKI/ca.crt" ]]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=housing-node-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
cert apiserver kube-apiserver "" \
  "IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
cert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
cert kserve-webhook kserve-webhook-server "" \
  "IP:127.0.0.1,DNS:kserve-webhook-server-service.$KSERVE_NAMESPACE.svc"
cert admin housing-admin system:masters
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
cert kubelet "system:node:$NODE_NAME" system:nodes
cert controller-manager system:kube-controller-manager
cert scheduler system:kube-scheduler
cert kube-proxy system:kube-proxy
cert coredns system:coredns
cert kserve-manager system:serviceaccount:kserve:kserve-controller-manager
cert traefik housing-traefik
# the API server's client certificate towards aggregated APIs (metrics.k8s.io: metrics-server-up.sh)
cert front-proxy-client front-proxy-client
# metrics-server: serving (the APIService's Service name) and client (API server, kubelets) in one
cert metrics-server housing-metrics-server "" "IP:$NODE_IP,DNS:metrics-server.kube-system.svc"

kubeconfig() {  # kubeconfig NAME SERVER: $NODE_STATE/NAME.kubeconfig for the client cert NAME
  local name="$1" server="$2" out="$NODE_STATE/$1.kubeconfig"
  [[ "$name" == admin ]] && out="$KUBECONFIG_ADMIN"
  cat > "$out" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: housing-node
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 < "$PKI/$name.crt")
    client-key-data: $(base64 -w0 < "$PKI/$name.key")
contexts:
- name: housing-node
  context: {cluster: housing-node, user: $name}
current-context: housing-node
YAML
  chmod 600 "$out"
}
API="https://$NODE_IP:$APISERVER_PORT"
for n in admin kubelet controller-manager scheduler kube-proxy coredns kserve-manager traefik metrics-server; do kubeconfig "$n" "$API"; done

# --- containerd (own root, state, socket and CNI config: nothing shared with podman) ----------
cat > "$NODE_STATE/cni/net.d/10-housing.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "housing",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false,
     "hairpinMode": true, "mtu": $MTU,
     "ipam": {"type": "host-local", "dataDir": "$NODE_STATE/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
cat > "$NODE_STATE/containerd/config.toml" <<TOML
version = 2
root = "$NODE_STATE/containerd/root"
state = "$NODE_STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$NODE_STATE/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.10"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails in runc
  # ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true   # pod network namespaces live in our state dir
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_STATE/containerd/certs.d"
TOML
# The loopback registry speaks plain HTTP: say so to containerd for that host only.
mkdir -p "$NODE_STATE/containerd/certs.d/$REGISTRY_ADDR"
cat > "$NODE_STATE/containerd/certs.d/$REGISTRY_ADDR/hosts.toml" <<TOML
server = "http://$REGISTRY_ADDR"
[host."http://$REGISTRY_ADDR"]
  capabilities = ["pull", "resolve"]
TOML
start containerd containerd --config "$NODE_STATE/containerd/config.toml"
if [[ -x "$TOOLS_DIR/registry" ]]; then
  mkdir -p "$NODE_STATE/registry"
  cat > "$NODE_STATE/registry/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $NODE_STATE/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
YAML
  start registry "$TOOLS_DIR/registry" serve "$NODE_STATE/registry/config.yml"
  wait_for registry 30 bash -c "exec 3<>/dev/tcp/${REGISTRY_ADDR%:*}/${REGISTRY_ADDR##*:}"
  echo "$REGISTRY_ADDR" > "$NODE_STATE/registry.addr"
else
  log "no registry binary ($TOOLS_DIR/registry): skaffold's node profile cannot push (bash scripts/tools/registry.sh)"
fi
wait_for containerd 30 ctr -a "$CONTAINERD_SOCK" version

# Images (built by scripts/images/build.sh) go in while the control plane starts.
if [[ "${HOUSING_NODE_SKIP_IMAGES:-}" != 1 ]]; then
  ( bash "$REPO/scripts/images/import.sh" "$CONTAINERD_SOCK" > "$NODE_STATE/logs/images.log" 2>&1
    echo $? > "$NODE_STATE/images.rc" ) &
  IMPORT_PID=$!
fi

# --- etcd, kube-apiserver --------------------------------------------------------------------
start etcd "$TOOLS_DIR/etcd" --name "$NODE_NAME" --data-dir "$NODE_STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
  --initial-cluster "$NODE_NAME=http://127.0.0.1:$((ETCD_PORT + 10))" \
  --listen-metrics-urls "" --log-level warn --quota-backend-bytes 2147483648
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

start kube-apiserver "$TOOLS_DIR/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --authorization-mode Node,RBAC \
  --requestheader-client-ca-file "$PKI/ca.crt" --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
  --enable-admission-plugins NodeRestriction \
  --allow-privileged=true \
  --profiling=false --v 1
wait_for kube-apiserver 90 kubectl_admin get --raw /readyz

# --- controllers, scheduler --------------------------------------------------------------------
start kube-controller-manager "$TOOLS_DIR/kube-controller-manager" \
  --kubeconfig "$NODE_STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$NODE_STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$NODE_STATE/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --horizontal-pod-autoscaler-downscale-stabilization "$HPA_DOWNSCALE_STABILIZATION" \
  --profiling=false --v 1
start kube-scheduler "$TOOLS_DIR/kube-scheduler" \
  --kubeconfig "$NODE_STATE/scheduler.kubeconfig" \
  --authentication-kubeconfig "$NODE_STATE/scheduler.kubeconfig" \
  --authorization-kubeconfig "$NODE_STATE/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false --v 1

# CoreDNS reads Services and EndpointSlices; kube-proxy's user has its binding built in.
kubectl_admin apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
YAML

# --- kubelet, kube-proxy, CoreDNS ------------------------------------------------------------
cat > "$NODE_STATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
containerRuntimeEndpoint: "unix://$CONTAINERD_SOCK"
cgroupDriver: cgroupfs
failCgroupV1: false
clusterDNS: ["$NODE_IP"]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: "$NODE_STATE/kubelet/resolv.conf"
# local images are never pulled (no registry is reachable) and must never be collected
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 87600h
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
maxPods: 110
protectKernelDefaults: false
shutdownGracePeriod: 0s
YAML
echo "search $CLUSTER_DOMAIN" > "$NODE_STATE/kubelet/resolv.conf"
start kubelet "$TOOLS_DIR/kubelet" --config "$NODE_STATE/kubelet/config.yaml" \
  --kubeconfig "$NODE_STATE/kubelet.kubeconfig" --root-dir "$NODE_STATE/kubelet/root" \
  --cert-dir "$NODE_STATE/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
start kube-proxy "$TOOLS_DIR/kube-proxy" --kubeconfig "$NODE_STATE/kube-proxy.kubeconfig" \
  --hostname-override "$NODE_NAME" --proxy-mode iptables --cluster-cidr "$POD_CIDR" \
  --nodeport-addresses "$NODE_IP/32" --iptables-localhost-nodeports=false \
  --oom-score-adj 0 --conntrack-max-per-core 0 \
  --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 --v 1
cat > "$NODE_STATE/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    health 127.0.0.1:18080
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $NODE_STATE/coredns.kubeconfig housing-node
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
COREFILE
start coredns "$TOOLS_DIR/coredns" -conf "$NODE_STATE/Corefile"
wait_for kubelet 120 kubectl_admin wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
wait_for coredns 30 curl -fsS http://127.0.0.1:18080/health

# --- KServe: CRDs and resources from its own charts, the manager on the host -----------------
bash "$HERE/kserve-up.sh"

# --- the Gateway API implementation (traefik on the host), when built ----------------------------
if [[ -x "$TOOLS_DIR/traefik" ]]; then
  bash "$HERE/gateway-up.sh"
else
  log "no traefik ($TOOLS_DIR/traefik): no Gateway API implementation runs (bash scripts/tools/traefik.sh)"
fi

if [[ -n "${IMPORT_PID:-}" ]]; then
  wait "$IMPORT_PID" || true
  [[ "$(cat "$NODE_STATE/images.rc" 2>/dev/null)" == 0 ]] \
    || { tail -n 20 "$NODE_STATE/logs/images.log" >&2; die "importing images failed"; }
fi
cat > "$NODE_STATE/env" <<ENV
export KUBECONFIG=$KUBECONFIG_ADMIN
export HOUSING_NODE_STATE=$NODE_STATE
export CONTAINER_RUNTIME_ENDPOINT=unix://$CONTAINERD_SOCK
ENV
log "node $NODE_NAME Ready with KServe in $((SECONDS - T0)) s; source $NODE_STATE/env"
