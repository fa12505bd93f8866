"""``housing bundles prune`` against a real MinIO and a real MLflow server."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from housing.cli import app
from training.api import TrainConfig, run_training

pytestmark = pytest.mark.integration

BUCKET = "prune-it"


def _prune(*args: str) -> dict:
    result = CliRunner().invoke(app, ["bundles", "prune", "--root", f"s3://{BUCKET}", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _keys(minio) -> list[str]:
    return sorted(o["Key"] for o in minio.s3().list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_prune_lists_then_deletes_only_unreferenced_old_enough_bundles(stack_env, minio, mlflow_server) -> None:
    minio.ensure_bucket(BUCKET)
    kept = run_training(
        TrainConfig(
            dataset="boston",
            fast=True,
            candidates=("linear",),
            progress=False,
            model_name="housing-it-prune",
            bundle_root=f"s3://{BUCKET}",
        )
    )
    s3 = minio.s3()
    s3.put_object(Bucket=BUCKET, Key="housing-it-prune/orphan-1/bundle.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="housing-it-prune/orphan-1/linear.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="housing-it-prune/partial-2/linear.json", Body=b"{}")
    before = _keys(minio)

    listed = _prune()  # default grace period: both orphans are too young to touch
    orphans = {row["uri"]: row for row in listed["unreferenced"]}
    assert set(orphans) == {f"s3://{BUCKET}/housing-it-prune/orphan-1", f"s3://{BUCKET}/housing-it-prune/partial-2"}
    assert {row["action"] for row in orphans.values()} == {"kept (younger than the grace period)"}
    assert orphans[f"s3://{BUCKET}/housing-it-prune/partial-2"]["complete"] is False
    assert kept.bundle_uri not in orphans

    dry = _prune("--grace-hours", "0")
    assert {row["action"] for row in dry["unreferenced"]} == {"would delete"} and _keys(minio) == before

    done = _prune("--grace-hours", "0", "--yes")
    assert {row["action"] for row in done["unreferenced"]} == {"deleted"}
    prefix = kept.bundle_uri.removeprefix(f"s3://{BUCKET}/") + "/"
    assert _keys(minio) == [k for k in before if k.startswith(prefix)] and len(_keys(minio)) == 4
    assert _prune("--grace-hours", "0")["unreferenced"] == []


def test_prune_deletes_nothing_when_mlflow_is_down(stack_env, minio, mlflow_server) -> None:
    minio.ensure_bucket(BUCKET)
    minio.s3().put_object(Bucket=BUCKET, Key="housing-it-down/orphan/bundle.json", Body=b"{}")
    mlflow_server.stop()
    try:
        result = CliRunner().invoke(
            app, ["bundles", "prune", "--root", f"s3://{BUCKET}", "--grace-hours", "0", "--yes"]
        )
    finally:
        mlflow_server.start(timeout=120)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot read the MLflow registry at {mlflow_server.uri}")
    assert "housing-it-down/orphan/bundle.json" in _keys(minio)
