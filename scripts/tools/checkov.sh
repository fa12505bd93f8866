#!/usr/bin/env bash
# Install checkov into its own virtualenv (its pins clash with the project's) and run it.
#
#   scripts/tools/checkov.sh --install-only     # create/refresh the venv, print the binary path
#   scripts/tools/checkov.sh [checkov args...]  # run checkov
#
# The venv lives in ${HOUSING_CACHE_DIR:-$HOME/.cache/housing}/checkov-venv; idempotent. Installed by
# the lock's uv from the repository, so pyproject's [tool.uv] exclude-newer pins its dependencies in
# time as requirements/lock.txt is (checkov's own pins clash with the project's: no shared lock).
set -euo pipefail

CHECKOV_VERSION="${HOUSING_CHECKOV_VERSION:-3.3.30}"
CACHE="${HOUSING_CACHE_DIR:-$HOME/.cache/housing}"
VENV="$CACHE/checkov-venv"
PY="${HOUSING_CHECKOV_PYTHON:-}"

if [[ -z "$PY" ]]; then
  for cand in python3.11 python3.12 python3; do
    if command -v "$cand" >/dev/null; then PY="$cand"; break; fi
  done
fi
[[ -n "$PY" ]] || { echo "checkov.sh: no python3 found" >&2; exit 1; }

installed_version() {
  [[ -x "$VENV/bin/checkov" ]] || return 1
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null
}

if [[ "$(installed_version || true)" != "$CHECKOV_VERSION" ]]; then
  echo "checkov.sh: installing checkov==$CHECKOV_VERSION into $VENV" >&2
  mkdir -p "$CACHE"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  UV="$(bash "$REPO/scripts/tools/uv.sh")"
  (cd "$REPO" && "$UV" pip install -q --python "$VENV/bin/python" "checkov==$CHECKOV_VERSION") >&2
fi

if [[ "${1:-}" == "--install-only" ]]; then
  echo "$VENV/bin/checkov"
  exit 0
fi
exec "$VENV/bin/checkov" "$@"
