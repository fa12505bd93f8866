"""The gates: each value read from Prometheus against its limit (pure).

The distribution gates (``psi``, ``mean_shift``) are statistical tests (:mod:`rollout.evidence`):
they fail only when the evidence says the threshold is exceeded, and say "not enough evidence"
(``wanting``) when the counts cannot decide; the others compare a value with its limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout.analysis_config import Thresholds
from rollout.evidence import EXCEEDS, NOT_ENOUGH, Evidence, bucket_moments, mean_shift_test, paired_shift_test, psi_test
from rollout.evidence import MIN_SAMPLES as MIN_PAIRS


@dataclass
class GateResult:
    name: str
    value: float | None
    threshold: float
    passed: bool
    note: str = ""
    #: The test behind a distribution gate: verdict, estimate, interval, p-value, counts, comparison.
    evidence: dict[str, Any] | None = None
    #: A required gate without a value (no data in the window): not passed, and not failed either.
    missing: bool = False

    @property
    def wanting(self) -> bool:
        """Not enough evidence to decide this gate (the step waits; never a failure)."""
        return self.missing or (self.evidence is not None and self.evidence["verdict"] == NOT_ENOUGH)


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


def tested(name: str, evidence: Evidence, threshold: float) -> GateResult:
    """A distribution gate from its test: failed only when the evidence says the threshold is exceeded."""
    note = evidence.note if evidence.verdict == NOT_ENOUGH else f"{evidence.comparison}: {evidence.verdict}"
    return GateResult(name, evidence.estimate, threshold, evidence.verdict != EXCEEDS, note, evidence.to_dict())


def _moments(values: dict[str, Any], role: str) -> tuple[float, float, float] | None:
    """(count, mean, variance) of a version's predictions from its histogram, with the exact mean
    (``_sum``/``_count``) when Prometheus has it."""
    mean = values.get(f"{role}.prediction_mean")
    exact = mean if values.get(f"{role}.prediction_mean_source") != "buckets" else None
    return bucket_moments(values.get(f"{role}.buckets"), exact)


def distribution_gates(values: dict[str, Any], thresholds: Thresholds) -> list[GateResult]:
    """The mean-shift and PSI gates as tests at level ``thresholds.alpha``.

    The mean shift is decided by the paired comparison (the two answers to the same rows) when
    there are enough pairs, else by the two versions' histograms; PSI compares the histograms.
    """
    alpha = thresholds.alpha
    pairs = values.get("paired.pairs")
    if pairs is not None and pairs >= MIN_PAIRS:
        shift = paired_shift_test(
            pairs, values.get("paired.sum"), values.get("paired.squares"), thresholds.max_mean_shift, alpha
        )
    else:
        shift = mean_shift_test(
            _moments(values, "champion"), _moments(values, "challenger"), thresholds.max_mean_shift, alpha
        )
    psi = psi_test(values.get("champion.buckets"), values.get("challenger.buckets"), thresholds.max_psi, alpha)
    return [tested("mean_shift", shift, thresholds.max_mean_shift), tested("psi", psi, thresholds.max_psi)]


#: Where :func:`rollout.error_gate.judge` says why the error rate has no value (shown with the gate).
MISSING_NOTE = "error_rate.missing"


def evaluate_gates(values: dict[str, Any], thresholds: Thresholds) -> list[GateResult]:
    """Decide each gate from the values read. A missing error rate is not evidence of health: it
    never passes, and it never fails either — the step wants evidence (it waits, and ends the run
    inconclusive at its last look: neither promoted nor rolled back on missing data). Missing
    latency or drift values are reported but do not fail a step on their own; the distribution
    gates are tests (:func:`distribution_gates`)."""
    results: list[GateResult] = []

    def gate(name: str, value: float | None, limit: float, required: bool, note: str = "no data") -> None:
        if value is None:
            results.append(GateResult(name, None, limit, not required, note, missing=required))
        else:
            results.append(GateResult(name, value, limit, value <= limit))

    gate("error_rate", values.get("error_rate"), thresholds.max_error_rate, True, values.get(MISSING_NOTE) or "no data")
    gate("p95_latency", values.get("p95_latency"), thresholds.max_p95_seconds, False)
    results.extend(distribution_gates(values, thresholds))
    gate("drift", values.get("drift"), drift_limit(thresholds.max_drift, values.get("champion.drift")), False)
    return results
