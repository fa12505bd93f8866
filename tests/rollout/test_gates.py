"""The gates against their limits."""

from __future__ import annotations

import pytest

from rollout.analysis_config import Thresholds
from rollout.gates import evaluate_gates

SAME = {"10": 1000, "20": 3000, "30": 4500, "+Inf": 5000}
MOVED = {"10": 100, "20": 500, "30": 2000, "+Inf": 5000}


def test_gates():
    t = Thresholds(max_error_rate=0.01, max_p95_seconds=0.2, max_mean_shift=0.1, max_psi=0.2, max_drift=0.5)
    histograms = {"champion.buckets": SAME, "challenger.buckets": SAME}
    ok = evaluate_gates({"error_rate": 0.0, "p95_latency": 0.01, "drift": 0.1, **histograms}, t)
    assert all(g.passed and not g.wanting for g in ok)
    bad = {
        g.name: g for g in evaluate_gates({"error_rate": 0.5, "champion.buckets": SAME, "challenger.buckets": MOVED}, t)
    }
    assert not bad["error_rate"].passed and not bad["psi"].passed and not bad["mean_shift"].passed
    assert bad["psi"].evidence["verdict"] == "exceeds" and bad["psi"].evidence["low"] > 0.2
    assert bad["drift"].passed and bad["drift"].note == "no data"
    nothing = {g.name: g for g in evaluate_gates({}, t)}
    # no error rate: not passed, not failed either — the step wants evidence (it holds)
    assert not nothing["error_rate"].passed and nothing["error_rate"].wanting
    # no histogram is not enough evidence: never a failure, but the step cannot pass on it either
    assert nothing["psi"].passed and nothing["psi"].wanting and nothing["mean_shift"].wanting


def test_paired_answers_decide_the_mean_shift_when_there_are_enough():
    t = Thresholds(max_mean_shift=0.03)
    # the histograms alone cannot tell a +5 % shift at 60 predictions; 60 paired answers can
    values = {"champion.buckets": SAME, "challenger.buckets": {"10": 12, "20": 36, "30": 54, "+Inf": 60}}
    two_sample = {g.name: g for g in evaluate_gates(values, t)}["mean_shift"]
    assert two_sample.evidence["comparison"] == "marginal" and two_sample.wanting
    paired = {**values, "paired.pairs": 60, "paired.sum": 60 * 0.05, "paired.squares": 60 * (0.05**2 + 0.03**2)}
    shift = {g.name: g for g in evaluate_gates(paired, t)}["mean_shift"]
    assert shift.evidence["comparison"] == "paired" and not shift.passed
    assert shift.value == pytest.approx(0.05) and shift.evidence["counts"] == {"pairs": 60}


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
