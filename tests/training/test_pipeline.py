from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundle.manifest import MODEL_FILES, REFERENCE_FILE, load_manifest
from bundle.schema import FeatureSchema
from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, TAG_BUNDLE_DIGEST, TAG_BUNDLE_URI
from training.api import TrainConfig, run_training
from training.errors import TrainingError


def _cfg(csv_path: Path, root: Path, **kw) -> TrainConfig:
    base = dict(dataset=str(csv_path), target="price", fast=True, register=False, bundle_root=str(root), progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("flavor", ["xgboost", "random_forest", "linear"])
def test_fast_run_writes_a_valid_bundle_per_flavor(tmp_path: Path, csv_path: Path, frame, flavor: str) -> None:
    result = run_training(_cfg(csv_path, tmp_path / "bundles", candidates=(flavor,), log_target=True))
    manifest = load_manifest(result.bundle_dir, expected_digest=result.digest)
    assert result.bundle_dir == tmp_path / "bundles" / "housing" / manifest.model_version
    assert manifest.flavor == flavor and MODEL_FILES[flavor] in manifest.files and REFERENCE_FILE in manifest.files
    assert manifest.target == {"name": "price", "transform": "log"}
    assert set(manifest.metrics) == {"cv", "holdout"}
    assert {"rmse", "mae", "r2", "mape", "rmse_log", "r2_log"} <= set(manifest.metrics["holdout"])
    assert manifest.metrics["holdout"]["r2"] > 0.8
    assert len(manifest.data_digest) == 32 and manifest.libraries["xgboost"]
    assert manifest.created_at.endswith("Z") and manifest.model_version.startswith(manifest.created_at[:4])
    schema = FeatureSchema.from_dict(manifest.schema)
    assert schema.names == ["area", "rooms", "hood", "style", "age"]
    ref = json.loads((result.bundle_dir / REFERENCE_FILE).read_text())
    assert set(ref) >= {"numeric", "categorical", "prediction"}
    assert [row["candidate"] for row in manifest.params["leaderboard"]] == [flavor]


def test_predictions_from_the_bundle_match_the_reported_holdout(tmp_path: Path, csv_path: Path, frame) -> None:
    """Replaying the bundle (schema + model file) on its evaluation rows reproduces the holdout metrics."""
    from bundle.evaluation import EVALUATION_FILE, read_evaluation
    from bundle.metrics import holdout_metrics
    from bundle.model_files import load_forest, predict_forest
    from training.datasets import data_digest
    from training.holdout import hash_mask

    result = run_training(_cfg(csv_path, tmp_path, candidates=("random_forest",), log_target=True))
    manifest = result.manifest
    frame = pd.read_csv(csv_path)
    test = frame[hash_mask(frame, 0.2)]  # rows chosen by a hash of their content, not by the seed
    assert manifest.params["evaluation"]["digest"] == data_digest(test) and manifest.params["n_test"] == len(test)
    stored = read_evaluation(result.bundle_dir / EVALUATION_FILE)
    assert stored.y == test["price"].tolist() and len(stored.rows) == len(test)
    X = FeatureSchema.from_dict(manifest.schema).encode_frame(test)
    pred = np.exp(predict_forest(load_forest(result.bundle_dir / "forest.npz"), X))
    metrics = holdout_metrics(test["price"].to_numpy(), pred, log_target=True)
    assert metrics["rmse"] == pytest.approx(manifest.metrics["holdout"]["rmse"], rel=1e-9)


def test_winner_is_lowest_cv_rmse(tmp_path: Path, csv_path: Path) -> None:
    result = run_training(_cfg(csv_path, tmp_path))
    board = result.manifest.params["leaderboard"]
    assert [r["cv_rmse"] for r in board] == sorted(r["cv_rmse"] for r in board)
    assert result.manifest.flavor == board[0]["candidate"] and len(board) == 3


def test_temporal_split_holds_out_the_latest_rows(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame = frame.assign(year=np.repeat(np.arange(2000, 2012), 20))
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    result = run_training(
        _cfg(path, tmp_path / "b", candidates=("linear",), split="temporal", time_column="year", test_size=0.25)
    )
    ds = result.manifest.params["dataset"]
    assert ds["split"] == "temporal" and ds["test_from"] == "2009" and result.manifest.params["n_test"] == 60


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"candidates": ("svm",)}, "unknown candidate 'svm'"),
        ({"split": "weekly"}, "unknown split 'weekly'"),
        ({"cv_folds": 1}, "cv_folds must be at least 2"),
        ({"test_size": 1.5}, "test_size must be between 0 and 1"),
        ({"split": "temporal"}, "needs --time-column"),
        ({"split": "temporal", "time_column": "when"}, "time column 'when' not found"),
        ({"target": "nope"}, "target column 'nope' not found"),
        ({"impute": "mode"}, "unknown impute strategy"),
    ],
)
def test_config_errors(tmp_path: Path, csv_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        run_training(_cfg(csv_path, tmp_path / "b", **overrides))
    assert not (tmp_path / "b").exists()


def test_log_of_non_positive_target_is_refused(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "neg.csv"
    frame.assign(price=frame["price"] - frame["price"].median()).to_csv(path, index=False)
    with pytest.raises(TrainingError, match="cannot log-transform"):
        run_training(_cfg(path, tmp_path / "b", log_target=True))


def test_too_few_rows(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "small.csv"
    frame.head(8).to_csv(path, index=False)
    with pytest.raises(TrainingError, match="only 8 usable rows"):
        run_training(_cfg(path, tmp_path / "b"))


def test_embedded_registry_aliases(housing_home: Path, csv_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded default (sqlite MLflow, local bundles): champion only on the first version."""
    from mlflow import MlflowClient

    monkeypatch.chdir(housing_home.parent)
    cfg = TrainConfig(dataset=str(csv_path), target="price", fast=True, candidates=("linear",), progress=False)
    first = run_training(cfg)
    second = run_training(cfg)
    assert first.aliases == [ALIAS_CHALLENGER, ALIAS_CHAMPION] and second.aliases == [ALIAS_CHALLENGER]
    assert Path(first.bundle_uri).is_relative_to(housing_home / "bundles")
    client = MlflowClient(f"sqlite:///{housing_home / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("housing", ALIAS_CHAMPION).version) == first.model_version
    mv = client.get_model_version_by_alias("housing", ALIAS_CHALLENGER)
    assert str(mv.version) == second.model_version
    assert mv.tags[TAG_BUNDLE_URI] == second.bundle_uri and mv.tags[TAG_BUNDLE_DIGEST] == second.digest
    artifacts = {a.path for a in client.list_artifacts(second.run_id, "plots")}
    assert artifacts == {"plots/residuals.png", "plots/predicted_vs_actual.png", "plots/feature_importance.png"}
    model = {a.path for a in client.list_artifacts(second.run_id, "model")}
    assert {"model/MLmodel", "model/artifacts"} <= model  # the pyfunc model, the bundle as its artifact
    run = client.get_run(second.run_id)
    assert run.data.metrics["holdout_rmse"] == pytest.approx(second.manifest.metrics["holdout"]["rmse"])
    assert run.data.params["bundle_digest"] == second.digest


def test_unreachable_mlflow_fails_before_training(
    housing_home: Path, csv_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    cfg = TrainConfig(dataset=str(csv_path), target="price", fast=True, progress=False)
    with pytest.raises(TrainingError, match=r"MLflow tracking server http://127.0.0.1:9 unreachable"):
        run_training(cfg)
    assert not (housing_home / "bundles").exists()


def test_registration_failure_removes_the_bundle(
    housing_home: Path, csv_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.lifecycle import Registry

    def boom(self, *args, **kwargs):
        raise TrainingError("MLflow registration failed: boom")

    monkeypatch.setattr(Registry, "register", boom)
    cfg = TrainConfig(dataset=str(csv_path), target="price", fast=True, candidates=("linear",), progress=False)
    with pytest.raises(TrainingError, match="boom"):
        run_training(cfg)
    assert not any((housing_home / "bundles").rglob("bundle.json"))


def test_optuna_search(tmp_path: Path, csv_path: Path) -> None:
    from training.candidates import default_params

    result = run_training(_cfg(csv_path, tmp_path, candidates=("xgboost",), optuna_trials=2))
    params = result.manifest.params
    assert params["optuna_trials"] == 2 and result.manifest.flavor == "xgboost"
    assert params["model"] != default_params("xgboost", fast=True)
    assert 60 <= params["model"]["n_estimators"] <= 200


def test_exact_bundle_uri_is_used_and_never_overwritten(tmp_path: Path, csv_path: Path) -> None:
    dest = tmp_path / "isvc" / "housing" / "1"
    result = run_training(_cfg(csv_path, tmp_path / "bundles", candidates=("linear",), bundle_uri=f"file://{dest}"))
    assert result.bundle_uri == str(dest) and result.bundle_dir == dest
    before = (dest / "bundle.json").read_bytes()
    with pytest.raises(TrainingError, match="already exists"):
        run_training(_cfg(csv_path, tmp_path / "bundles", candidates=("linear",), bundle_uri=str(dest)))
    assert (dest / "bundle.json").read_bytes() == before
    load_manifest(dest, expected_digest=result.digest)
