"""The gates: each value read from Prometheus against its limit (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from rollout.analysis_config import Thresholds


@dataclass
class GateResult:
    name: str
    value: float | None
    threshold: float
    passed: bool
    note: str = ""


#: How far the challenger's drift score may exceed the champion's on the same traffic: PSI estimates
#: from two pods' windows differ by a few per cent of their size (0.15 at a score of 5 was seen on
#: the node), so the margin grows with the score; the absolute part covers small scores.
DRIFT_RELATIVE_MARGIN = 0.2
DRIFT_ABSOLUTE_MARGIN = 0.1


def drift_limit(max_drift: float, champion_drift: float | None) -> float:
    """The drift gate's limit: ``max_drift``, or beyond the champion's own score on this traffic.

    The drift score measures the traffic against each model's training data; the same traffic
    drifts for the champion too, so the challenger is only blamed beyond the champion's score.
    """
    if champion_drift is None:
        return max_drift
    return max(max_drift, champion_drift * (1 + DRIFT_RELATIVE_MARGIN) + DRIFT_ABSOLUTE_MARGIN)


def evaluate_gates(values: dict[str, float | None], thresholds: Thresholds) -> list[GateResult]:
    """Decide each gate from the values read. A missing error rate fails (no evidence of health);
    missing model-aware values are reported but do not fail a step on their own."""
    results: list[GateResult] = []

    def gate(name: str, value: float | None, limit: float, required: bool) -> None:
        if value is None:
            results.append(GateResult(name, None, limit, not required, "no data"))
        else:
            results.append(GateResult(name, value, limit, value <= limit))

    gate("error_rate", values.get("error_rate"), thresholds.max_error_rate, True)
    gate("p95_latency", values.get("p95_latency"), thresholds.max_p95_seconds, False)
    gate("mean_shift", values.get("mean_shift"), thresholds.max_mean_shift, False)
    gate("psi", values.get("psi"), thresholds.max_psi, False)
    gate("drift", values.get("drift"), drift_limit(thresholds.max_drift, values.get("champion.drift")), False)
    return results
