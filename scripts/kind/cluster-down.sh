#!/usr/bin/env bash
# Delete the kind cluster (idempotent).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if ! command -v kind >/dev/null 2>&1; then
  die "kind is not installed; nothing to delete"
fi
if kind get clusters 2>/dev/null | grep -x "${CLUSTER_NAME}" >/dev/null; then
  log "deleting kind cluster ${CLUSTER_NAME}"
  kind delete cluster --name "${CLUSTER_NAME}"
else
  log "kind cluster ${CLUSTER_NAME} does not exist"
fi
