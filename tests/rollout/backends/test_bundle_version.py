"""kserve_common.bundle_version: the version a predictor labels its series with, from the manifest."""

from __future__ import annotations

import json

from rollout.backends.kserve_common import bundle_version


def test_the_manifest_version_wins_over_the_path(tmp_path):
    bundle = tmp_path / "housing" / "1"  # where the chart's install trains: predictor.storageUri
    bundle.mkdir(parents=True)
    (bundle / "bundle.json").write_text(json.dumps({"model_version": "20261207T094058Z-e9c77f45"}))
    assert bundle_version(str(bundle)) == "20261207T094058Z-e9c77f45"
    assert bundle_version(f"file://{bundle}/") == "20261207T094058Z-e9c77f45"


def test_unreadable_bundles_fall_back_to_the_last_path_segment(tmp_path, monkeypatch):
    assert bundle_version(str(tmp_path / "housing" / "7")) == "7"
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    assert bundle_version("s3://models/housing/20261207T0000Z-abc") == "20261207T0000Z-abc"  # no S3 here: no call
