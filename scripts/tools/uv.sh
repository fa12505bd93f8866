#!/usr/bin/env bash
# Bootstrap uv, the installer of the locked environment, at the version requirements/lock.txt pins
# and with its hashes (pip --require-hashes), into ${HOUSING_CACHE_DIR:-~/.cache/housing}/uv/<version>.
# Prints the path of the uv binary on stdout. Idempotent: an existing one at that version is reused.
# Cold cost: one ~20 MB wheel, a few seconds.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${HOUSING_CACHE_DIR:-$HOME/.cache/housing}"
die() { echo "uv.sh: $*" >&2; exit 1; }

req="$(python3 "$REPO/scripts/lock/pick.py" uv < "$REPO/requirements/lock.txt")" || die "no uv in requirements/lock.txt"
version="${req%% *}"; version="${version#uv==}"
dest="$CACHE/uv/$version"
if [[ ! -x "$dest/bin/uv" ]]; then
  echo "uv.sh: installing uv $version into $dest" >&2
  rm -rf "$dest.tmp" && mkdir -p "$CACHE/uv"
  python3 -m venv "$dest.tmp" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  PIP_ROOT_USER_ACTION=ignore "$dest.tmp/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --require-hashes -r <(echo "$req") >&2 || die "pip could not install $req"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
fi
"$dest/bin/uv" --version >/dev/null || die "$dest/bin/uv does not run"
echo "$dest/bin/uv"
