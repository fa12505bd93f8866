from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bundle.model_files import (
    export_forest,
    export_linear,
    export_xgboost,
    fold_linear,
    load_forest,
    predict_forest,
    predict_linear,
)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 6)) * [1, 10, 100, 0.1, 1, 5] + [0, 50, 0, 1, -3, 2]
    y = X @ [1.0, 0.2, 0.01, 5.0, -1.0, 0.3] + np.sin(X[:, 0]) + rng.normal(0, 0.1, 400)
    # values that sit exactly on float32 boundaries exercise the float32 comparison rule
    X[:5, 0] = [0.1, 0.2, 0.3, 1 / 3, 2 / 3]
    return X[:300], y[:300], X[300:]


def test_forest_npz_matches_sklearn(tmp_path: Path, data) -> None:
    from sklearn.ensemble import RandomForestRegressor

    X, y, hold = data
    rf = RandomForestRegressor(n_estimators=15, max_features=0.5, random_state=0).fit(X, y)
    info = export_forest(rf, tmp_path / "forest.npz")
    forest = load_forest(tmp_path / "forest.npz")
    assert info["n_trees"] == 15 and int(forest["n_trees"]) == 15 and int(forest["n_features"]) == 6
    assert forest["feature"].dtype == np.int32 and forest["left"].dtype == np.int32
    assert forest["threshold"].dtype == np.float64 and forest["value"].dtype == np.float64
    leaves = forest["feature"] == -2
    assert (forest["left"][leaves] == -1).all() and (forest["right"][leaves] == -1).all()
    np.testing.assert_allclose(predict_forest(forest, hold), rf.predict(hold), rtol=0, atol=1e-12)
    np.testing.assert_allclose(predict_forest(forest, X), rf.predict(X), rtol=0, atol=1e-12)
    with np.load(tmp_path / "forest.npz", allow_pickle=False) as raw:  # no pickle needed
        assert set(raw.files) >= {"feature", "threshold", "left", "right", "value", "roots", "n_trees"}


def test_linear_folding_is_exact(tmp_path: Path, data) -> None:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, hold = data
    pipe = Pipeline([("scale", StandardScaler()), ("model", RidgeCV(alphas=np.logspace(-3, 3, 13)))]).fit(X, y)
    intercept, coef = fold_linear(pipe)
    np.testing.assert_allclose(intercept + hold @ coef, pipe.predict(hold), rtol=1e-10, atol=1e-9)
    export_linear(pipe, tmp_path / "linear.json")
    doc = json.loads((tmp_path / "linear.json").read_text())
    assert set(doc) == {"intercept", "coef"} and len(doc["coef"]) == 6
    np.testing.assert_allclose(
        predict_linear(tmp_path / "linear.json", hold), pipe.predict(hold), rtol=1e-10, atol=1e-9
    )


def test_xgboost_ubj_round_trip(tmp_path: Path, data) -> None:
    import xgboost as xgb

    X, y, hold = data
    model = xgb.XGBRegressor(n_estimators=30, max_depth=3, objective="reg:squarederror", n_jobs=1).fit(X, y)
    info = export_xgboost(model, tmp_path / "model.ubj")
    assert info["objective"] == "reg:squarederror" and info["n_features"] == 6 and info["num_boosted_rounds"] == 30
    booster = xgb.Booster(model_file=str(tmp_path / "model.ubj"))
    np.testing.assert_allclose(booster.inplace_predict(hold), model.predict(hold), rtol=1e-6)
