# The Gateway API implementation both cluster paths run — traefik with its Kubernetes Gateway
# provider — configured once: the node tier runs it on the host (scripts/node/gateway-up.sh), kind
# as a Deployment (scripts/kind/gateway.sh). Sourced, not run.
#  - entry point `web`: the chart's HTTP listener (gateway.listenerPort, 8000);
#  - entry point `grpc`: the chart's GRPCRoute listener (gateway.grpcListenerPort, 8001), h2c;
#  - entry point `metrics`: Prometheus metrics per service and code (+ latency histogram) and /ping.
TRAEFIK_VERSION=v3.6.12       # scripts/tools/traefik.sh builds this version; kind pulls its image
TRAEFIK_WEB_PORT=8000
TRAEFIK_GRPC_PORT=8001
TRAEFIK_METRICS_PORT=9100   # in-cluster (kind); the node tier puts metrics on loopback

# traefik_args HOST METRICS_ADDR: traefik's flags, one per line, entry points web/grpc on HOST
# (empty: every address) and metrics on METRICS_ADDR (host:port).
traefik_args() {
  local host="$1" metrics="$2"
  printf '%s\n' \
    --global.checkNewVersion=false --global.sendAnonymousUsage=false \
    --log.level=INFO --log.noColor=true --accesslog=false \
    "--entryPoints.web.address=$host:$TRAEFIK_WEB_PORT" \
    "--entryPoints.grpc.address=$host:$TRAEFIK_GRPC_PORT" \
    "--entryPoints.metrics.address=$metrics" \
    --ping.entryPoint=metrics \
    --metrics.prometheus.entryPoint=metrics \
    --metrics.prometheus.addServicesLabels=true \
    --metrics.prometheus.buckets=0.001,0.0025,0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5 \
    --providers.kubernetesgateway=true \
    --providers.kubernetesgateway.throttleDuration=0s
}

# python_with_yaml: a Python that can import yaml (the repo's venv, else python3) for manifests.py.
python_with_yaml() {
  local repo; repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  if [[ -x "$repo/.venv/bin/python" ]]; then echo "$repo/.venv/bin/python"; else echo python3; fi
}
