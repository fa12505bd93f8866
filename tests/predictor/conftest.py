"""Fixtures of the predictor tests: a bundle with its decoder (boston: all numeric; ames: categoricals)."""

from __future__ import annotations

import pytest

from predictor.codec.decode import Decoder
from predictor.core.loaded import load_bundle


@pytest.fixture(scope="module")
def boston(boston_xgb):
    bundle = load_bundle(boston_xgb)
    return bundle, Decoder(bundle.schema, max_batch_size=100)


@pytest.fixture(scope="module")
def ames(ames_xgb):
    bundle = load_bundle(ames_xgb)
    return bundle, Decoder(bundle.schema, max_batch_size=100)
