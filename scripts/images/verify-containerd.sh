#!/usr/bin/env bash
# Check that the archives build.sh wrote import into containerd under their exact references:
# starts a throwaway containerd (own root/state/socket in a temp dir, CRI plugin off), runs
# scripts/images/import.sh against it twice (the second run must skip everything), lists the
# images of namespace k8s.io, then stops that containerd by pid and removes its dirs.
# Usage: scripts/images/verify-containerd.sh [LIST]   (LIST: "<ref> <archive>" lines; default
#        the index build.sh keeps, $CACHE/images/images.txt)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

list="${1:-$IMAGES_INDEX}"
[[ -f "$list" ]] || die "no image list at $list (run scripts/images/build.sh first)"
command -v containerd >/dev/null && command -v ctr >/dev/null || die "containerd and ctr are needed"
[[ $EUID -eq 0 ]] || die "run as root (containerd)"

tmp="$(mktemp -d /tmp/housing-ctrd.XXXXXX)"
sock="$tmp/containerd.sock"
cat > "$tmp/config.toml" <<EOF
version = 2
root = "$tmp/root"
state = "$tmp/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"; for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
  fi
  # the snapshotter may leave mounts behind if containerd died hard
  { grep -o " $tmp/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
containerd --config "$tmp/config.toml" > "$tmp/containerd.log" 2>&1 &
pid=$!
for _ in $(seq 1 50); do [[ -S "$sock" ]] && ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.2; done
ctr -a "$sock" version >/dev/null 2>&1 || { cat "$tmp/containerd.log" >&2; die "throwaway containerd did not start"; }
log "throwaway containerd pid $pid at $sock"

t0=$SECONDS
"$HERE/import.sh" "$sock" "$list" >&2
log "first import: $((SECONDS - t0)) s"
t0=$SECONDS
second="$("$HERE/import.sh" "$sock" "$list" 2>&1)"
echo "$second" >&2
log "second import: $((SECONDS - t0)) s"

have="$(ctr -a "$sock" -n k8s.io images ls -q)"
echo "$have" | sed 's/^/images: k8s.io has: /' >&2
fail=0
while read -r ref archive; do
  [[ -n "$ref" ]] || continue
  if grep -qxF "$ref" <<<"$have"; then echo "ok $ref"
  else echo "MISSING $ref ($archive)"; fail=1; fi
  grep -q "skip $ref " <<<"$second" || { echo "NOT SKIPPED on re-import: $ref"; fail=1; }
done < "$list"
exit "$fail"
