from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bundle.schema import CATEGORICAL, NUMERIC, FeatureSchema
from training.errors import TrainingError
from training.features import MISSING_CATEGORY, fit_features


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    train, hold = frame.iloc[:180], frame.iloc[180:].copy()
    y = np.log(train["price"].to_numpy())
    return train.drop(columns="price"), hold.drop(columns="price"), y


def test_schema_replays_target_encoder_exactly(frame: pd.DataFrame) -> None:
    train, hold, y = _split(frame)
    hold.loc[hold.index[0], "hood"] = "atlantis"  # unseen category -> target_mean_
    hold.loc[hold.index[1], "style"] = None  # missing -> fill category
    fitted = fit_features(train, y)
    schema = FeatureSchema.from_dict(fitted.schema.to_dict())  # through JSON-ready form
    encoded = schema.encode_frame(hold)
    expected = fitted.encoder.transform(fitted.prepare(hold)[fitted.categorical].to_numpy(dtype=object))
    for k, name in enumerate(fitted.categorical):
        np.testing.assert_array_equal(encoded[:, schema.index[name]], expected[:, k])
    assert encoded[0, schema.index["hood"]] == fitted.encoder.target_mean_
    np.testing.assert_array_equal(encoded[:, schema.index["area"]], hold["area"].to_numpy())


def test_models_train_on_cross_fitted_encoding(frame: pd.DataFrame) -> None:
    train, _, y = _split(frame)
    fitted = fit_features(train, y)
    full = fitted.schema.encode_frame(train)
    j = fitted.schema.index["hood"]
    assert not np.array_equal(fitted.X_train[:, j], full[:, j])  # cross-fitted, not the full fit
    assert fitted.X_train.shape == (180, 5) and np.isfinite(fitted.X_train).all()


def test_missing_values_and_ranges(frame: pd.DataFrame) -> None:
    train, _, y = _split(frame)
    fitted = fit_features(train, y, impute="median")
    by = fitted.schema.by_name
    assert by["age"].kind == NUMERIC and not by["age"].required
    assert by["age"].default == pytest.approx(float(np.nanmedian(train["age"])))
    assert by["area"].required and by["rooms"].dtype == "int64"
    assert by["style"].kind == CATEGORICAL and not by["style"].required and by["style"].default == MISSING_CATEGORY
    assert by["hood"].required and set(by["hood"].categories) == {"north", "south", "east", "west"}
    assert by["area"].min == train["area"].min() and by["area"].max == train["area"].max()
    assert len(by["area"].quantiles) == 11 and by["area"].quantiles[5] == pytest.approx(train["area"].median())
    assert np.isfinite(fitted.X_train).all()


@pytest.mark.parametrize("impute", ["mean", "most_frequent", "constant"])
def test_impute_strategies(frame: pd.DataFrame, impute: str) -> None:
    train, _, y = _split(frame)
    fitted = fit_features(train, y, impute=impute)
    expected = {
        "mean": float(np.nanmean(train["age"])),
        "constant": 0.0,
        "most_frequent": float(train["age"].mode().iloc[0]),
    }[impute]
    assert fitted.schema.by_name["age"].default == pytest.approx(expected)
    style_default = fitted.schema.by_name["style"].default
    assert style_default == ("flat" if impute == "most_frequent" else MISSING_CATEGORY)


def test_unknown_impute_strategy(frame: pd.DataFrame) -> None:
    train, _, y = _split(frame)
    with pytest.raises(TrainingError, match="unknown impute strategy 'mode'"):
        fit_features(train, y, impute="mode")
