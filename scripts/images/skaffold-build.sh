#!/usr/bin/env bash
# skaffold's custom builder in the `node` profile of skaffold.yaml, once per artifact: a target of
# the repo's Dockerfile (serving or training) built by the podman CLI with the settings of build.sh
# (its base image, host network, the host's CA bundle for PyPI), so the two share podman's layer
# cache and a source change rebuilds only the layers after it; then pushed to the node's loopback
# registry when skaffold asks for a push.
# Usage (skaffold.yaml): skaffold-build.sh TARGET          build $IMAGE from --target TARGET
#                        skaffold-build.sh --deps TARGET   the paths TARGET is built from
# skaffold sets IMAGE (the reference to build), PUSH_IMAGE and BUILD_CONTEXT; --deps prints the
# paths the target is built from (its stages' COPYs) as the JSON list skaffold watches.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

usage="usage: $0 [--deps] TARGET   (TARGET: ${PROJECT_TARGETS[*]})"
deps=0
[[ "${1:-}" == --deps ]] && { deps=1; shift; }
[[ $# -eq 1 ]] || die "$usage"
target="$1"
[[ " ${PROJECT_TARGETS[*]} " == *" $target "* ]] || die "$usage"
CONTEXT="${BUILD_CONTEXT:-$(cd "$HERE/../.." && pwd)}"
if ((deps)); then  # what skaffold watches and hashes into the tag: the COPYed paths
  cd "$CONTEXT"
  { echo Dockerfile; echo .dockerignore; dockerfile_copy_paths Dockerfile "$target"; } \
    | while IFS= read -r p; do  # files, not directories: skaffold watches a file's mtime
        [[ -e "$p" ]] && find "$p" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '*.so'
      done | LC_ALL=C sort -u \
    | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read().split()))'
  exit 0
fi
: "${IMAGE:?run by skaffold (custom builder): IMAGE names the image to build}"
podman_setup
pm image exists "$BASE_REF" || die "$BASE_REF missing: bash scripts/images/build.sh base"
log "podman build --target $target $IMAGE (FROM $BASE_REF)"
pm build "${BUILD_NET[@]}" --pull=never --layers -f "$CONTEXT/Dockerfile" --target "$target" \
  --build-arg "BASE_IMAGE=$BASE_REF" -t "$IMAGE" "$CONTEXT"
if [[ "${PUSH_IMAGE:-false}" == true ]]; then
  tls=()
  case "$IMAGE" in  # plain HTTP only for a registry on this machine (scripts/node/up.sh starts one)
    127.0.0.1:*/* | localhost:*/*) tls=(--tls-verify=false) ;;
  esac
  pm push "${tls[@]}" "$IMAGE"
fi
