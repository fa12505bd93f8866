"""scripts/tools/debian.sh against a fake apt-get: it waits for the dpkg lock, bounded, and says so."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tools" / "debian.sh"
FAKE_APT = """#!/bin/sh
echo "$@" >> "$APT_LOG"
case "$*" in *" install "*)
  [ -n "$APT_FAIL" ] && { echo "E: Could not get lock /var/lib/dpkg/lock-frontend" >&2; exit 100; } ;;
esac
exit 0
"""


def _run(tmp_path: Path, fail: bool, timeout: str | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    if os.geteuid() != 0 or not Path("/usr/sbin/policy-rc.d").exists():
        pytest.skip("needs root and an existing policy-rc.d (the script would otherwise write one)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("id", "sed", "tee", "chmod", "rm"):  # no prometheus, no wrk: the script must install them
        shutil.copy(shutil.which(tool) or f"/usr/bin/{tool}", bin_dir / tool)
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(0o755)
    log = tmp_path / "apt.log"
    env = {"PATH": str(bin_dir), "APT_LOG": str(log), "APT_FAIL": "1" if fail else ""}
    if timeout:
        env["HOUSING_APT_LOCK_TIMEOUT"] = timeout
    result = subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return result, log.read_text().splitlines() if log.exists() else []


def test_every_apt_call_waits_for_the_lock(tmp_path):
    result, calls = _run(tmp_path, fail=False, timeout="42")
    assert len(calls) == 2, calls
    for call in calls:
        assert "DPkg::Lock::Timeout=42" in call, call
    assert calls[0].endswith("update -q")
    assert "install" in calls[1] and "prometheus" in calls[1] and "wrk" in calls[1]
    assert "waiting up to 42s for the dpkg lock" in result.stderr


def test_lock_still_held_fails_with_a_message(tmp_path):
    result, calls = _run(tmp_path, fail=True)
    assert result.returncode == 1
    assert "DPkg::Lock::Timeout=300" in calls[-1]
    assert "apt-get install failed" in result.stderr and "HOUSING_APT_LOCK_TIMEOUT" in result.stderr
