from __future__ import annotations

from pathlib import Path

import pytest

from bundle.manifest import MANIFEST, Manifest, write_bundle
from training import storage
from training.errors import TrainingError


def _bundle(directory: Path) -> str:
    directory.mkdir(parents=True)
    (directory / "linear.json").write_text('{"intercept": 1.0, "coef": [2.0]}')
    manifest = Manifest(
        model_name="m",
        model_version="v1",
        flavor="linear",
        target={"name": "y", "transform": "none"},
        schema={"features": []},
        metrics={},
        data_digest="0" * 64,
        libraries={},
        created_at="2026-01-01T00:00:00Z",
    )
    return write_bundle(directory, manifest)


def test_uris() -> None:
    assert storage.split_s3_uri("s3://models/a/b/") == ("models", "a/b")
    assert storage.split_s3_uri("s3://models") == ("models", "")
    assert storage.bundle_uri("s3://models", "housing", "v1") == "s3://models/housing/v1"
    assert storage.bundle_uri("s3://models/pre/fix", "housing", "v1") == "s3://models/pre/fix/housing/v1"
    assert storage.bundle_uri("/tmp/root", "housing", "v1") == "/tmp/root/housing/v1"
    with pytest.raises(TrainingError, match="no bucket"):
        storage.split_s3_uri("s3:///key")


def test_publish_to_directory_verifies_and_refuses_overwrite(tmp_path: Path) -> None:
    digest = _bundle(tmp_path / "staging")
    dest = tmp_path / "root" / "m" / "v1"
    storage.publish(tmp_path / "staging", str(dest), digest)
    assert (dest / MANIFEST).is_file() and (dest / "linear.json").is_file()
    with pytest.raises(TrainingError, match="already exists"):
        storage.publish(tmp_path / "staging", str(dest), digest)
    storage.unpublish(str(dest))
    assert not dest.exists()


def test_publish_failure_leaves_nothing(tmp_path: Path) -> None:
    _bundle(tmp_path / "staging")
    dest = tmp_path / "root" / "m" / "v1"
    with pytest.raises(TrainingError, match="could not publish the bundle.*does not match the pinned"):
        storage.publish(tmp_path / "staging", str(dest), "f" * 64)
    assert not dest.exists()


def test_unreachable_s3_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(TrainingError, match=r"S3 endpoint http://127.0.0.1:9 unreachable") as info:
        storage.check_bucket("s3://models")
    assert "\n" not in str(info.value)


class FakeS3:
    """Records uploads/deletes; can fail on the n-th upload."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.uploaded: list[str] = []
        self.deleted: list[str] = []
        self.fail_on = fail_on

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        if self.fail_on is not None and len(self.uploaded) == self.fail_on:
            raise ConnectionError("connection reset by peer")
        self.uploaded.append(key)

    def delete_object(self, Bucket: str, Key: str) -> None:  # noqa: N803 - boto3 spelling
        self.deleted.append(Key)

    def list_objects_v2(self, Bucket: str, Prefix: str, MaxKeys: int = 1000) -> dict:  # noqa: N803
        live = [k for k in self.uploaded if k.startswith(Prefix) and k not in self.deleted]
        return {"KeyCount": min(len(live), MaxKeys)}


def test_s3_upload_order_and_cleanup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = _bundle(tmp_path / "staging")
    (tmp_path / "staging" / "reference.json").write_text("{}")
    fake = FakeS3()
    monkeypatch.setattr(storage, "s3_client", lambda: fake)
    monkeypatch.setattr(storage, "download_s3", lambda uri, dest, client=None: _copy(tmp_path / "staging", dest))
    storage.publish(tmp_path / "staging", "s3://models/m/v1", digest)
    assert fake.uploaded[-1] == f"m/v1/{MANIFEST}" and len(fake.uploaded) == 3 and fake.deleted == []
    with pytest.raises(TrainingError, match="already exists"):  # bundles are immutable
        storage.publish(tmp_path / "staging", "s3://models/m/v1", digest)
    assert len(fake.uploaded) == 3 and fake.deleted == []

    failing = FakeS3(fail_on=1)
    monkeypatch.setattr(storage, "s3_client", lambda: failing)
    with pytest.raises(TrainingError, match="could not upload the bundle to s3://models/m/v1: connection reset"):
        storage.publish(tmp_path / "staging", "s3://models/m/v1", digest)
    assert failing.uploaded == ["m/v1/linear.json"] and failing.deleted == ["m/v1/linear.json"]


def _copy(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest
