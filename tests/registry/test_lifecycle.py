"""Alias moves against a real (embedded sqlite) MLflow registry (:mod:`registry.lifecycle`)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, ALIAS_PREVIOUS
from registry import lifecycle as registry


def test_promote_moves_aliases(mlflow_uri):
    moved = registry.promote("m", tracking_uri=mlflow_uri)
    assert moved == {"champion": "2", "previous": "1"}
    roles = registry.resolve("m", tracking_uri=mlflow_uri)
    assert roles[ALIAS_CHAMPION].version == "2"
    assert roles[ALIAS_PREVIOUS].version == "1"
    assert roles[ALIAS_CHALLENGER] is None
    assert roles[ALIAS_CHAMPION].bundle_uri == "file:///bundles/2"
    assert roles[ALIAS_CHAMPION].tags[registry.TAG_STATUS] == "promoted"


def test_reject_keeps_champion(mlflow_uri):
    assert registry.reject("m", "psi 0.9 > 0.25", tracking_uri=mlflow_uri) == "2"
    roles = registry.resolve("m", tracking_uri=mlflow_uri)
    assert roles[ALIAS_CHAMPION].version == "1"
    assert roles[ALIAS_CHALLENGER] is None
    mv = MlflowClient(tracking_uri=mlflow_uri).get_model_version("m", "2")
    assert mv.tags[registry.TAG_STATUS] == "rejected" and mv.tags[registry.TAG_REASON] == "psi 0.9 > 0.25"
    with pytest.raises(ValueError, match="champion"):
        registry.reject("m", "x", version="1", tracking_uri=mlflow_uri)
    with pytest.raises(LookupError):
        registry.promote("m", tracking_uri=mlflow_uri)
