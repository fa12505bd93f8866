"""The gates against their limits."""

from __future__ import annotations

from rollout.analysis_config import Thresholds
from rollout.gates import evaluate_gates


def test_gates():
    t = Thresholds(max_error_rate=0.01, max_p95_seconds=0.2, max_mean_shift=0.1, max_psi=0.2, max_drift=0.5)
    ok = evaluate_gates({"error_rate": 0.0, "p95_latency": 0.01, "mean_shift": 0.01, "psi": 0.01, "drift": 0.1}, t)
    assert all(g.passed for g in ok)
    bad = {g.name: g for g in evaluate_gates({"error_rate": 0.5, "psi": 0.9}, t)}
    assert not bad["error_rate"].passed and not bad["psi"].passed
    assert bad["drift"].passed and bad["drift"].note == "no data"
    assert not {g.name: g for g in evaluate_gates({}, t)}["error_rate"].passed
