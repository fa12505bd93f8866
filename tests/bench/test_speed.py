"""bench.speed (``housing bench --mode speed``): every server answers every load; each row states its log lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.limit import BODY
from bench.speed import LOADS, SERVERS, markdown, measure

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_speed_harness(ames_xgb: Path, tmp_path: Path) -> None:
    result = measure(ames_xgb, tmp_path, seconds=1.0, rounds=1, connections=2, batch_rows=50)
    runs = result["res"].runs
    for label in SERVERS:
        for load in LOADS:
            run = runs[f"{label}.{load}"][0]
            assert run["requests"] > 0 and run["errors"] == 0, (label, load)
            assert run["cpu_ms_per_request"] > 0, (label, load)
    assert runs["ours.v2_batch"][0]["requests"] > 0
    assert result["logs"]["ours"] == result["logs"]["floor"] == "access log off, trace log off"
    assert result["logs"]["ours-logs"] == result["logs"]["floor-logs"] == "access log on, trace log on"
    assert result["summary"]["ours_over_limit_v1"] > 0 and result["summary"]["ours_over_floor_grpc"] > 0
    md = "\n".join(markdown(result, "housing bench --mode speed"))
    assert "| v1_1row | limit | no per-request lines |" in md and "ours ÷ limit, V1 one row" in md
    assert (tmp_path / "ours-logs.log").read_text().count("uvicorn.access") > 0  # logs on: the lines are there
    assert "uvicorn.access" not in (tmp_path / "ours.log").read_text()
    assert BODY.startswith(b"{")
