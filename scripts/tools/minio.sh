#!/usr/bin/env bash
# Build the MinIO server from source (MinIO publishes its community edition as source only)
# with the Go toolchain, at a pinned revision, into a cache directory outside the repo.
# Idempotent: an existing binary of the pinned revision is kept.
set -euo pipefail
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"  # master of 2026-02-12
TOOLS_DIR="${HOUSING_TOOLS_DIR:-$HOME/.cache/housing/bin}"
mkdir -p "$TOOLS_DIR"
stamp="$TOOLS_DIR/.minio-version"
if [[ -x "$TOOLS_DIR/minio" && -f "$stamp" && "$(cat "$stamp")" == "$MINIO_VERSION" ]]; then
  echo "minio $MINIO_VERSION already built at $TOOLS_DIR/minio"
  exit 0
fi
command -v go >/dev/null || { echo "error: the Go toolchain is needed to build MinIO (go not found)" >&2; exit 1; }
echo "building minio $MINIO_VERSION with $(go version) (a few minutes on 2 cores)…"
GOBIN="$TOOLS_DIR" CGO_ENABLED=0 GOFLAGS=-trimpath go install "github.com/minio/minio@$MINIO_VERSION"
echo "$MINIO_VERSION" > "$stamp"
"$TOOLS_DIR/minio" --version | sed -n 1p
