"""The benchmark harness must keep working: a smoke run of every phase (no timing asserts)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.run import BenchConfig, run

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_smoke_run_writes_a_complete_report(tmp_path: Path) -> None:
    cfg = BenchConfig.smoke_config(tmp_path)
    summary = run(cfg)
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    for key in ("ours.v1_1row", "ours.v2_1row", "ours.grpc_1row", "ours.v2_batch", "floor.v1_1row", "mlserver.v2_1row"):
        assert data["runs"][key], key
        assert data["runs"][key][0]["requests"] > 0, key
        assert data["runs"][key][0]["errors"] == 0, key
    assert set(summary["ratios"]) >= {"ours_over_floor_v1", "ours_over_mlserver_v2", "batch_over_inprocess"}
    assert data["inprocess"]["single_row_us"] > 0
    assert data["inprocess"]["explain_single_row_us"] > 0
    assert "| v1_1row | ours |" in (tmp_path / "benchmarks.md").read_text()
