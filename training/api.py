"""Public training API: the configuration in, the published bundle out.

``run_training`` is what ``python -m training``, ``housing train``, the demo and the tests call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle.manifest import Manifest
from common.config import DEFAULT_MODEL_NAME

CANDIDATES = ("linear", "random_forest", "xgboost")


@dataclass
class TrainConfig:
    """Everything one training run needs; flags and environment fill it."""

    dataset: str = "ames"  # ames | boston | a CSV/Parquet path or s3:// URI
    target: str | None = None  # required for CSV/Parquet; ames/boston know theirs
    candidates: tuple[str, ...] = CANDIDATES
    cv_folds: int = 5
    split: str = "hash"  # hash (stable evaluation rows) | random (by seed) | temporal
    time_column: str | None = None  # for split=temporal (ames: Year_Sold)
    test_size: float = 0.2
    seed: int = 42
    optuna_trials: int = 0  # 0 = no search, fixed well-chosen hyper-parameters
    impute: str = "median"  # median | mean | most_frequent | constant
    log_target: bool | None = None  # None = dataset default (ames: log price)
    model_name: str = DEFAULT_MODEL_NAME
    bundle_root: str | None = None  # override settings.bundle_root (dir or s3://bucket/prefix)
    bundle_uri: str | None = None  # exact destination instead of <root>/<model>/<version> (must not exist)
    register: bool = True  # log the run and register the version in MLflow
    fast: bool = False  # small, quick configurations (tests, smoke runs)
    progress: bool = True
    n_jobs: int | None = None  # threads for random forest / xgboost (None = all cores, at most 8)


@dataclass
class TrainResult:
    """What a finished training run produced."""

    bundle_uri: str  # where the bundle was published (local dir or s3://...)
    bundle_dir: Path | None  # the bundle's directory when published to one (None for s3://)
    digest: str  # sha256 of bundle.json
    manifest: Manifest
    model_version: str | None = None  # MLflow registered model version
    run_id: str | None = None
    aliases: list[str] = field(default_factory=list)
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    # the fitted winner (scikit-learn/xgboost object), in memory only: the bundle never holds a pickle;
    # the benchmark hands it to the peers that need one (KServe's sklearnserver)
    estimator: Any = field(default=None, repr=False)


def run_training(cfg: TrainConfig) -> TrainResult:  # pragma: no cover - replaced by the implementation
    """Train candidates, pick the winner by CV RMSE, publish the bundle, register it."""
    from training.pipeline import run

    return run(cfg)
