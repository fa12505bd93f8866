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
    # The drift score measures the traffic against each model's training data; the same traffic
    # drifts for the champion too, so the challenger is only blamed beyond the champion's score.
    champion_drift = values.get("champion.drift")
    drift_limit = thresholds.max_drift if champion_drift is None else max(thresholds.max_drift, champion_drift + 0.1)
    gate("drift", values.get("drift"), drift_limit, False)
    return results
