#!/usr/bin/env bash
# Build a real etcd and the Kubernetes node binaries from source with the Go toolchain
# (GitHub/GCS release downloads and setup-envtest are not reachable here; the Go module proxy
# is), and fetch the KServe InferenceService CRD from the kserve Go module zip. Everything goes
# into ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, pause,
#   kserve-crds/<kserve version>/serving.kserve.io_inferenceservices.yaml
# One `go build` of all five shares the compile (cold ~15-25 min on 2 cores, cached after).
#
# k8s.io/kubernetes is published as a module whose go.mod replaces its staging modules
# (k8s.io/api, k8s.io/apiserver, …) with ./staging/src/…; those directories are nested modules
# and are not in the module zip, so we copy the module, point each replace at the published
# staging release (k8s.io/foo v0.<minor>.<patch>) and build ./cmd/kube-*.
# Heavy: ~10-20 min on 2 shared cores; builds run under nice with -p 2.
# Idempotent: pinned versions are recorded in stamp files; nothing is rebuilt when they match.
# Tests read tests/cluster/apiserver.py, which knows these paths.
set -euo pipefail

ETCD_VERSION="${HOUSING_ETCD_VERSION:-v3.6.16}"
KUBE_VERSION="${HOUSING_KUBE_APISERVER_VERSION:-v1.35.4}"
KSERVE_VERSION="${HOUSING_KSERVE_CRD_VERSION:-v0.20.0}"  # newest kserve the Go proxy serves
TOOLS_DIR="${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}"
GO_PAR="${HOUSING_GO_BUILD_P:-2}"

die() { echo "kube.sh: $*" >&2; exit 1; }
log() { echo "kube.sh: $*" >&2; }
command -v go >/dev/null || die "the Go toolchain is needed (go not found)"
mkdir -p "$TOOLS_DIR"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"

# --- etcd ---------------------------------------------------------------------------------
etcd_stamp="$TOOLS_DIR/.etcd-version"
if [[ -x "$TOOLS_DIR/etcd" && -f "$etcd_stamp" && "$(cat "$etcd_stamp")" == "$ETCD_VERSION" ]]; then
  log "etcd $ETCD_VERSION already built"
else
  log "building etcd $ETCD_VERSION ($(go version))…"
  t0=$SECONDS
  src="$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
         | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$src" ]] || die "go mod download go.etcd.io/etcd/server/v3@$ETCD_VERSION failed"
  work="$(mktemp -d)"
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  # the module's go.mod may replace sibling modules by path (../api, ../pkg …): use releases.
  sed -i -E 's#^(\s*)(go\.etcd\.io/etcd/[a-z0-9/]+) => \.\./[^ ]+$#\1\2 => \2 '"$ETCD_VERSION"'#' "$work/go.mod"
  (cd "$work" && nice -n 10 go build -mod=mod -p "$GO_PAR" -o "$TOOLS_DIR/etcd.tmp" \
     -ldflags "-s -w" .)
  mv -f "$TOOLS_DIR/etcd.tmp" "$TOOLS_DIR/etcd"
  rm -rf "$work"
  echo "$ETCD_VERSION" > "$etcd_stamp"
  log "etcd built in $((SECONDS - t0)) s"
fi

# --- Kubernetes binaries -------------------------------------------------------------------
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
kube_stamp="$TOOLS_DIR/.kube-version"
kube_built() {
  [[ -f "$kube_stamp" && "$(cat "$kube_stamp")" == "$KUBE_VERSION" && -x "$TOOLS_DIR/pause" ]] || return 1
  local b; for b in "${KUBE_BINS[@]}"; do [[ -x "$TOOLS_DIR/$b" ]] || return 1; done
}
if kube_built; then
  log "kubernetes $KUBE_VERSION binaries already built"
else
  log "building ${KUBE_BINS[*]} $KUBE_VERSION ($(go version)); expect 15-25 min on 2 cores…"
  t0=$SECONDS
  src="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
         | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$src" ]] || die "go mod download k8s.io/kubernetes@$KUBE_VERSION failed"
  staging="v0.${KUBE_VERSION#v1.}"  # v1.35.4 -> v0.35.4
  work="${TOOLS_DIR}/.kubernetes-src"
  rm -rf "$work" && mkdir -p "$work"
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  sed -i -E 's#^(\s*)(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+$#\1\2 => \2 '"$staging"'#' "$work/go.mod"
  ! grep -q '=> ./staging' "$work/go.mod" || die "unrewritten staging replaces in go.mod"
  major="${KUBE_VERSION#v}"; major="${major%%.*}"
  minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  out="$TOOLS_DIR/.kube-build"
  rm -rf "$out" && mkdir -p "$out"
  pkgs=(); for b in "${KUBE_BINS[@]}"; do pkgs+=("./cmd/$b"); done
  (cd "$work" && rm -f go.work go.work.sum && GOWORK=off GOMAXPROCS="$GO_PAR" nice -n 10 go build -mod=mod -p "$GO_PAR" \
     -o "$out/" -ldflags "$ldflags" "${pkgs[@]}")
  # the pod sandbox ("pause") binary from the same tree, static, for the locally built pause image.
  gcc -Os -static -DVERSION="$KUBE_VERSION" -o "$out/pause" "$work/build/pause/linux/pause.c" \
    || die "building pause failed (gcc -static)"
  for b in "${KUBE_BINS[@]}" pause; do mv -f "$out/$b" "$TOOLS_DIR/$b"; done
  rm -rf "$work" "$out"
  echo "$KUBE_VERSION" > "$kube_stamp"
  log "kubernetes binaries built in $((SECONDS - t0)) s"
fi

# --- KServe CRD ---------------------------------------------------------------------------
crd_dir="$TOOLS_DIR/kserve-crds/$KSERVE_VERSION"
crd="$crd_dir/serving.kserve.io_inferenceservices.yaml"
if [[ -s "$crd" ]]; then
  log "kserve $KSERVE_VERSION InferenceService CRD already at $crd"
else
  src="$(go mod download -json "github.com/kserve/kserve@$KSERVE_VERSION" \
         | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -f "$src/config/crd/full/serving.kserve.io_inferenceservices.yaml" ]] \
    || die "no config/crd/full/serving.kserve.io_inferenceservices.yaml in kserve@$KSERVE_VERSION"
  mkdir -p "$crd_dir"
  cp "$src/config/crd/full/serving.kserve.io_inferenceservices.yaml" "$crd.tmp"
  chmod u+w "$crd.tmp" && mv -f "$crd.tmp" "$crd"
fi
ln -sfn "$KSERVE_VERSION" "$TOOLS_DIR/kserve-crds/current"

"$TOOLS_DIR/etcd" --version | sed -n 1p
for b in "${KUBE_BINS[@]}"; do echo "$b: $("$TOOLS_DIR/$b" --version 2>&1 | sed -n 1p)"; done
echo "kserve CRD $KSERVE_VERSION: $crd"
