"""Fixtures of the predictor tests: a bundle with its decoder (boston: all numeric; ames: categoricals), and
the ames bundle as a loaded ``kserve.Model``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from predictor.codec.decode import Decoder
from predictor.core.loaded import load_bundle

if TYPE_CHECKING:
    from predictor.transport.model import HousingModel


@pytest.fixture(scope="module")
def boston(boston_xgb):
    bundle = load_bundle(boston_xgb)
    return bundle, Decoder(bundle.schema, max_batch_size=100)


@pytest.fixture(scope="module")
def ames(ames_xgb):
    bundle = load_bundle(ames_xgb)
    return bundle, Decoder(bundle.schema, max_batch_size=100)


@pytest.fixture(scope="module")
def model(ames_xgb) -> HousingModel:
    """The ames XGBoost bundle as a loaded :class:`HousingModel` taking batches of at most 3 rows (a test
    module that defines its own ``model`` uses that one)."""
    from predictor.transport.model import HousingModel

    model = HousingModel("housing", ames_xgb, max_batch_size=3)
    model.load()
    return model
