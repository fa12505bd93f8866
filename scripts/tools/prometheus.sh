#!/usr/bin/env bash
# Install Debian's prometheus server (used by the rollout gates' integration tests).
# The package's own service is not started; tests run their own instance on a free port.
set -euo pipefail
if command -v prometheus >/dev/null; then
  prometheus --version 2>&1 | head -1
  exit 0
fi
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || true
# policy-rc.d keeps the package from starting its own daemon inside this machine.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -q --no-install-recommends prometheus >/dev/null
prometheus --version 2>&1 | head -1
