"""``housing bench --mode payload`` runs end to end (seconds-long): both predictors answer, every request
answered with the log on is written, and the section has its table. Timings are printed, not asserted."""

from __future__ import annotations

import shutil

import pytest

from bench.payload_cost import PROTOCOLS, markdown, measure


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")
def test_payload_cost_harness(tmp_path, ames_xgb):
    res = measure(ames_xgb, tmp_path, seconds=1.0, rounds=1, connections=2)
    assert all(res.rps[p][c][0] > 0 for p in PROTOCOLS for c in ("off", "on"))
    assert res.rows_dropped == 0 and res.rows_written >= res.requests_on > 0
    lines = markdown(res)
    assert any(line.startswith("| V1 |") for line in lines) and any(line.startswith("| V2 |") for line in lines)
    print("\n".join(lines))
