"""Training against a real MinIO and a real MLflow tracking server (fixtures in tests/conftest.py).

Covers the contract: the bundle lands in the bucket and verifies, the registered version carries
the bundle URI/digest tags and the right aliases, and every failure leaves nothing half-done.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bundle.manifest import MANIFEST, load_manifest
from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, DEFAULT_BUCKET, TAG_BUNDLE_DIGEST, TAG_BUNDLE_URI
from training.api import TrainConfig, run_training
from training.errors import TrainingError

pytestmark = pytest.mark.integration

BOSTON_FAST = dict(dataset="boston", fast=True, candidates=("linear",), progress=False)


def _keys(minio, bucket: str = DEFAULT_BUCKET, prefix: str = "") -> list[str]:
    client = minio.s3()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _versions(uri: str, name: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        return client.search_model_versions(f"name='{name}'")
    except Exception:  # noqa: BLE001 - no such model yet
        return []


def _restart(mlflow_server):
    return lambda: mlflow_server.start(timeout=120)


def _fails_leaving_nothing(minio, mlflow_server, name: str, match: str, after=None) -> None:
    """Training ``name`` fails with ``match``; ``after()`` (a restart) then runs whatever happened, and the
    bucket holds nothing of ``name`` and MLflow no version of it."""
    try:
        with pytest.raises(TrainingError, match=match):
            run_training(TrainConfig(**BOSTON_FAST, model_name=name))
    finally:
        if after is not None:
            after()
    assert _keys(minio, prefix=f"{name}/") == []
    assert _versions(mlflow_server.uri, name) == []


def test_bundle_in_bucket_and_versions_with_aliases(stack_env, minio, mlflow_server, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    name = "housing-it-aliases"
    first = run_training(TrainConfig(**BOSTON_FAST, model_name=name))
    assert first.bundle_uri == f"s3://{DEFAULT_BUCKET}/{name}/{first.manifest.model_version}"
    prefix = f"{name}/{first.manifest.model_version}/"
    keys = _keys(minio, prefix=prefix)
    assert {k.removeprefix(prefix) for k in keys} == {MANIFEST, "linear.json", "reference.json", "evaluation.json"}
    local = tmp_path / "download"
    local.mkdir()
    for key in keys:
        minio.s3().download_file(DEFAULT_BUCKET, key, str(local / key.removeprefix(prefix)))
    manifest = load_manifest(local, expected_digest=first.digest)
    assert manifest.model_version == first.manifest.model_version

    second = run_training(TrainConfig(**BOSTON_FAST, model_name=name))
    assert first.aliases == [ALIAS_CHALLENGER, ALIAS_CHAMPION] and second.aliases == [ALIAS_CHALLENGER]
    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    champion = client.get_model_version_by_alias(name, ALIAS_CHAMPION)
    challenger = client.get_model_version_by_alias(name, ALIAS_CHALLENGER)
    assert str(champion.version) == first.model_version and str(challenger.version) == second.model_version
    assert champion.tags[TAG_BUNDLE_URI] == first.bundle_uri and champion.tags[TAG_BUNDLE_DIGEST] == first.digest
    assert challenger.tags[TAG_BUNDLE_URI] == second.bundle_uri
    arts = {a.path for a in client.list_artifacts(second.run_id, "plots")}
    assert "plots/residuals.png" in arts and "plots/feature_importance.png" in arts
    bundle_in_model = {a.path for a in client.list_artifacts(second.run_id, "model/artifacts/bundle")}
    assert f"model/artifacts/bundle/{MANIFEST}" in bundle_in_model  # the bundle, as the pyfunc model's artifact
    assert client.get_run(second.run_id).info.status == "FINISHED"


def test_missing_bucket_fails_and_registers_nothing(stack_env, minio, mlflow_server) -> None:
    name = "housing-it-nobucket"
    with pytest.raises(TrainingError, match="bucket 'no-such-bucket' does not exist"):
        run_training(TrainConfig(**BOSTON_FAST, model_name=name, bundle_root="s3://no-such-bucket/x"))
    assert _versions(mlflow_server.uri, name) == []


def test_minio_down_before_publish(stack_env, minio, mlflow_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """MinIO stops after training (just before the upload): error, nothing uploaded or registered."""
    from training import storage

    name = "housing-it-miniodown"
    real_publish = storage.publish

    def stop_then_publish(*args, **kwargs):
        minio.stop()
        return real_publish(*args, **kwargs)

    monkeypatch.setattr(storage, "publish", stop_then_publish)
    _fails_leaving_nothing(minio, mlflow_server, name, "could not upload the bundle", after=minio.start)


def test_minio_down_mid_upload_removes_partial_bundle(stack_env, minio, mlflow_server, monkeypatch) -> None:
    """The verification download fails after some objects were written: they are removed again."""
    from training import storage

    name = "housing-it-partial"
    real_download = storage.download_s3

    def fail_download(*args, **kwargs):
        raise ConnectionError("simulated outage while verifying")

    monkeypatch.setattr(storage, "download_s3", fail_download)

    def restore() -> None:
        monkeypatch.setattr(storage, "download_s3", real_download)

    _fails_leaving_nothing(minio, mlflow_server, name, "could not upload the bundle.*simulated outage", after=restore)


def test_mlflow_down_fails_before_upload(stack_env, minio, mlflow_server) -> None:
    name = "housing-it-mlflowdown"
    mlflow_server.stop()
    _fails_leaving_nothing(
        minio, mlflow_server, name, "MLflow tracking server .* unreachable", after=_restart(mlflow_server)
    )


def test_mlflow_down_after_training_uploads_nothing(stack_env, minio, mlflow_server, monkeypatch) -> None:
    """MLflow dies while the models train: the pre-upload check fails, the bucket stays clean."""
    from training import pipeline

    name = "housing-it-mlflowmid"
    real_folds = pipeline.make_folds

    def folds_then_stop(*args, **kwargs):
        folds = real_folds(*args, **kwargs)
        mlflow_server.stop()
        return folds

    monkeypatch.setattr(pipeline, "make_folds", folds_then_stop)
    _fails_leaving_nothing(
        minio, mlflow_server, name, "MLflow tracking server .* unreachable", after=_restart(mlflow_server)
    )


def test_cli_exit_code_with_real_servers(stack_env, minio) -> None:
    from typer.testing import CliRunner

    from housing.cli import app

    result = CliRunner().invoke(app, ["train", "-d", "boston", "--fast", "--bundle-root", "s3://absent-bucket"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: S3 bucket 'absent-bucket' does not exist at {minio.endpoint}"


def test_dataset_from_s3(stack_env, minio, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    area = rng.uniform(50, 250, 200)
    hood = rng.choice(["north", "south"], 200)
    price = 1000 * area * np.where(hood == "north", 1.3, 1.0) * np.exp(rng.normal(0, 0.05, 200))
    path = tmp_path / "houses.csv"
    pd.DataFrame({"area": area, "hood": hood, "price": price}).to_csv(path, index=False)
    minio.s3().upload_file(str(path), DEFAULT_BUCKET, "datasets/houses.csv")
    result = run_training(
        TrainConfig(
            dataset=f"s3://{DEFAULT_BUCKET}/datasets/houses.csv",
            target="price",
            fast=True,
            candidates=("linear",),
            register=False,
            progress=False,
        )
    )
    assert result.bundle_uri.startswith(f"s3://{DEFAULT_BUCKET}/housing/")
    assert result.manifest.data_digest


def test_housing_train_cli_against_the_stack(stack_env, minio) -> None:
    from typer.testing import CliRunner

    from housing.cli import app

    name = "housing-it-cli"
    args = ["train", "-d", "boston", "--fast", "-c", "linear", "--model-name", name]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert f"s3://{DEFAULT_BUCKET}/{name}/" in result.output
    assert f"model '{name}' version 1 (aliases: challenger, champion)" in result.output
    assert any(k.endswith(MANIFEST) for k in _keys(minio, prefix=f"{name}/"))


def test_exact_s3_bundle_uri_is_immutable(stack_env, minio, mlflow_server) -> None:
    """The chart's training Job writes exactly to the InferenceService's storageUri, once."""
    name = "housing-it-exact"
    uri = f"s3://{DEFAULT_BUCKET}/{name}/1"
    first = run_training(TrainConfig(**BOSTON_FAST, model_name=name, bundle_uri=uri))
    assert first.bundle_uri == uri
    keys = sorted(_keys(minio, prefix=f"{name}/1/"))
    with pytest.raises(TrainingError, match="already exists"):
        run_training(TrainConfig(**BOSTON_FAST, model_name=name, bundle_uri=uri))
    assert sorted(_keys(minio, prefix=f"{name}/1/")) == keys
    assert [str(v.version) for v in _versions(mlflow_server.uri, name)] == [first.model_version]
