"""The README's first command: the demo runs train → serve → V1/V2 → a canary step, end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import find_tool

pytestmark = pytest.mark.integration


def test_demo_runs_every_stage_on_the_embedded_default(tmp_path: Path) -> None:
    find_tool("prometheus", "scripts/tools/debian.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "HOUSING_"))}
    env["HOUSING_HOME"] = str(tmp_path / "home")
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, "-m", "housing", "demo", "--fast", "--dataset", "boston", "--interval", "4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "(aliases: challenger, champion)" in out and "(aliases: challenger)" in out
    assert "V1 POST /v1/models/housing:predict → 200" in out
    assert "V2 POST /v2/models/housing/infer → 200" in out
    assert ("promoted:" in out) or ("rolled_back:" in out), out[-3000:]
    # the canary left its event log behind
    assert list((tmp_path / "home" / "rollouts").glob("*.jsonl"))
