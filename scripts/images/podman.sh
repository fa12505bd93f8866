#!/usr/bin/env bash
# podman with the settings scripts/images uses on this machine (its own containers.conf without
# default ulimits, the runc runtime), for tests and people: scripts/images/podman.sh run ...
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
podman_setup
exec podman --runtime "$PODMAN_RUNTIME" "$@"
