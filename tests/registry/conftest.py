"""A real (embedded sqlite) MLflow registry with model ``m``: versions 1 (champion), 2 (challenger) and 3."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, TAG_BUNDLE_URI


@pytest.fixture
def mlflow_uri(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    c.create_registered_model("m")
    for i in (1, 2, 3):
        c.create_model_version("m", source=f"file:///bundles/{i}", tags={TAG_BUNDLE_URI: f"file:///bundles/{i}"})
    c.set_registered_model_alias("m", ALIAS_CHAMPION, "1")
    c.set_registered_model_alias("m", ALIAS_CHALLENGER, "2")
    return uri
