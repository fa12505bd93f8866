#!/usr/bin/env bash
# Build the container images of the single-node test cluster with podman (no Docker engine and
# no registry here) and write each as an archive that `ctr -n k8s.io images import` (containerd
# 1.6) loads under its exact reference:
#   base                 localhost/housing-base:bookworm-py311   debootstrap minbase + Debian's python3,
#                                                                 our stand-in for python:3.11-slim
#   serving              docker.io/library/housing-serving:<chart appVersion>    the repo's Dockerfile,
#                                                                 --target serving, on that base
#   training             docker.io/library/housing-training:<chart appVersion>   --target training
#   storage-initializer  localhost/kserve-storage-initializer:v0.20.0   KServe's, rebuilt on that base
#   minio                localhost/housing-minio:<date>-<commit>  FROM scratch + $TOOLS_DIR/minio
#   pause                localhost/pause:3.10                    FROM scratch + $TOOLS_DIR/pause
#
# Usage: scripts/images/build.sh [--check] [IMAGE...]     (IMAGE: the names above; default all)
#   --check  run the smoke checks even for images whose archive is already up to date
# Prints "<reference> <archive>" per image on stdout (also kept in $CACHE/images/images.txt);
# logs go to stderr, ending with each image's ID (config digest) and size. Idempotent: an archive
# is named by a hash of its inputs (Containerfile text, the files copied in, pinned versions, the
# base's hash) and an image is rebuilt only when that hash has no archive yet. The minio and
# pause binaries come from scripts/tools/*.sh; this script waits for them
# (HOUSING_IMAGES_WAIT_SECONDS, default 1200) but never builds them.
# Env: HOUSING_CACHE_DIR, HOUSING_TOOLS_DIR, HOUSING_DEBIAN_MIRROR, HOUSING_BASE_EPOCH.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

WAIT_SECONDS="${HOUSING_IMAGES_WAIT_SECONDS:-1200}"
ALL_IMAGES=(base serving training storage-initializer minio pause)
CHECK=0
want=()
for a in "$@"; do
  case "$a" in
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    base|serving|training|storage-initializer|minio|pause) want+=("$a") ;;
    *) die "unknown argument: $a (images: ${ALL_IMAGES[*]})" ;;
  esac
done
((${#want[@]})) || want=("${ALL_IMAGES[@]}")
wanted() { local w; for w in "${want[@]}"; do [[ "$w" == "$1" ]] && return 0; done; return 1; }

[[ $EUID -eq 0 ]] || die "run as root (debootstrap and rootful podman)"
podman_setup
mkdir -p "$IMAGES_DIR" "$IMAGES_WORK/rootfs" "$IMAGES_WORK/ctx"
# one build.sh at a time (they share the build contexts, the archives and the index)
exec 9>"$IMAGES_WORK/build.lock"
flock -n 9 || { log "another build.sh holds $IMAGES_WORK/build.lock; waiting"; flock 9; }
TIMINGS="$IMAGES_WORK/timings.log"

# --- helpers ---------------------------------------------------------------------------------
# archive_path NAME REF KEY -> $IMAGES_DIR/<name>_<tag>_<key16>.tar
archive_path() { local tag="${2##*:}"; echo "$IMAGES_DIR/${1}_${tag}_${3:0:16}.tar"; }

# The inputs-hash label an image in podman's store carries (empty when absent).
image_key() { pm image inspect --format '{{index .Labels "io.housing.inputs"}}' "$1" 2>/dev/null || true; }

# Make sure podman's store holds REF as built from KEY (load the archive when it doesn't).
ensure_loaded() {
  local ref="$1" key="$2" archive="$3"
  [[ "$(image_key "$ref")" == "$key" ]] && return 0
  log "loading $ref from $archive"
  pm load -q -i "$archive" >&2
  [[ "$(image_key "$ref")" == "$key" ]] || die "$archive does not hold $ref with inputs $key"
}

# save REF into ARCHIVE (atomically) and drop older archives of the same image.
# docker-archive: its manifest.json RepoTags carry the full reference, which ctr import keeps, and
# import.sh reads the image (config) digest from it (see README.md here).
save_archive() {
  local name="$1" ref="$2" archive="$3" tmp="$3.tmp.$$"
  rm -f "$tmp"
  pm save -q --format docker-archive -o "$tmp" "$ref" >&2
  mv -f "$tmp" "$archive"
  local old
  for old in "$IMAGES_DIR/${name}_"*.tar; do
    [[ -e "$old" && "$old" != "$archive" ]] && { log "removing stale $old"; rm -f "$old"; }
  done
  return 0
}

# wait_for DESCRIPTION TEST-COMMAND...: poll every 30 s up to WAIT_SECONDS.
wait_for() {
  local what="$1"; shift
  local t0=$SECONDS
  until "$@"; do
    ((SECONDS - t0 < WAIT_SECONDS)) || die "gave up after ${WAIT_SECONDS}s waiting for $what"
    log "waiting for $what ($((SECONDS - t0))s so far; built by scripts/tools, not here)"
    flock -u 9; sleep 30; flock 9  # let other build.sh runs go on meanwhile
  done
}

timing() { # NAME EVENT SECONDS
  log "$1: $2 in $3 s"
  printf '%s %s %s %ss\n' "$(date -u +%FT%TZ)" "$1" "$2" "$3" >> "$TIMINGS"
}

declare -A RESULT_REF=() RESULT_ARCHIVE=() KEYS=()
result() { RESULT_REF[$1]="$2"; RESULT_ARCHIVE[$1]="$3"; }

# --- 1. base: debootstrap minbase bookworm + python3 ------------------------------------------
debian_mirror() {
  [[ -n "${HOUSING_DEBIAN_MIRROR:-}" ]] && { echo "$HOUSING_DEBIAN_MIRROR"; return; }
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    # the first deb822 stanza whose Suites has the plain suite
    uri="$(awk -v s="$DEBIAN_SUITE" '
      /^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==s) {print u; exit}}
      /^$/ {u=""}' "$f")"
    [[ -n "$uri" ]] && { echo "${uri%/}"; return; }
  done
  echo http://deb.debian.org/debian
}

base_key() {
  [[ -n "${KEYS[base]:-}" ]] && { echo "${KEYS[base]}"; return; }
  local mirror; mirror="$(debian_mirror)"
  # the recipe is the function below: hash its text too
  KEYS[base]="$( { echo "suite=$DEBIAN_SUITE mirror=$mirror epoch=$BASE_EPOCH"
                  echo "packages=${BASE_PACKAGES[*]}"; declare -f make_rootfs base_import_changes; } | sha256_stdin)"
  echo "${KEYS[base]}"
}

base_import_changes() {
  printf '%s\n' \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV LANG=C.UTF-8' \
    'ENV PYTHONIOENCODING=utf-8' \
    'CMD ["python3"]'
}

make_rootfs() { # OUT_TAR MIRROR
  local out="$1" mirror="$2" dir
  dir="$(mktemp -d "$IMAGES_WORK/rootfs/debootstrap.XXXXXX")"
  local root="$dir/rootfs"
  # shellcheck disable=SC2064
  trap "mountpoint -q '$root/proc' && umount '$root/proc'; rm -rf '$dir'" RETURN
  local include; include="$(IFS=,; echo "${BASE_PACKAGES[*]}")"
  log "debootstrap --variant=minbase --include=$include $DEBIAN_SUITE from $mirror"
  mkdir -p "$IMAGES_WORK/debootstrap-debs"   # debootstrap's download cache (.debs) across rebuilds
  debootstrap --variant=minbase --include="$include" --cache-dir="$IMAGES_WORK/debootstrap-debs" \
    "$DEBIAN_SUITE" "$root" "$mirror" > "$dir/debootstrap.log" 2>&1 \
    || { tail -30 "$dir/debootstrap.log" >&2; die "debootstrap failed"; }
  # apt sources like the official images: the release, its updates and security.
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # like debian:*-slim: keep docs, man pages and locales out of later installs too
  cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    > "$root/etc/apt/apt.conf.d/90housing-no-recommends"
  mount -t proc proc "$root/proc"
  log "apt-get upgrade from $DEBIAN_SUITE-updates/-security; Python headers"
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -euc '
      apt-get update -qq
      apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade
      # Python headers, as python:3.11-slim has them (so the project image can compile its C
      # extension once build-essential is in): only the include files of libpython3.11-dev,
      # at the installed python3.11 version, not the package with its static library.
      v="$(dpkg-query -W -f "\${Version}" libpython3.11-stdlib)"
      cd /tmp && apt-get download -qq "libpython3.11-dev=$v"
      dpkg-deb --fsys-tarfile /tmp/libpython3.11-dev_*.deb | tar -x -C / ./usr/include
      rm -f /tmp/*.deb
      apt-get clean
    ' > "$dir/apt.log" 2>&1 || { tail -30 "$dir/apt.log" >&2; die "updating the rootfs failed"; }
  umount "$root/proc"
  # minimise: caches, lists, logs, docs (except copyright), host files debootstrap copied in
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
         "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/log/*.log \
         "$root"/var/log/apt/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/tmp/*
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  find "$root/usr/lib/python3.11" -name __pycache__ -type d -prune -exec rm -rf {} +
  : > "$root/etc/resolv.conf"; : > "$root/etc/hostname"; : > "$root/etc/machine-id"
  [[ -x "$root/usr/bin/python3" && -e "$root/usr/bin/python" && -f "$root/usr/include/python3.11/Python.h" ]] \
    || die "rootfs lacks python3/python/Python.h"
  tar --numeric-owner --xattrs --acls -C "$root" -cf "$out.tmp" .
  mv -f "$out.tmp" "$out"
}

build_base() {
  local key ref="$BASE_REF" archive rootfs t0=$SECONDS
  key="$(base_key)"
  archive="$(archive_path housing-base "$ref" "$key")"
  if [[ -f "$archive" ]]; then
    ensure_loaded "$ref" "$key" "$archive"
    log "base: $ref up to date ($archive)"
    result base "$ref" "$archive"; return
  fi
  rootfs="$IMAGES_WORK/rootfs/housing-base-${key:0:16}.tar"
  if [[ ! -f "$rootfs" ]]; then
    make_rootfs "$rootfs" "$(debian_mirror)"
    timing base "debootstrap rootfs $(du -h "$rootfs" | cut -f1)" $((SECONDS - t0))
    local old; for old in "$IMAGES_WORK"/rootfs/housing-base-*.tar; do
      [[ "$old" != "$rootfs" ]] && rm -f "$old"; done
  fi
  local changes=() c
  while IFS= read -r c; do changes+=(--change "$c"); done < <(base_import_changes)
  pm import -q "${changes[@]}" --change "LABEL io.housing.inputs=$key" \
    --change "LABEL org.opencontainers.image.description=debootstrap minbase $DEBIAN_SUITE with Debian python3" \
    "$rootfs" "$ref" >&2
  save_archive housing-base "$ref" "$archive"
  timing base "build" $((SECONDS - t0))
  result base "$ref" "$archive"
}

# --- 2. the project images: the Dockerfile's serving and training targets -----------------------
chart_app_version() {
  sed -n -E 's/^appVersion:[[:space:]]*"?([^"[:space:]]+)"?.*/\1/p' "$REPO/charts/housing/Chart.yaml" | sed -n 1p
}

# What a target is built from, by content: git's blob hash of every tracked or untracked (not
# ignored) file under the inputs of that target's stages, taken from the work tree. For a clean
# tree this is the blob column of `git ls-files -s`; uncommitted edits count, committing them does
# not. The Dockerfile itself counts whole for both.
project_inputs() { # TARGET
  cd "$REPO"
  # the sources of the target's COPY lines (not --from=…), so a new package counts by itself
  local paths=(Dockerfile .dockerignore)
  mapfile -t -O 2 paths < <(dockerfile_copy_paths Dockerfile "$1")
  ((${#paths[@]} > 2)) || die "Dockerfile: no COPY for target $1"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    local files
    files="$(git ls-files -co --exclude-standard -- "${paths[@]}" | LC_ALL=C sort -u \
             | while IFS= read -r f; do [[ -f "$f" ]] && echo "$f"; done)"
    paste -d' ' <(git hash-object --stdin-paths <<<"$files") \
                <(while IFS= read -r f; do stat -c %a "$f"; done <<<"$files") <(echo "$files")
  else
    find "${paths[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '*.so' -print0 2>/dev/null \
      | LC_ALL=C sort -z | xargs -0 sha256sum
  fi
}

# The images run as the chart runs them: uid 10001, read-only root, only /tmp writable; no network.
CHECKED=(--rm --network none --user "$IMAGE_UID:$IMAGE_UID" --read-only --tmpfs /tmp)
NO_COMPILER='import shutil
cc = [c for c in ("gcc", "cc", "x86_64-linux-gnu-gcc", "clang") if shutil.which(c)]
assert not cc, f"compiler in the runtime image: {cc}"'

check_serving() {
  local ref="$1" out rc=0
  log "serving: check --help as uid $IMAGE_UID, read-only, no network"
  pm run "${CHECKED[@]}" "$ref" --help >/dev/null || die "serving: '$ref --help' failed"
  # the whole start-up import chain (kserve without the kubernetes client), up to the bundle check
  out="$(pm run "${CHECKED[@]}" "$ref" --model_dir /nonexistent 2>&1)" || rc=$?
  [[ $rc -eq 2 && "$out" == *"refusing to serve"*"bundle.json"* ]] \
    || die "serving: without a bundle it should refuse to serve (exit 2), got $rc: ${out: -600}"
  log "serving: check imports (predictor.core._fastpath, kserve_storage, boto3), no training libraries, no compiler"
  pm run "${CHECKED[@]}" --entrypoint python "$ref" -c "
import importlib.util, sys
import predictor.core._fastpath, boto3, kserve_storage
$NO_COMPILER
present = [m for m in ('training', 'rollout', 'sklearn', 'xgboost', 'mlflow', 'kubernetes', 'optuna',
                       'matplotlib', 'scipy') if importlib.util.find_spec(m)]
assert not present, f'not for the serving image: {present}'
print('imports ok,', sys.executable, sys.version.split()[0])" >&2 || die "serving: import check failed"
}

check_training() {
  local ref="$1"
  log "training: check the housing CLI as uid $IMAGE_UID, read-only, no network"
  pm run "${CHECKED[@]}" "$ref" --help >/dev/null || die "training: '$ref --help' failed"
  log "training: check imports (predictor.core._fastpath, training, rollout, mlflow, boto3), mlflow CLI, no compiler"
  pm run "${CHECKED[@]}" --entrypoint python "$ref" -c "
import shutil, sys
import predictor.core._fastpath, training, rollout, mlflow, boto3
$NO_COMPILER
assert shutil.which('mlflow'), 'no mlflow CLI (the dev-stack MLflow runs it)'
print('imports ok,', sys.executable, sys.version.split()[0])" >&2 || die "training: import check failed"
}

build_project() { # TARGET
  local target="$1" name ref key archive t0=$SECONDS
  name="$(project_image_name "$target")"
  ref="docker.io/library/$name:$(chart_app_version)"
  [[ "$ref" != *: ]] || die "no appVersion in charts/housing/Chart.yaml"
  key="$( { echo "base=$(base_key) ref=$ref target=$target"; project_inputs "$target"; } | sha256_stdin)"
  archive="$(archive_path "$name" "$ref" "$key")"
  if [[ -f "$archive" ]]; then
    ensure_loaded "$ref" "$key" "$archive"
    ((CHECK)) && "check_$target" "$ref"
    log "$target: $ref up to date ($archive)"
    result "$target" "$ref" "$archive"; return
  fi
  grep -q "^FROM \${BASE_IMAGE} AS runtime-base" "$REPO/Dockerfile" \
    || die "Dockerfile has no 'FROM \${BASE_IMAGE} AS runtime-base' (the base image is passed as --build-arg BASE_IMAGE)"
  log "$target: podman build --target $target $ref (FROM $BASE_REF; pip from PyPI)"
  pm build "${BUILD_NET[@]}" --pull=never --layers -f "$REPO/Dockerfile" --target "$target" \
    --build-arg "BASE_IMAGE=$BASE_REF" --label "io.housing.inputs=$key" -t "$ref" "$REPO" >&2
  timing "$target" build $((SECONDS - t0))
  "check_$target" "$ref"
  save_archive "$name" "$ref" "$archive"
  result "$target" "$ref" "$archive"
}

# --- 3. KServe's storage-initializer at v0.20.0 --------------------------------------------------
kserve_module_dir() {
  command -v go >/dev/null || die "go is needed to read the kserve module (go mod download)"
  local dir
  dir="$(cd / && GOFLAGS=-mod=mod go mod download -json "github.com/kserve/kserve@$KSERVE_VERSION" \
         | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir/python/storage" ]] || die "go mod download github.com/kserve/kserve@$KSERVE_VERSION gave no python/storage"
  echo "$dir"
}

# The build context: our Containerfile, kserve's entrypoint script, and pip constraints made from
# kserve's python/storage/uv.lock (the versions upstream's `uv sync` installs).
prepare_storage_initializer_ctx() { # CTX MODULE_DIR
  local ctx="$1" mod="$2"
  rm -rf "$ctx" && mkdir -p "$ctx/storage-initializer/scripts"
  cp "$HERE/storage-initializer.Containerfile" "$ctx/Containerfile"
  cp "$mod/python/storage-initializer/scripts/initializer-entrypoint" "$ctx/storage-initializer/scripts/"
  grep -q "^version = \"$KSERVE_STORAGE_VERSION\"" "$mod/python/storage/pyproject.toml" \
    || die "kserve $KSERVE_VERSION python/storage/pyproject.toml is not version $KSERVE_STORAGE_VERSION"
  python3 - "$mod/python/storage/uv.lock" > "$ctx/constraints.txt" <<'EOF'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
seen = {}
for p in lock["package"]:
    if "version" in p and p["name"] != "kserve-storage" and "editable" not in p.get("source", {}):
        seen.setdefault(p["name"], set()).add(p["version"])
print("# from kserve python/storage/uv.lock")
for name, versions in sorted(seen.items()):
    if len(versions) == 1:
        print(f"{name}=={versions.pop()}")
EOF
  chmod -R a+rX "$ctx"
}

check_storage_initializer() {
  local ref="$1" src
  src="$(mktemp -d)"
  mkdir -p "$src/model/sub" && echo '{"ok": true}' > "$src/model/bundle.json" && echo x > "$src/model/sub/f"
  chmod -R a+rX "$src"
  log "storage-initializer: check usage, then copy file:///src/model to /mnt/models (uid 1000, read-only)"
  local out rc=0
  out="$(pm run --rm --network none "$ref" 2>&1)" || rc=$?
  [[ $rc -eq 1 && "$out" == Usage:* ]] || { rm -rf "$src"; die "storage-initializer: no usage message (rc=$rc): $out"; }
  out="$(pm run --rm --network none --read-only --tmpfs /tmp --tmpfs /mnt/models:rw,mode=1777 \
          -v "$src:/src:ro" --entrypoint sh "$ref" -c \
          '/storage-initializer/scripts/initializer-entrypoint file:///src/model /mnt/models && cd /mnt/models && find -L . -type f | sort && cat bundle.json' 2>&1)" \
    || { rm -rf "$src"; die "storage-initializer: copy failed: $out"; }
  rm -rf "$src"
  if ! grep -q '^./sub/f$' <<<"$out" || ! grep -q '"ok": true' <<<"$out"; then
    die "storage-initializer: copied tree not as expected: $out"
  fi
  log "storage-initializer: copy ok"
}

build_storage_initializer() {
  local ref="$STORAGE_INITIALIZER_REF" mod ctx key archive t0=$SECONDS
  mod="$(kserve_module_dir)"
  ctx="$IMAGES_WORK/ctx/storage-initializer"
  prepare_storage_initializer_ctx "$ctx" "$mod"
  key="$( { echo "base=$(base_key) ref=$ref kserve=$KSERVE_VERSION storage=$KSERVE_STORAGE_VERSION hdfs=$HDFS_VERSION"
            (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } | sha256_stdin)"
  archive="$(archive_path kserve-storage-initializer "$ref" "$key")"
  if [[ -f "$archive" ]]; then
    ensure_loaded "$ref" "$key" "$archive"
    ((CHECK)) && check_storage_initializer "$ref"
    log "storage-initializer: $ref up to date ($archive)"
    result storage-initializer "$ref" "$archive"; return
  fi
  log "storage-initializer: podman build $ref (kserve-storage $KSERVE_STORAGE_VERSION from PyPI)"
  pm build "${BUILD_NET[@]}" --pull=never --layers -f "$ctx/Containerfile" \
    --build-arg "BASE_IMAGE=$BASE_REF" --build-arg "KSERVE_STORAGE_VERSION=$KSERVE_STORAGE_VERSION" \
    --build-arg "HDFS_VERSION=$HDFS_VERSION" --label "io.housing.inputs=$key" -t "$ref" "$ctx" >&2
  timing storage-initializer build $((SECONDS - t0))
  check_storage_initializer "$ref"
  save_archive kserve-storage-initializer "$ref" "$archive"
  result storage-initializer "$ref" "$archive"
}

# --- 4./5. FROM scratch images around a static binary from scripts/tools --------------------------
minio_version() {
  sed -n -E 's/^MINIO_VERSION="\$\{MINIO_VERSION:-([^}]+)\}".*/\1/p' "$REPO/scripts/tools/minio.sh" | sed -n 1p
}
# v0.0.0-20260212201848-7aac2a2c5b7c -> 20260212-7aac2a2c5b7c; RELEASE.2025-04-22T22-12-26Z -> as is
minio_tag() {
  local v="$1"
  if [[ "$v" =~ ^v0\.0\.0-([0-9]{8})[0-9]{6}-([0-9a-f]{12})$ ]]; then echo "${BASH_REMATCH[1]}-${BASH_REMATCH[2]}"
  else echo "${v#v}" | tr -c 'A-Za-z0-9_.\n-' '-'; fi
}

minio_ready() {
  [[ -x "$TOOLS_DIR/minio" && -f "$TOOLS_DIR/.minio-version" && "$(cat "$TOOLS_DIR/.minio-version")" == "$1" ]]
}
pause_ready() { [[ -x "$TOOLS_DIR/pause" && -s "$TOOLS_DIR/pause" ]]; }

# A context for a FROM scratch image: the binary, /etc/passwd+group naming the non-root user.
prepare_scratch_ctx() { # CTX CONTAINERFILE BINARY USERNAME
  local ctx="$1" cf="$2" bin="$3" user="$4"
  rm -rf "$ctx" && mkdir -p "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/data"
  chmod 0755 "$ctx/data"
  cp "$cf" "$ctx/Containerfile"
  cp "$bin" "$ctx/$(basename "$bin")"
  chmod 0755 "$ctx/$(basename "$bin")"
  printf 'root:x:0:0:root:/root:/sbin/nologin\n%s:x:%s:%s:%s:/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' \
    "$user" "$IMAGE_UID" "$IMAGE_UID" "$user" > "$ctx/rootfs/etc/passwd"
  printf 'root:x:0:\n%s:x:%s:\nnogroup:x:65534:\n' "$user" "$IMAGE_UID" > "$ctx/rootfs/etc/group"
  chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group"
  chmod 1777 "$ctx/rootfs/tmp"
}
scratch_key() { # CTX EXTRA
  { echo "$2"; (cd "$1" && find . -print0 | sort -z | xargs -0 stat -c '%n %a' && \
                find . -type f -print0 | sort -z | xargs -0 sha256sum); } | sha256_stdin
}

check_minio() {
  local ref="$1" name="housing-minio-check-$$" ok=0 data
  # /data on disk like the chart's emptyDir (MinIO refuses a tmpfs drive: no O_DIRECT)
  data="$(mktemp -d "$IMAGES_WORK/minio-data.XXXXXX")"; chmod 1777 "$data"
  log "minio: check the server starts as uid $IMAGE_UID with a read-only root"
  pm run -d --name "$name" --network none --user "$IMAGE_UID:$IMAGE_UID" --read-only \
    --cap-drop ALL --security-opt no-new-privileges --tmpfs /tmp:rw,mode=1777 -v "$data:/data" \
    -e HOME=/tmp -e MINIO_ROOT_USER=checkuser -e MINIO_ROOT_PASSWORD=checkpassword1 \
    "$ref" server /data --address :9000 >/dev/null
  for _ in $(seq 1 30); do
    [[ "$(pm inspect -f '{{.State.Running}}' "$name")" == true ]] || break
    if pm logs "$name" 2>&1 | grep -E '^(API|S3-API):' >/dev/null; then
      sleep 3  # still up a moment later, and formatted its drive
      [[ "$(pm inspect -f '{{.State.Running}}' "$name")" == true ]] && ok=1
      break
    fi
    sleep 1
  done
  local logs; logs="$(pm logs "$name" 2>&1 | tail -20)"
  pm rm -f "$name" >/dev/null 2>&1 || true
  [[ -d "$data/.minio.sys" ]] || ok=0
  rm -rf "$data"
  ((ok)) || die "minio: server did not start: $logs"
  log "minio: server started and formatted /data"
}

build_minio() {
  local version tag ref ctx key archive t0=$SECONDS
  version="$(minio_version)"; [[ -n "$version" ]] || die "no MINIO_VERSION in scripts/tools/minio.sh"
  tag="$(minio_tag "$version")"; ref="localhost/housing-minio:$tag"
  wait_for "$TOOLS_DIR/minio ($version)" minio_ready "$version"
  t0=$SECONDS  # the build, not the wait
  ctx="$IMAGES_WORK/ctx/minio"
  prepare_scratch_ctx "$ctx" "$HERE/minio.Containerfile" "$TOOLS_DIR/minio" minio
  key="$(scratch_key "$ctx" "ref=$ref version=$version uid=$IMAGE_UID")"
  archive="$(archive_path housing-minio "$ref" "$key")"
  if [[ -f "$archive" ]]; then
    ensure_loaded "$ref" "$key" "$archive"
    ((CHECK)) && check_minio "$ref"
    log "minio: $ref up to date ($archive)"
    result minio "$ref" "$archive"; return
  fi
  pm build --network none --pull=never --build-arg "UID=$IMAGE_UID" --label "io.housing.inputs=$key" \
    --label "io.housing.minio-version=$version" -f "$ctx/Containerfile" -t "$ref" "$ctx" >&2
  timing minio build $((SECONDS - t0))
  check_minio "$ref"
  save_archive housing-minio "$ref" "$archive"
  result minio "$ref" "$archive"
}

check_pause() {
  local ref="$1" name="housing-pause-check-$$"
  log "pause: check it runs and stops on SIGTERM"
  pm run -d --name "$name" --network none --read-only --cap-drop ALL "$ref" >/dev/null
  sleep 1
  local running; running="$(pm inspect -f '{{.State.Running}}' "$name")"
  pm stop -t 5 "$name" >/dev/null 2>&1 || true
  local code; code="$(pm inspect -f '{{.State.ExitCode}}' "$name" 2>/dev/null || echo '?')"
  pm rm -f "$name" >/dev/null 2>&1 || true
  [[ "$running" == true ]] || die "pause: did not keep running"
  log "pause: ran; exit code after SIGTERM: $code"
}

build_pause() {
  local ref="$PAUSE_REF" ctx key archive t0=$SECONDS
  wait_for "$TOOLS_DIR/pause" pause_ready
  t0=$SECONDS  # the build, not the wait
  ctx="$IMAGES_WORK/ctx/pause"
  prepare_scratch_ctx "$ctx" "$HERE/pause.Containerfile" "$TOOLS_DIR/pause" pause
  key="$(scratch_key "$ctx" "ref=$ref")"
  archive="$(archive_path pause "$ref" "$key")"
  if [[ -f "$archive" ]]; then
    ensure_loaded "$ref" "$key" "$archive"
    ((CHECK)) && check_pause "$ref"
    log "pause: $ref up to date ($archive)"
    result pause "$ref" "$archive"; return
  fi
  pm build --network none --pull=never --label "io.housing.inputs=$key" \
    -f "$ctx/Containerfile" -t "$ref" "$ctx" >&2
  timing pause build $((SECONDS - t0))
  check_pause "$ref"
  save_archive pause "$ref" "$archive"
  result pause "$ref" "$archive"
}

# --- main --------------------------------------------------------------------------------------
# emit NAME: print "<reference> <archive>" and record it in the index (one line per repository,
# lines whose archive is gone dropped) as soon as that image is ready.
# Lines of retired images are dropped too, so import.sh no longer loads them into the node.
emit() {
  local line="${RESULT_REF[$1]} ${RESULT_ARCHIVE[$1]}" repo="${RESULT_REF[$1]%:*}" r a
  echo "$line"
  {
    if [[ -f "$IMAGES_INDEX" ]]; then
      while read -r r a; do
        [[ -n "$r" && "$r" != "$repo:"* && -f "$a" ]] && ! retired "$r" && echo "$r $a"
      done < "$IMAGES_INDEX"
    fi
    echo "$line"
  } > "$IMAGES_INDEX.tmp"
  mv -f "$IMAGES_INDEX.tmp" "$IMAGES_INDEX"
}

# The one project image before the serving/training split (docker.io/library/housing:<version>):
# its archives go once its successors are built (podman's store is left alone).
RETIRED_REPOS=(docker.io/library/housing)
retired() { local r; for r in "${RETIRED_REPOS[@]}"; do [[ "$1" == "$r:"* ]] && return 0; done; return 1; }
drop_retired_archives() {
  local old
  for old in "$IMAGES_DIR"/housing_*.tar; do
    [[ -e "$old" ]] && { log "removing $old (the project image before the serving/training split)"; rm -f "$old"; }
  done
  return 0
}

# serving, training and storage-initializer are built FROM the base: it is always made ready first.
needs_base=0
for n in base "${PROJECT_TARGETS[@]}" storage-initializer; do wanted "$n" && needs_base=1; done
if ((needs_base)); then build_base; if wanted base; then emit base; fi; fi
for t in "${PROJECT_TARGETS[@]}"; do if wanted "$t"; then build_project "$t"; emit "$t"; fi; done
if wanted serving && wanted training; then drop_retired_archives; fi
if wanted storage-initializer; then build_storage_initializer; emit storage-initializer; fi
if wanted minio; then build_minio; emit minio; fi
if wanted pause; then build_pause; emit pause; fi

# what was built or found: image ID (the config digest import.sh compares) and size, per image
for n in "${ALL_IMAGES[@]}"; do
  [[ -n "${RESULT_REF[$n]:-}" ]] || continue
  pm image inspect --format "{{.Id}} {{.Size}}" "${RESULT_REF[$n]}" \
    | { read -r id size; log "$(printf '%-46s sha256:%s %4d MB (%d bytes)' "${RESULT_REF[$n]}" "$id" \
                                 $((size / 1000000)) "$size")"; }
done
