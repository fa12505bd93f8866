# shellcheck shell=bash disable=SC2034
# Shared by scripts/images/build.sh, import.sh and skaffold-build.sh (sourced, not run).
# Paths, the pinned versions and the podman wrapper live here so both scripts agree on them.

CACHE_DIR="${HOUSING_CACHE_DIR:-$HOME/.cache/housing}"
TOOLS_DIR="${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}"
IMAGES_DIR="$CACHE_DIR/images"            # the archives (<name>_<tag>_<inputs hash>.tar)
IMAGES_WORK="$IMAGES_DIR/work"            # containers.conf, rootfs tarballs, build contexts
IMAGES_INDEX="$IMAGES_DIR/images.txt"     # the last build.sh stdout: "<reference> <archive>"

# --- pinned versions -------------------------------------------------------------------------
DEBIAN_SUITE=bookworm
BASE_PACKAGES=(python3 python3-venv python-is-python3 ca-certificates netbase)
BASE_REF="localhost/housing-base:${DEBIAN_SUITE}-py311"
# Bump to refresh the base (Debian point releases / security updates) without other changes.
BASE_EPOCH="${HOUSING_BASE_EPOCH:-1}"
KSERVE_VERSION=v0.20.0
KSERVE_STORAGE_VERSION=0.20.0             # python/storage/pyproject.toml of kserve v0.20.0
HDFS_VERSION=2.6.0                        # upstream: hdfs~=2.6.0 (its Kerberos extras are left out)
PAUSE_VERSION=3.10
PAUSE_REF="localhost/pause:${PAUSE_VERSION}"
STORAGE_INITIALIZER_REF="localhost/kserve-storage-initializer:${KSERVE_VERSION}"
IMAGE_UID=10001                           # charts/housing values.yaml podSecurityContext.runAsUser

log() { echo "images: $*" >&2; }
die() { echo "images: error: $*" >&2; exit 1; }

sha256_stdin() { sha256sum | cut -c1-64; }

# podman with the settings this machine needs, without touching /etc: its own containers.conf.
podman_setup() {
  command -v podman >/dev/null || die "podman not found (apt-get install podman)"
  mkdir -p "$IMAGES_WORK"
  local conf="$IMAGES_WORK/containers.conf"
  local want
  want=$'# written by scripts/images (do not edit): no default ulimits (the sandbox refuses them)\n[containers]\ndefault_ulimits = []\n'
  if [[ ! -f "$conf" || "$(cat "$conf")"$'\n' != "$want" ]]; then
    printf '%s' "$want" > "$conf"
  fi
  export CONTAINERS_CONF="$conf"
  PODMAN_RUNTIME="${HOUSING_OCI_RUNTIME:-$(command -v runc || echo /usr/sbin/runc)}"
}
pm() { podman --runtime "$PODMAN_RUNTIME" "$@"; }

# The project's images: the Dockerfile's targets, and the reference each is built and imported as
# (docker.io/library/<name>:<chart appVersion>, what the chart's default values name).
PROJECT_TARGETS=(serving training)
project_image_name() { echo "housing-$1"; }

# The build-context paths a Dockerfile COPYs (not COPY --from): what its image is built from.
# With a TARGET, only the COPYs of that stage and of the stages it is built from (FROM <stage>,
# COPY --from=<stage>), so that a change only the other target copies leaves its inputs alone.
dockerfile_copy_paths() { # DOCKERFILE [TARGET]
  awk -v target="${2:-}" '
    $1 == "FROM" { stage = (tolower($3) == "as") ? $4 : "#" NR; from[stage] = $2; next }
    $1 == "COPY" && $2 ~ /^--from=/ { f = $2; sub(/^--from=/, "", f); from[stage] = from[stage] " " f; next }
    $1 == "COPY" && $2 !~ /^--/ {
      for (i = 2; i < NF; i++) { p = $i; sub(/\*$/, "", p); copies[stage] = copies[stage] " " p }
    }
    END {
      if (target == "") { for (s in copies) want[s] = 1 }
      else {
        if (!(target in from)) { print "dockerfile_copy_paths: no stage " target > "/dev/stderr"; exit 1 }
        todo[target] = 1
        while (length(todo)) {
          for (s in todo) break
          delete todo[s]; want[s] = 1
          n = split(from[s], parents, " ")
          for (i = 1; i <= n; i++) if ((parents[i] in from) && !(parents[i] in want)) todo[parents[i]] = 1
        }
      }
      for (s in want) { n = split(copies[s], ps, " "); for (i = 1; i <= n; i++) print ps[i] }
    }' "$1" | LC_ALL=C sort -u
}

# RUN steps that fetch from PyPI see the host's CA bundle (this network re-signs TLS with its own
# CA, which Debian's bundle in the images lacks). A build-time mount: the images keep Debian's.
# HOUSING_BUILD_CA_BUNDLE= (empty) turns it off. Used by build.sh and skaffold-build.sh alike, so
# their builds of the Dockerfile share podman's layer cache.
CA_BUNDLE="${HOUSING_BUILD_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
BUILD_NET=(--network host)
[[ -n "$CA_BUNDLE" ]] && BUILD_NET+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
