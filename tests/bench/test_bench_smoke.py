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
    keys = ["ours.v1_1row", "ours.v2_1row", "ours.grpc_1row", "ours.v2_batch", "floor.v1_1row", "mlserver.v2_1row"]
    keys += ["limit.v1_1row", "limit.v2_1row", "limit.grpc_1row"]  # the bare stack (bench.limit)
    keys.append("mlflow.invocations_1row")
    peers = data["peers"]
    runtimes = [r for r in ("xgbserver", "sklearnserver") if "skipped" not in peers[r]]
    for runtime in runtimes:  # skipped only when their venv cannot be built here, and then said why
        keys += [f"{runtime}.v1_1row", f"{runtime}.v2_1row", f"{peers[runtime]['compared_with']}.v1_1row"]
    for key in keys:
        assert data["runs"][key], key
        assert data["runs"][key][0]["requests"] > 0, key
        assert data["runs"][key][0]["errors"] == 0, key
    assert set(summary["ratios"]) >= {"ours_over_floor_v1", "ours_over_mlserver_v2", "batch_over_inprocess"}
    assert summary["ratios"]["workers2_over_workers1_v1"] > 0  # ours with --workers 2 answered in the same rounds
    assert data["runs"]["ours-workers2.v1_1row"][0]["errors"] == 0
    assert set(summary["ratios"]) >= {"ours_over_mlflow", *(f"ours_over_{r}_v1" for r in runtimes)}
    assert data["runs"]["ours.v1_1row"][0]["cpu_ms_per_request"] > 0
    assert data["inprocess"]["single_row_us"] > 0
    assert data["inprocess"]["explain_single_row_us"] > 0
    md = (tmp_path / "benchmarks.md").read_text()
    assert "| v1_1row | ours | access log off, trace log off |" in md and "MLflow scoring server, one row" in md
    assert "| v1_1row | limit | no per-request lines |" in md and "ours ÷ limit (bare uvicorn ASGI app)" in md
    for runtime in runtimes:
        assert f"| v1_1row | {runtime} |" in md and f"÷ KServe {runtime}, V1 one row" in md
    for runtime in {"xgbserver", "sklearnserver"} - set(runtimes):
        assert f"{runtime} skipped: {peers[runtime]['skipped']}" in md
