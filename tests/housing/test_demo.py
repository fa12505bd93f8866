"""The README's first command: the demo runs train → serve → V1/V2 → a canary step, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from common.config import ALIAS_CHAMPION, DEFAULT_MODEL_NAME
from testkit.servers import find_tool

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
    # the canary left its event log behind, and the printed outcome, the log and the registry agree
    logs = list((tmp_path / "home" / "rollouts").glob("*.jsonl"))
    assert len(logs) == 1
    events = [json.loads(line) for line in logs[0].read_text().splitlines()]
    first, last = events[0], events[-1]
    assert first["event"] == "quality_gate" and first["same_rows"] is True  # both versions on the same rows
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    champion = str(client.get_model_version_by_alias(DEFAULT_MODEL_NAME, ALIAS_CHAMPION).version)
    challenger = client.get_model_version(DEFAULT_MODEL_NAME, "2")
    if first["decision"] == "refused":  # the challenger scored worse offline: nothing was deployed
        assert "refused before the canary" in out and len(events) == 1
        assert champion == "1" and challenger.tags["quality_gate"] == "refused"
    elif "promoted:" in out:
        assert last["event"] == "promote", last
        assert champion == "2" and challenger.tags["rollout_status"] == "promoted"
    else:
        assert "rolled_back:" in out, out[-3000:]
        assert last["event"] == "rollback", last
        assert champion == "1" and challenger.tags["rollout_status"] == "rejected"
