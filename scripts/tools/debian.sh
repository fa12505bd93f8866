#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks use: prometheus (rollout gates read it;
# promtool unit-tests the alert rules) and wrk (the REST load generator); with --with-chromium
# (make tools) also chromium and a font, which render the rollout report in a test — the demo
# does not need a browser. The prometheus package's own daemon is not started; tests run their
# own instance on a free port.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v wrk >/dev/null || need+=(wrk)
if [[ "${1:-}" == "--with-chromium" ]]; then
  command -v chromium >/dev/null || need+=(chromium)
  [[ -d /usr/share/fonts/truetype/dejavu ]] || need+=(fonts-dejavu-core)
fi
if (( ${#need[@]} )); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt/dpkg run (unattended-upgrades, a second terminal) holds the lock: wait for it,
  # bounded, instead of failing with "Could not get lock /var/lib/dpkg/lock-frontend".
  lock_timeout="${HOUSING_APT_LOCK_TIMEOUT:-300}"
  apt_opts=(-o "DPkg::Lock::Timeout=$lock_timeout")
  apt_failed() {
    echo "debian.sh: apt-get $1 failed; if another apt/dpkg process still held the lock after" \
      "${lock_timeout}s, wait for it to finish (or raise HOUSING_APT_LOCK_TIMEOUT) and run again" >&2
    exit 1
  }
  echo "debian.sh: installing ${need[*]} (waiting up to ${lock_timeout}s for the dpkg lock if it is held)" >&2
  $SUDO apt-get "${apt_opts[@]}" update -q >/dev/null || true
  # policy-rc.d keeps packages from starting their own daemons on this machine.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${need[@]}" >/dev/null || apt_failed install
fi
prometheus --version 2>&1 | sed -n 1p
wrk --version 2>&1 | sed -n 1p || true
[[ "${1:-}" == "--with-chromium" ]] && chromium --version 2>/dev/null | sed -n 1p || true
