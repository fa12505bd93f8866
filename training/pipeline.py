"""The training run: data → split → features → candidates (CV) → winner → bundle → publish.

:func:`run` chains the stages — :func:`preflight`, :func:`load_data`, :func:`select_model`,
:func:`evaluate`, :func:`write_staging_bundle`, :func:`publish_and_register` — each a function
with its inputs and outputs spelled out (:class:`Data`, :class:`Selection`, :class:`Evaluation`).

Order matters for "nothing half-done": MLflow and S3 are checked *before* any training, the
bundle is uploaded with ``bundle.json`` last and verified from the destination, and only then
is it registered; a failed registration removes the uploaded bundle again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bundle.evaluation import EVALUATION_FILE
from bundle.manifest import MODEL_FILES, REFERENCE_FILE, Manifest, write_bundle
from bundle.metrics import holdout_metrics
from common.config import load_settings
from training import candidates as cands
from training import storage
from training.api import TrainConfig, TrainResult
from training.datasets import Dataset, load_dataset
from training.errors import TrainingError
from training.features import FittedFeatures, fit_features
from training.holdout import records, write_rows
from training.reference import reference_stats

SPLITS = ("hash", "random", "temporal")


# -- helpers ---------------------------------------------------------------------------------
def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
        disable=not enabled,
    )


def git_revision() -> str | None:
    """The git commit of the code, from GIT_REVISION or ``git rev-parse`` (None if unknown)."""
    env = os.environ.get("GIT_REVISION")
    if env:
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and len(rev) >= 7 else None


def library_versions() -> dict[str, str]:
    import sklearn
    import xgboost

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "xgboost": xgboost.__version__,
    }


def check_config(cfg: TrainConfig) -> None:
    cands.check_names(list(cfg.candidates))
    if cfg.split not in SPLITS:
        raise TrainingError(f"unknown split {cfg.split!r}: expected one of {', '.join(SPLITS)}")
    if not 0.0 < cfg.test_size < 1.0:
        raise TrainingError(f"test_size must be between 0 and 1 (got {cfg.test_size})")
    if cfg.cv_folds < 2:
        raise TrainingError(f"cv_folds must be at least 2 (got {cfg.cv_folds})")
    if cfg.optuna_trials < 0:
        raise TrainingError(f"trials must be 0 or more (got {cfg.optuna_trials})")
    if not cfg.model_name or "/" in cfg.model_name:
        raise TrainingError(f"invalid model name {cfg.model_name!r}")


def split_frame(ds: Dataset, cfg: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Random split (scikit-learn's train_test_split) or temporal split (latest rows held out)."""
    frame = ds.frame
    n_test = int(np.ceil(cfg.test_size * len(frame)))
    if len(frame) - n_test < max(2 * cfg.cv_folds, 10) or n_test < 2:
        raise TrainingError(
            f"dataset {ds.name} has only {len(frame)} usable rows: too few for a {cfg.test_size:.0%} holdout "
            f"and {cfg.cv_folds}-fold CV"
        )
    if cfg.split == "hash":
        from training.holdout import SELECTION, hash_mask

        mask = hash_mask(frame, cfg.test_size)
        if mask.sum() < 2 or len(frame) - mask.sum() < max(2 * cfg.cv_folds, 10):
            raise TrainingError(
                f"dataset {ds.name}: the row hash holds out {int(mask.sum())} of {len(frame)} rows; too few for "
                f"a {cfg.test_size:.0%} holdout and {cfg.cv_folds}-fold CV (try --split random)"
            )
        return frame[~mask], frame[mask], {"split": "hash", "test_size": cfg.test_size, "selection": SELECTION}
    if cfg.split == "random":
        from sklearn.model_selection import train_test_split

        train, test = train_test_split(frame, test_size=cfg.test_size, random_state=cfg.seed)
        return train, test, {"split": "random", "test_size": cfg.test_size, "seed": cfg.seed}
    column = cfg.time_column or ds.time_column
    if not column:
        raise TrainingError(f"--split temporal needs --time-column for dataset {ds.name}")
    if column not in frame.columns:
        raise TrainingError(f"time column {column!r} not found in dataset {ds.name}")
    key = frame[column]
    if not pd.api.types.is_numeric_dtype(key):
        key = pd.to_datetime(key, errors="coerce")
    if key.isna().any():
        raise TrainingError(f"time column {column!r} has missing or unparsable values")
    order = np.argsort(key.to_numpy(), kind="stable")
    train, test = frame.iloc[order[: len(frame) - n_test]], frame.iloc[order[len(frame) - n_test :]]
    info = {"split": "temporal", "time_column": column, "test_size": cfg.test_size}
    info["test_from"] = str(key.iloc[order[len(frame) - n_test]])
    return train, test, info


def make_folds(frame: pd.DataFrame, y: np.ndarray, k: int, cfg: TrainConfig) -> list[cands.Fold]:
    """K shuffled folds of the training split, each with preprocessing refitted on its own
    training part (encoder cross-fitted there, validation part encoded like serving does)."""
    from sklearn.model_selection import KFold

    folds = []
    for fit_idx, val_idx in KFold(n_splits=k, shuffle=True, random_state=cfg.seed).split(frame):
        part = fit_features(frame.iloc[fit_idx], y[fit_idx], cfg.impute, cfg.seed)
        folds.append((part.X_train, y[fit_idx], part.schema.encode_frame(frame.iloc[val_idx]), y[val_idx]))
    return folds


def _tune(
    name: str, cfg: TrainConfig, folds: list[cands.Fold], n_jobs: int, progress: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Optuna TPE search; returns the best parameters and their CV result (not recomputed)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = progress.add_task(f"optuna {name}", total=cfg.optuna_trials)
    results: dict[int, dict[str, Any]] = {}

    def objective(trial: Any) -> float:
        params = cands.suggest(name, trial, cfg.fast)
        results[trial.number] = cands.cross_validate(name, params, folds, cfg.seed, n_jobs)
        progress.advance(task)
        return results[trial.number]["rmse"]

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    study.optimize(objective, n_trials=cfg.optuna_trials)
    best = study.best_trial
    return cands.suggest(name, optuna.trial.FixedTrial(best.params), cfg.fast), results[best.number]


def _version(model_file: Path, created: datetime) -> str:
    token = hashlib.sha256(model_file.read_bytes() + uuid.uuid4().bytes).hexdigest()[:8]
    return f"{created:%Y%m%dT%H%M%SZ}-{token}"


# -- the run ---------------------------------------------------------------------------------
def _registry_step(step: Any, *args: Any) -> Any:
    """Call a registry step; its RegistryError becomes the TrainingError the CLI prints."""
    from registry.resolve import RegistryError

    try:
        return step(*args)
    except RegistryError as exc:
        raise TrainingError(str(exc)) from exc


def run_params(cfg: TrainConfig, manifest: Manifest, bundle_uri: str, digest: str) -> dict[str, Any]:
    """The MLflow run's params: how the run was configured and what it produced."""
    return {
        "dataset": cfg.dataset,
        "target": manifest.target["name"],
        "target_transform": manifest.target["transform"],
        "flavor": manifest.flavor,
        "candidates": ",".join(cfg.candidates),
        "split": cfg.split,
        "test_size": cfg.test_size,
        "seed": cfg.seed,
        "cv_folds": manifest.metrics["cv"].get("folds", cfg.cv_folds),
        "selection": manifest.params.get("selection", ""),
        "impute": cfg.impute,
        "optuna_trials": cfg.optuna_trials,
        "fast": cfg.fast,
        "data_digest": manifest.data_digest,
        "eval_rows_digest": manifest.params["evaluation"]["digest"],
        "eval_rows": manifest.params["evaluation"]["rows"],
        "bundle_uri": bundle_uri,
        "bundle_digest": digest,
        "model_version": manifest.model_version,
        "model": manifest.params.get("model", {}),
    }


def run_metrics(manifest: Manifest, leaderboard: list[dict[str, Any]]) -> dict[str, float]:
    """The MLflow run's metrics: CV and holdout of the winner, CV RMSE of every candidate."""
    metrics = {f"cv_{k}": v for k, v in manifest.metrics["cv"].items() if isinstance(v, (int, float))}
    metrics.update({f"holdout_{k}": v for k, v in manifest.metrics["holdout"].items()})
    for row in leaderboard:
        metrics[f"cv_score_{row['candidate']}"] = row["cv"]["rmse"]  # model scale
    return metrics


@dataclass
class Data:
    """The dataset split and its targets (``yt_*``: on the model's scale)."""

    ds: Dataset
    log_target: bool
    train: pd.DataFrame
    test: pd.DataFrame
    split_info: dict[str, Any]
    y_train: np.ndarray
    y_test: np.ndarray
    yt_train: np.ndarray

    @property
    def features(self) -> list[str]:
        return self.ds.features

    @property
    def kinds(self) -> dict[str, str]:
        """Each feature's kind as the schema will record it (numeric or categorical)."""
        from bundle.schema import CATEGORICAL, NUMERIC
        from training.features import is_categorical

        return {n: CATEGORICAL if is_categorical(self.ds.frame[n]) else NUMERIC for n in self.features}

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Model scale → target units."""
        return np.exp(values) if self.log_target else values


@dataclass
class Selection:
    """The fitted feature schema, the scored candidates (best first) and the refitted winner."""

    fitted: FittedFeatures
    n_folds: int
    leaderboard: list[dict[str, Any]]
    model: Any

    @property
    def best(self) -> dict[str, Any]:
        return self.leaderboard[0]

    @property
    def flavor(self) -> str:
        return self.best["candidate"]


@dataclass
class Evaluation:
    """The winner on the holdout and on the training rows as served."""

    holdout: dict[str, Any]
    pred_test: np.ndarray
    pred_train: np.ndarray
    importance: np.ndarray


def preflight(cfg: TrainConfig) -> tuple[TrainConfig, str, Any]:
    """Check the config, MLflow and the buckets before any training; returns (cfg, bundle root, registry)."""
    check_config(cfg)
    cfg = replace(cfg, candidates=tuple(dict.fromkeys(cfg.candidates)))
    if cfg.bundle_uri and not cfg.bundle_uri.startswith("s3://"):
        cfg = replace(cfg, bundle_uri=str(Path(cfg.bundle_uri.removeprefix("file://")).expanduser().resolve()))
    settings = load_settings()
    root = cfg.bundle_root or settings.bundle_root
    registry = None
    if cfg.register:
        from registry.lifecycle import Registry

        registry = Registry(settings.tracking_uri, settings.home)
        _registry_step(registry.check)
    if root.startswith("s3://"):
        storage.check_bucket(root)
    if cfg.bundle_uri:
        if cfg.bundle_uri.startswith("s3://"):
            storage.check_bucket(cfg.bundle_uri)
        storage.ensure_absent(cfg.bundle_uri)  # fail before minutes of training, not after
    return cfg, root, registry


def check_champion_schema(cfg: TrainConfig, data: Data) -> None:
    """Refuse a run whose features or target differ from the champion's under the same model name.

    Called before training and again before anything is uploaded; reads only the champion's
    ``bundle.json`` (checked against the digest the registry recorded).
    """
    from bundle.compat import SchemaShape, describe_differences, differences
    from registry.lifecycle import champion

    current = _registry_step(champion, cfg.model_name)
    if current is None or not current.bundle_uri:
        return
    theirs = SchemaShape.of_manifest(storage.read_manifest(current.bundle_uri, current.digest))
    ours = SchemaShape(data.ds.target, {n: data.kinds[n] for n in data.features})
    diffs = differences(theirs, ours)
    if diffs:
        raise TrainingError(
            describe_differences(cfg.model_name, current.version, diffs)
            + f". One registered model holds one dataset's schema: register this run under its own name, "
            f"e.g. --model-name {cfg.model_name}-{data.ds.name}"
        )


def load_data(cfg: TrainConfig) -> Data:
    """Load the dataset, choose the target scale and split it."""
    ds = load_dataset(cfg.dataset, cfg.target)
    log_target = ds.log_target if cfg.log_target is None else bool(cfg.log_target)
    if log_target and (ds.frame[ds.target] <= 0).any():
        raise TrainingError(f"target {ds.target!r} has values <= 0: cannot log-transform (use --no-log-target)")
    train, test, split_info = split_frame(ds, cfg)
    y_train = train[ds.target].to_numpy(dtype=np.float64)
    y_test = test[ds.target].to_numpy(dtype=np.float64)
    yt_train = np.log(y_train) if log_target else y_train
    return Data(ds, log_target, train, test, split_info, y_train, y_test, yt_train)


def select_model(cfg: TrainConfig, data: Data, n_jobs: int) -> Selection:
    """Fit the features, cross-validate every candidate (tuned with Optuna if asked), refit the best."""
    fitted = fit_features(data.train[data.features], data.yt_train, cfg.impute, cfg.seed, cv=5)
    n_folds = 3 if cfg.fast and cfg.cv_folds > 3 else cfg.cv_folds
    folds = make_folds(data.train[data.features], data.yt_train, n_folds, cfg)
    leaderboard: list[dict[str, Any]] = []
    with _progress(cfg.progress) as progress:
        tuned: dict[str, dict[str, Any]] = {}
        scored: dict[str, tuple[dict[str, Any], float]] = {}
        for name in cfg.candidates:
            if cfg.optuna_trials and name != "linear":
                c0 = time.perf_counter()
                tuned[name], cv = _tune(name, cfg, folds, n_jobs, progress)
                scored[name] = (cv, time.perf_counter() - c0)
            else:
                tuned[name] = cands.default_params(name, cfg.fast)
        remaining = [n for n in cfg.candidates if n not in scored]
        task = progress.add_task("cross-validating candidates", total=len(remaining) * n_folds)
        for name in remaining:
            c0 = time.perf_counter()
            cv = cands.cross_validate(name, tuned[name], folds, cfg.seed, n_jobs, lambda: progress.advance(task))
            scored[name] = (cv, time.perf_counter() - c0)
        for name in cfg.candidates:
            cv, seconds = scored[name]
            leaderboard.append({"candidate": name, "cv": cv, "params": tuned[name], "seconds": seconds})
        leaderboard.sort(key=lambda row: row["cv"]["rmse"])
        best = leaderboard[0]
        fit_task = progress.add_task(f"fitting {best['candidate']}", total=1)
        model = cands.make_model(best["candidate"], best["params"], cfg.seed, n_jobs).fit(fitted.X_train, data.yt_train)
        progress.advance(fit_task)
    return Selection(fitted, n_folds, leaderboard, model)


def evaluate(data: Data, selection: Selection) -> Evaluation:
    """Holdout metrics, and predictions on the training rows encoded exactly as the predictor would."""
    schema, model = selection.fitted.schema, selection.model
    pred_test = data.inverse(model.predict(schema.encode_frame(data.test[data.features])))
    holdout = holdout_metrics(data.y_test, pred_test, data.log_target)
    pred_train = data.inverse(model.predict(schema.encode_frame(data.train[data.features])))
    importance = cands.importances(selection.flavor, model, selection.fitted.X_train)
    return Evaluation(holdout, pred_test, pred_train, importance)


def write_staging_bundle(
    cfg: TrainConfig, data: Data, selection: Selection, evaluation: Evaluation
) -> tuple[Path, Manifest, str]:
    """Write the model file, ``reference.json`` and ``bundle.json`` to a temporary directory.

    Returns the directory, the manifest and the bundle digest.
    """
    from bundle import model_files as export

    schema, model, flavor, best = selection.fitted.schema, selection.model, selection.flavor, selection.best
    created = datetime.now(UTC).replace(microsecond=0)
    staging = Path(tempfile.mkdtemp(prefix="housing-bundle-"))
    model_path = staging / MODEL_FILES[flavor]
    if flavor == "xgboost":
        model_info = export.export_xgboost(model, model_path)
    elif flavor == "random_forest":
        model_info = export.export_forest(model, model_path)
    else:
        model_info = export.export_linear(model, model_path)
        model_info["alpha"] = float(model.steps[-1][1].alpha_)
    reference = reference_stats(data.train[data.features], schema, selection.fitted.fill, evaluation.pred_train)
    (staging / REFERENCE_FILE).write_text(json.dumps(reference, allow_nan=False))
    evaluation_rows = write_rows(staging / EVALUATION_FILE, data.test, data.features, data.ds.target)
    version = _version(model_path, created)
    # CV metrics in the same shape as the holdout ones (price units, *_log on the log scale)
    log_target, n_folds, ds = data.log_target, selection.n_folds, data.ds
    oof_true, oof_pred = best["cv"]["oof"]
    cv_best: dict[str, Any] = holdout_metrics(data.inverse(oof_true), data.inverse(oof_pred), log_target)
    cv_best["rmse_std_log" if log_target else "rmse_std"] = best["cv"]["rmse_std"]
    cv_best["folds"] = n_folds
    manifest = Manifest(
        model_name=cfg.model_name,
        model_version=version,
        flavor=flavor,
        target={"name": ds.target, "transform": "log" if log_target else "none"},
        schema=schema.to_dict(),
        metrics={"cv": cv_best, "holdout": evaluation.holdout},
        data_digest=ds.digest,
        libraries=library_versions(),
        created_at=created.isoformat().replace("+00:00", "Z"),
        git_revision=git_revision(),
        params={
            "model": best["params"],
            "model_info": model_info,
            "dataset": {
                "name": ds.name,
                "source": ds.source,
                "rows": len(ds.frame),
                "notes": ds.notes,
                **data.split_info,
            },
            "evaluation": evaluation_rows,
            "n_train": len(data.train),
            "n_test": len(data.test),
            "preprocessing": {"impute": cfg.impute, "categorical_encoding": "sklearn TargetEncoder (smooth=auto)"},
            "optuna_trials": cfg.optuna_trials,
            "selection": f"lowest {n_folds}-fold CV RMSE on the {'log' if log_target else 'price'} scale",
            "fast": cfg.fast,
            "importance": {n: float(v) for n, v in zip(schema.names, evaluation.importance, strict=True)},
            "leaderboard": [
                {
                    "candidate": row["candidate"],
                    "cv_rmse": row["cv"]["rmse"],
                    "cv_rmse_std": row["cv"]["rmse_std"],
                    "cv_r2": row["cv"]["r2"],
                    "seconds": round(row["seconds"], 3),
                    "params": row["params"],
                }
                for row in selection.leaderboard
            ],
        },
    )
    return staging, manifest, write_bundle(staging, manifest)


def datasets(data: Data) -> Any:
    """What the MLflow run logs about its data: the whole dataset and the evaluation rows."""
    from registry.lifecycle import LoggedData
    from training.datasets import data_digest

    ds = data.ds
    return LoggedData(
        name=ds.name,
        source=ds.source,
        frame=ds.frame,
        target=ds.target,
        digest=ds.digest,
        evaluation=data.test,
        evaluation_digest=data_digest(data.test),
        example=records(data.test[data.features].head(5)),
    )


def publish_and_register(
    cfg: TrainConfig,
    root: str,
    registry: Any,
    staging: Path,
    manifest: Manifest,
    digest: str,
    data: Data,
    selection: Selection,
    evaluation: Evaluation,
) -> TrainResult:
    """Upload the bundle (``bundle.json`` last, verified), then register it; undo the upload if registration fails."""
    uri = cfg.bundle_uri or storage.bundle_uri(root, cfg.model_name, manifest.model_version)
    try:
        if registry is not None:
            _registry_step(registry.check)  # still reachable? fail before uploading anything
            check_champion_schema(cfg, data)  # the champion may have changed while we trained
        storage.publish(staging, uri, digest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result = TrainResult(
        bundle_uri=uri,
        bundle_dir=None if uri.startswith("s3://") else Path(uri),
        digest=digest,
        manifest=manifest,
        leaderboard=manifest.params["leaderboard"],
        estimator=selection.model,
    )
    plots_dir = staging.parent / f"{staging.name}-plots"
    try:
        if registry is not None:
            from training.plots import write_plots

            schema = selection.fitted.schema
            plots = write_plots(
                plots_dir, data.y_test, evaluation.pred_test, schema.names, evaluation.importance, data.ds.target
            )
            try:
                reg = _registry_step(
                    registry.register,
                    cfg.model_name,
                    manifest,
                    staging,
                    uri,
                    digest,
                    plots,
                    run_params(cfg, manifest, uri, digest),
                    run_metrics(manifest, selection.leaderboard),
                    f"{manifest.flavor} on {cfg.dataset}; bundle {uri}",
                    datasets(data),
                )
            except BaseException:
                storage.unpublish(uri)
                shutil.rmtree(staging, ignore_errors=True)
                raise
            result.model_version, result.run_id, result.aliases = reg.version, reg.run_id, reg.aliases
    finally:  # the bundle lives at its destination now; no local copy stays behind
        shutil.rmtree(plots_dir, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return result


def run(cfg: TrainConfig) -> TrainResult:
    """Train, evaluate, write, publish and (optionally) register one bundle."""
    started = time.perf_counter()
    cfg, root, registry = preflight(cfg)
    n_jobs = cfg.n_jobs or min(os.cpu_count() or 1, 8)
    data = load_data(cfg)
    if registry is not None:
        check_champion_schema(cfg, data)  # before minutes of training, not after
    timings: dict[str, float] = {"prepare": time.perf_counter() - started}
    t0 = time.perf_counter()
    selection = select_model(cfg, data, n_jobs)  # feature fitting and CV folds included
    timings["train"] = time.perf_counter() - t0
    evaluation = evaluate(data, selection)
    staging, manifest, digest = write_staging_bundle(cfg, data, selection, evaluation)
    result = publish_and_register(cfg, root, registry, staging, manifest, digest, data, selection, evaluation)
    timings["total"] = time.perf_counter() - started
    result.timings = timings
    return result
