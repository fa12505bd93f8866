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


def test_drift_is_judged_against_the_champions_score_on_the_same_traffic():
    t = Thresholds(max_error_rate=0.01, max_p95_seconds=0.2, max_mean_shift=0.1, max_psi=0.2, max_drift=0.5)

    def drift(challenger: float, champion: float | None) -> bool:
        values = {"error_rate": 0.0, "drift": challenger, "champion.drift": champion}
        return {g.name: g for g in evaluate_gates(values, t)}["drift"].passed

    assert drift(0.4, None) and not drift(0.6, None)  # no champion score: the absolute limit
    # traffic far from the training data drifts for both: two pods' estimates differ by a few %
    assert drift(5.15, 5.0) and drift(6.0, 5.0)
    assert not drift(7.0, 5.0)  # beyond the champion's score by more than its noise: blamed
    assert drift(0.55, 0.45) and not drift(0.8, 0.45)  # small scores: the absolute margin
