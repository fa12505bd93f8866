"""``models:/`` URIs resolved against a real (embedded sqlite) MLflow registry (:mod:`registry.resolve`)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from common.config import TAG_BUNDLE_URI
from registry.resolve import RegistryError, resolve_uri, short_error


@pytest.mark.parametrize(
    ("tag", "ok"),
    [
        ("s3://models/housing/4", True),
        ("file:///bundles/4", True),
        ("/bundles/4", True),
        ("http://169.254.169.254/latest/meta-data", False),
        ("https://user:pw@example.com/b", False),
        ("gs://bucket/b", False),
    ],
)
def test_a_registered_bundle_uri_is_s3_file_or_a_path(mlflow_uri, tag, ok):
    """An http(s) bundle_uri tag would have the predictor fetch whatever it names (SSRF)."""
    c = MlflowClient(tracking_uri=mlflow_uri)
    mv = c.create_model_version("m", source="file:///bundles/4", tags={TAG_BUNDLE_URI: tag})
    c.set_registered_model_alias("m", "probe", mv.version)
    if ok:
        assert resolve_uri("models:/m@probe", tracking_uri=mlflow_uri).uri == tag
        return
    with pytest.raises(RegistryError, match="is not an s3:// or file:// URI or a path") as info:
        resolve_uri("models:/m@probe", tracking_uri=mlflow_uri)
    assert "pw@" not in str(info.value)


def test_short_error_strips_credentials_from_urls_in_messages():
    exc = RuntimeError("GET http://alice:s3cret@mlflow:5000/api?token=x failed: 401")
    assert short_error(exc) == "GET http://mlflow:5000/api failed: 401"
