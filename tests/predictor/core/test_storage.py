"""predictor.core.storage: what a bundle URI may be, and what a bundle may list, before anything is fetched."""

from __future__ import annotations

import json

import pytest

from predictor.core.storage import StorageError, download, listed_files, s3_location


@pytest.mark.parametrize("name", ["../escape.ubj", "a/b.json", "..", ".", "/etc/passwd", "bundle.json", "", "x" * 200])
def test_a_listed_name_that_is_not_flat_is_refused(name):
    manifest = json.dumps({"files": {"model.ubj": "0" * 64, name: "0" * 64}}).encode()
    with pytest.raises(StorageError, match="is not a flat file name"):
        listed_files(manifest, "s3://b/p/")


def test_flat_names_are_listed():
    manifest = json.dumps({"files": {"model.ubj": "0", "reference.json": "1", "forest_v2.npz": "2"}}).encode()
    assert listed_files(manifest, "") == ["forest_v2.npz", "model.ubj", "reference.json"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"files": ["model.ubj"]}', b"{}"])
def test_a_manifest_without_a_files_object_is_refused(body):
    with pytest.raises(StorageError, match="bundle.json"):
        listed_files(body, "")


@pytest.mark.parametrize(
    ("uri", "where"),
    [("s3://models/housing/1", ("models", "housing/1/")), ("s3://models/housing/1/", ("models", "housing/1/"))],
)
def test_the_s3_prefix_is_exact(uri, where):
    """``housing/1`` must not also match ``housing/10/…``: the prefix always ends in ``/``."""
    assert s3_location(uri) == where


@pytest.mark.parametrize("uri", ["s3://models", "s3://models/", "s3:///housing/1"])
def test_an_s3_uri_without_bucket_and_prefix_is_refused(uri):
    with pytest.raises(StorageError, match="expected s3://BUCKET/PREFIX"):
        s3_location(uri)


@pytest.mark.parametrize("uri", ["http://evil.example/bundle", "https://u:pw@host/b", "gs://b/p", "hdfs://x/y"])
def test_only_s3_file_and_paths_are_bundle_uris(uri):
    with pytest.raises(StorageError, match="unsupported scheme") as info:
        download(uri)
    assert "pw@" not in str(info.value)


def test_a_local_path_is_served_in_place(tmp_path):
    assert download(f"file://{tmp_path}") == (tmp_path, None)
    with pytest.raises(StorageError, match="not a directory"):
        download(str(tmp_path / "missing"))
