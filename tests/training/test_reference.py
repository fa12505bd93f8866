"""The training distribution a bundle records (:mod:`training.reference`)."""

from __future__ import annotations

import numpy as np
import pytest

from training.reference import reference_stats


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
