"""The regression metrics a bundle records and the quality gate re-measures (:mod:`bundle.metrics`)."""

from __future__ import annotations

import numpy as np
import pytest

from bundle.metrics import holdout_metrics, regression_metrics


def test_regression_metrics_known_values() -> None:
    m = regression_metrics(np.array([100.0, 200.0, 300.0]), np.array([110.0, 190.0, 300.0]))
    assert m["rmse"] == pytest.approx(np.sqrt(200 / 3))
    assert m["mae"] == pytest.approx(20 / 3)
    assert m["r2"] == pytest.approx(1 - 200 / 20000)
    assert m["mape"] == pytest.approx((10 + 5 + 0) / 3)


def test_holdout_metrics_log_scale() -> None:
    y = np.array([100.0, 200.0, 400.0])
    m = holdout_metrics(y, y * np.exp(0.1), log_target=True)
    assert m["rmse_log"] == pytest.approx(0.1) and m["mae_log"] == pytest.approx(0.1)
    assert "rmse_log" not in holdout_metrics(y, y, log_target=False)
