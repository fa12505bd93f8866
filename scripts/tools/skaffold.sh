#!/usr/bin/env bash
# Build the dev-loop tools from the Go module proxy into ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}:
#   skaffold     v2.16.1 (v2.17.0 is not served), ./cmd/skaffold
#   helm3/helm   helm v3.22.0 for skaffold only: skaffold's helm deployer runs
#                `helm version --client`, a flag helm 4 dropped ("unknown flag: --client"), so
#                the README's skaffold line and tests/cluster/test_skaffold.py put helm3/ first on PATH. Everything else
#                (tests, README commands) keeps helm 4 from scripts/tools/helm.sh.
# Idempotent: a binary whose stamp matches its pinned version is kept. Cold: ~5-15 min each on 2 cores.
set -euo pipefail

SKAFFOLD_VERSION="${HOUSING_SKAFFOLD_VERSION:-v2.16.1}"
HELM3_VERSION="${HOUSING_HELM3_VERSION:-v3.22.0}"
TOOLS_DIR="${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}"
GO_PAR="${HOUSING_GO_BUILD_P:-2}"

die() { echo "skaffold.sh: $*" >&2; exit 1; }
log() { echo "skaffold.sh: $*" >&2; }
command -v go >/dev/null || die "the Go toolchain is needed (go not found)"
mkdir -p "$TOOLS_DIR/helm3"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOWORK=off

module_dir() {  # module@version -> its read-only directory in the module cache
  go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

# build OUT VERSION MODULE PKG [LDFLAGS]: go build PKG from a writable copy of MODULE@VERSION
build() {
  local out="$1" version="$2" module="$3" pkg="$4" ldflags="${5:-}"
  local stamp; stamp="$(dirname "$TOOLS_DIR/$out")/.$(basename "$out")-version"
  if [[ -x "$TOOLS_DIR/$out" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
    log "$out $version already built"; return 0
  fi
  log "building $out $version from $module…"
  local t0=$SECONDS src work
  src="$(module_dir "$module@$version")"
  [[ -d "$src" ]] || die "go mod download $module@$version failed"
  work="$(mktemp -d)"
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  (cd "$work" && GOMAXPROCS="$GO_PAR" nice -n 10 go build -mod=mod -p "$GO_PAR" \
     -ldflags "-s -w $ldflags" -o "$TOOLS_DIR/$out.tmp" "$pkg")
  mv -f "$TOOLS_DIR/$out.tmp" "$TOOLS_DIR/$out"
  rm -rf "$work"
  echo "$version" > "$stamp"
  log "$out built in $((SECONDS - t0)) s"
}

build skaffold "$SKAFFOLD_VERSION" github.com/GoogleContainerTools/skaffold/v2 ./cmd/skaffold \
  "-X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$SKAFFOLD_VERSION"
# helm's own build sets the Kubernetes version `helm template` assumes offline (else v1.20.0,
# below the chart's kubeVersion); the stamp carries it so a change rebuilds
HELM3_KUBE_MINOR="${HOUSING_HELM3_KUBE_MINOR:-35}"
build helm3/helm "$HELM3_VERSION+k8s1.$HELM3_KUBE_MINOR" helm.sh/helm/v3 ./cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION \
   -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM3_KUBE_MINOR \
   -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM3_KUBE_MINOR"
"$TOOLS_DIR/skaffold" version
"$TOOLS_DIR/helm3/helm" version --client --short
