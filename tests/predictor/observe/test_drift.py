"""Drift scores of served traffic against the training distribution."""

from __future__ import annotations

import numpy as np


def test_drift_psi_is_near_zero_for_training_like_samples_and_grows_with_shift() -> None:
    """Small windows of in-distribution traffic must not read as drift (the canary gate uses it)."""
    from predictor.observe.drift import DRIFT_MIN_ROWS, psi_from_counts

    rng = np.random.default_rng(0)
    expected = np.array([0.4, 0.3, 0.2, 0.05, 0.03, 0.02])  # rare bins are where naive PSI explodes
    for m in (DRIFT_MIN_ROWS, 400, 2000):
        same = [psi_from_counts(expected, rng.multinomial(m, expected)) for _ in range(200)]
        assert np.median(same) < 0.03 and np.quantile(same, 0.99) < 0.15, (m, np.quantile(same, 0.99))
    shifted = rng.multinomial(DRIFT_MIN_ROWS, [0.05, 0.05, 0.1, 0.3, 0.3, 0.2])
    assert psi_from_counts(expected, shifted) > 1.0
