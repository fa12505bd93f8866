from __future__ import annotations

import numpy as np
import pytest

from training.metrics import holdout_metrics, regression_metrics
from training.reference import reference_stats


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


def test_reference_stats(frame) -> None:
    from training.features import fit_features

    train = frame.drop(columns="price")
    fitted = fit_features(train, np.log(frame["price"].to_numpy()))
    ref = reference_stats(train, fitted.schema, fitted.fill, frame["price"].to_numpy())
    assert set(ref["numeric"]) == {"area", "rooms", "age"} and set(ref["categorical"]) == {"hood", "style"}
    assert ref["numeric"]["age"]["missing"] > 0
    assert sum(ref["categorical"]["style"]["frequencies"].values()) == pytest.approx(1.0)
    assert "missing" in ref["categorical"]["style"]["frequencies"]
    assert sum(ref["prediction"]["proportions"]) == pytest.approx(1.0)
    assert ref["prediction"]["quantiles"][0] == frame["price"].min()
