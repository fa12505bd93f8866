"""common.urls.redact: URLs in logs and errors carry no credentials."""

from __future__ import annotations

import pytest

from common.urls import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice:s3cret@mlflow:5000/api/2.0/x?token=abc", "http://mlflow:5000/api/2.0/x"),
        ("https://user@host/p#frag", "https://host/p"),
        ("s3://bucket/key?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA", "s3://bucket/key"),
        ("s3://bucket/housing/1", "s3://bucket/housing/1"),
        ("/mnt/models", "/mnt/models"),
        ("models:/housing@champion", "models:/housing@champion"),
    ],
)
def test_credentials_and_queries_are_stripped(url, shown):
    assert redact(url) == shown
    assert "s3cret" not in redact(url) and "Signature" not in redact(url)
