"""``housing --help``: the training image's entrypoint (its build runs exactly this)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_housing_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "housing", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for command in ("train", "serve", "rollout", "bundles"):
        assert f" {command} " in out.stdout, out.stdout
    assert "s3://bucket/prefix" in out.stdout  # help text is printed as written, not read as markup
