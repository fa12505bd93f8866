#!/usr/bin/env bash
# Install KServe v0.20.0 on the node the way scripts/kind/cluster-up.sh installs it on kind —
# its CRDs with `helm install` of its own kserve-crd chart, its resources rendered from its own
# kserve-resources chart with the values cluster-up passes — except where this machine differs:
#  - no cert-manager and no registry: the manager runs on the host (built from the module by
#    scripts/tools/kserve.sh) instead of as a Deployment, its webhooks are called by URL on
#    127.0.0.1 with a self-signed certificate, so the chart's Deployment, Services and
#    cert-manager objects are left out;
#  - the Gateway API CRDs are installed (KServe's Gateway API mode requires them) but KServe's
#    ingress creation is disabled: the chart's own HTTPRoute (gateway.enabled) is the route, served
#    by traefik (scripts/node/gateway-up.sh), and a rollout moves its weights;
#  - the storage-initializer image is the one scripts/images/build.sh builds at v0.20.0.
# Run by scripts/node/up.sh; idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TREE="$TOOLS_DIR/kserve-src"
[[ -d "$TREE/charts/kserve-crd" ]] || die "$TREE missing: bash scripts/tools/kserve.sh"
H=("$TOOLS_DIR/helm" --kubeconfig "$KUBECONFIG_ADMIN")
PKI="$NODE_STATE/pki"
VALUES="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/kind/kserve-values.yaml"  # shared with kind

log "Gateway API CRDs (standard channel; traefik serves them: gateway-up.sh)"
kubectl_admin apply --server-side --force-conflicts -f "$TOOLS_DIR/gateway-api-src/config/crd/standard/" >/dev/null

log "KServe CRDs (helm install $TREE/charts/kserve-crd)"
"${H[@]}" upgrade --install kserve-crd "$TREE/charts/kserve-crd" -n "$KSERVE_NAMESPACE" \
  --create-namespace --wait --timeout 2m >/dev/null

log "KServe resources (helm template $TREE/charts/kserve-resources, Standard mode)"
rendered="$NODE_STATE/kserve/resources.yaml"
"${H[@]}" template kserve "$TREE/charts/kserve-resources" -n "$KSERVE_NAMESPACE" \
  -f "$VALUES" --set kserve.controller.deploymentMode=Standard \
  --set kserve.certManager.enabled=false \
  --set kserve.storage.image=localhost/kserve-storage-initializer \
  --set kserve.storage.tag=v0.20.0 \
  > "$rendered.all"
# Keep what a host-run manager needs; point every webhook at it.
python3 - "$rendered.all" "$rendered" "$PKI/ca.crt" "$KSERVE_WEBHOOK_PORT" <<'PY'
import base64, sys, yaml
src, dst, ca, port = sys.argv[1:]
ca_bundle = base64.b64encode(open(ca, "rb").read()).decode()
skip = {"Deployment", "Service", "Certificate", "Issuer", "ClusterIssuer"}
kept = []
for doc in yaml.safe_load_all(open(src)):
    if not doc or doc.get("kind") in skip:
        continue
    if doc["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        doc.get("metadata", {}).get("annotations", {}).pop("cert-manager.io/inject-ca-from", None)
        for hook in doc.get("webhooks", []):
            path = hook["clientConfig"].get("service", {}).get("path", "/")
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
    kept.append(doc)
yaml.safe_dump_all(kept, open(dst, "w"), sort_keys=False)
print(f"{len(kept)} objects kept", file=sys.stderr)
PY
kubectl_admin apply --server-side --force-conflicts -f "$rendered" >/dev/null

# The serving certificate, where controller-runtime looks for it ($TMPDIR/k8s-webhook-server/…).
certs="$NODE_STATE/kserve/tmp/k8s-webhook-server/serving-certs"
mkdir -p "$certs"
cp "$PKI/kserve-webhook.crt" "$certs/tls.crt"
cp "$PKI/kserve-webhook.key" "$certs/tls.key"

TMPDIR="$NODE_STATE/kserve/tmp" POD_NAMESPACE="$KSERVE_NAMESPACE" \
  start kserve-manager "$TOOLS_DIR/kserve-manager" --kubeconfig "$NODE_STATE/kserve-manager.kubeconfig" \
  --metrics-addr 0 --health-probe-addr 127.0.0.1:18081 --webhook-port "$KSERVE_WEBHOOK_PORT"
wait_for kserve-manager 90 curl -fsS http://127.0.0.1:18081/readyz
wait_for kserve-manager 30 curl -ksS "https://127.0.0.1:$KSERVE_WEBHOOK_PORT/"
log "KServe $(basename "$(readlink -f "$TREE")") manager ready, webhooks on 127.0.0.1:$KSERVE_WEBHOOK_PORT"
