#!/usr/bin/env bash
# Build Prometheus with Kubernetes service discovery into ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}/prometheus-k8s.
#
# Debian's prometheus (2.42, what the integration tier runs) is built without the kubernetes SD
# plugin ("field kubernetes_sd_configs not found"), and the node tier's rollout gates must find
# the predictor pods the way a user's Prometheus does: kubernetes_sd_configs against the API
# server plus the chart's prometheus.io/* pod annotations. So the node tier builds Prometheus
# v3.16 (Go module github.com/prometheus/prometheus v0.316.0) with only the kubernetes, file and
# http discovery plugins (the module's own build tags). Its web UI assets are left out; the API
# is all the tests use. Idempotent (a stamp per version); cold ~10-20 min on 2 cores.
set -euo pipefail

PROMETHEUS_MODULE_VERSION="${HOUSING_PROMETHEUS_MODULE_VERSION:-v0.316.0}"
TOOLS_DIR="${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}"
GO_PAR="${HOUSING_GO_BUILD_P:-2}"
OUT="$TOOLS_DIR/prometheus-k8s"
STAMP="$TOOLS_DIR/.prometheus-k8s-version"

die() { echo "prometheus.sh: $*" >&2; exit 1; }
log() { echo "prometheus.sh: $*" >&2; }
command -v go >/dev/null || die "the Go toolchain is needed (go not found)"
mkdir -p "$TOOLS_DIR"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOWORK=off

if [[ -x "$OUT" && -f "$STAMP" && "$(cat "$STAMP")" == "$PROMETHEUS_MODULE_VERSION" ]]; then
  log "prometheus-k8s $PROMETHEUS_MODULE_VERSION already built"
else
  log "building prometheus-k8s $PROMETHEUS_MODULE_VERSION (kubernetes, file, http SD only)…"
  t0=$SECONDS
  src="$(go mod download -json "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" \
    | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$src" ]] || die "go mod download github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION failed"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  (cd "$work" && GOMAXPROCS="$GO_PAR" nice -n 10 go build -mod=mod -p "$GO_PAR" \
     -tags "remove_all_sd,enable_kubernetes_sd" -ldflags "-s -w \
       -X github.com/prometheus/common/version.Version=$PROMETHEUS_MODULE_VERSION" \
     -o "$OUT.tmp" ./cmd/prometheus)
  mv -f "$OUT.tmp" "$OUT"
  echo "$PROMETHEUS_MODULE_VERSION" > "$STAMP"
  log "prometheus-k8s built in $((SECONDS - t0)) s"
fi
"$OUT" --version | sed -n 1p
