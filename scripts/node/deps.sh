#!/usr/bin/env bash
# Debian packages the single-node cluster tier needs: containerd, runc, the CNI plugins,
# iptables/conntrack for kube-proxy, podman + debootstrap to build images without a registry,
# and python3-yaml for the installers. Daemons are not started (policy-rc.d); the node scripts
# run their own instances with their own state. Idempotent.
set -euo pipefail
pkgs=(containerd runc containernetworking-plugins iptables conntrack podman debootstrap
      openssl python3-yaml socat ethtool iproute2 curl)
need=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "ok installed" >/dev/null || need+=("$p"); done
if (( ${#need[@]} )); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt_opts=(-o DPkg::Lock::Timeout=300)   # another apt run holds the lock: wait, don't fail
  $SUDO apt-get "${apt_opts[@]}" update -q >/dev/null || true
  echo "deps.sh: installing ${need[*]}" >&2
  $SUDO apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
containerd --version
