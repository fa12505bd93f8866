#!/usr/bin/env bash
# Import the image archives that scripts/images/build.sh wrote into containerd's k8s.io namespace
# (the one the CRI plugin, i.e. the kubelet, uses), keeping their exact references.
# Usage: scripts/images/import.sh <containerd socket> [LIST]
#   LIST: lines "<reference> <archive>" as build.sh prints them; default the index build.sh keeps
#   ($HOUSING_CACHE_DIR/images/images.txt), "-" for stdin, e.g. build.sh | import.sh SOCK -
# Every line is imported: the node tier's images are build.sh's (the serving and the training image
# of the project, storage-initializer, MinIO, pause; build.sh drops retired ones from its index).
# An image already present under its reference with the same image (config) digest is skipped.
# Prints "imported|skip <reference> <config digest>" per image on stdout; logs on stderr.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 <containerd socket> [LIST|-]"
sock="$1"; list="${2:-$IMAGES_INDEX}"
command -v ctr >/dev/null || die "ctr not found"
[[ -S "$sock" ]] || die "$sock is not a socket"
NS=k8s.io
c() { ctr -a "$sock" -n "$NS" "$@"; }

if [[ "$list" == - ]]; then lines="$(cat)"
else [[ -f "$list" ]] || die "no image list at $list (run scripts/images/build.sh first)"; lines="$(cat "$list")"; fi

# The image's config digest inside a docker-archive (its manifest.json names the config blob).
archive_config_digest() {
  tar -xOf "$1" manifest.json | python3 -c '
import json, sys
m = json.load(sys.stdin)
assert len(m) == 1, "one image per archive expected"
cfg = m[0]["Config"].removesuffix(".json").split("/")[-1]
print(cfg if cfg.startswith("sha256:") else "sha256:" + cfg)'
}
# The config digest of REF in containerd (empty when REF is absent or not a single manifest).
present_config_digest() {
  local digest
  digest="$(c images ls "name==$1" | awk 'NR > 1 {print $3; exit}')"
  [[ -n "$digest" ]] || return 0
  c content get "$digest" 2>/dev/null | python3 -c '
import json, sys
try:
    m = json.load(sys.stdin)
    print(m.get("config", {}).get("digest", ""))
except Exception:
    pass' || true
}

n=0
while read -r ref archive; do
  [[ -n "${ref:-}" ]] || continue
  [[ -f "$archive" ]] || die "archive $archive for $ref is missing (run scripts/images/build.sh)"
  want="$(archive_config_digest "$archive")"
  have="$(present_config_digest "$ref")"
  if [[ -n "$have" && "$have" == "$want" ]]; then
    log "$ref already in $NS ($want)"
    echo "skip $ref $want"; continue
  fi
  t0=$SECONDS
  log "importing $ref from $archive${have:+ (replacing $have)}"
  c images import --all-platforms "$archive" >&2
  have="$(present_config_digest "$ref")"
  [[ "$have" == "$want" ]] || die "after import, $ref in $NS has config ${have:-<none>}, expected $want"
  log "imported $ref in $((SECONDS - t0)) s"
  echo "imported $ref $want"; n=$((n + 1))
done <<<"$lines"
log "$n image(s) imported into $NS at $sock"
