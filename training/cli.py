"""``housing train`` / ``python -m training``: flags in, metrics table and bundle location out."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from common.config import DEFAULT_MODEL_NAME, load_settings
from training.api import CANDIDATES, TrainConfig, TrainResult
from training.errors import TrainingError

EXIT_ERROR = 2


def train(
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="ames | boston | a .csv/.parquet path or s3:// URI.")
    ] = "ames",
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Column to predict (required for CSV/Parquet).")
    ] = None,
    candidates: Annotated[
        str, typer.Option("--candidates", "-c", help="Comma-separated candidates to fit and compare.")
    ] = ",".join(CANDIDATES),
    cv_folds: Annotated[int, typer.Option("--cv-folds", "-k", help="K-fold CV on the training split.")] = 5,
    split: Annotated[
        str,
        typer.Option(
            help="hash (hold out rows by a hash of their content: the same rows for every version), "
            "random (train_test_split with --seed) or temporal (hold out the latest rows)."
        ),
    ] = "hash",
    time_column: Annotated[
        str | None, typer.Option(help="Column ordering rows for --split temporal (ames: Year_Sold).")
    ] = None,
    test_size: Annotated[float, typer.Option(help="Holdout share of the rows.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed (split, folds, models).")] = 42,
    trials: Annotated[
        int, typer.Option("--trials", help="Optuna trials per tree candidate (0 = tuned fixed defaults).")
    ] = 0,
    impute: Annotated[
        str, typer.Option(help="Missing numeric values: median | mean | most_frequent | constant.")
    ] = "median",
    log_target: Annotated[
        bool | None,
        typer.Option("--log-target/--no-log-target", help="Train on log(target). Default: ames yes, others no."),
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(
            help="Registered model name and bundle folder; one name per dataset, e.g. housing-ames, "
            f"housing-boston [default: HOUSING_MODEL_NAME or {DEFAULT_MODEL_NAME}]."
        ),
    ] = None,
    bundle_root: Annotated[
        str | None,
        typer.Option(
            help="Where bundles go: a directory or s3://bucket/prefix (default: HOUSING_BUNDLE_ROOT).",
        ),
    ] = None,
    bundle_uri: Annotated[
        str | None,
        typer.Option(
            envvar="HOUSING_BUNDLE_URI",
            help="Exact bundle destination (a directory or s3://bucket/key), e.g. the InferenceService's "
            "storageUri; must not exist yet. Default: <bundle root>/<model>/<version>.",
        ),
    ] = None,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Log the run and register the version in MLflow.")
    ] = True,
    fast: Annotated[bool, typer.Option("--fast", help="Small models and 3 folds: a smoke run in seconds.")] = False,
    n_jobs: Annotated[int | None, typer.Option(help="Threads for the tree models (default: all cores).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of tables.")] = False,
) -> None:
    """Train housing-price models, publish the best bundle, register it.

    Fits the candidates with k-fold CV on the training split, keeps the one
    with the lowest CV RMSE, reports holdout RMSE/MAE/R²/MAPE, writes the
    bundle (bundle.json, model file, drift reference) to the bundle root and
    registers an MLflow model version with alias `challenger` (and
    `champion` when the model has none yet). One registered model name
    holds one dataset's features: a run whose target or features differ
    from the champion's is refused before anything is written.

    Environment: MLFLOW_TRACKING_URI, AWS_ENDPOINT_URL (or
    MLFLOW_S3_ENDPOINT_URL), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    HOUSING_BUNDLE_ROOT. With none set, MLflow lives in ./.housing/mlflow.db
    and bundles under ./.housing/bundles.

    Examples:

      housing train                          # ames, 3 candidates, 5-fold CV

      housing train -d ames --model-name housing-ames       # one registered

      housing train -d boston --model-name housing-boston   # model per dataset

      housing train -d boston --fast --no-register     # smoke run

      housing train -c xgboost --trials 30   # Optuna search, xgboost only

      housing train --split temporal         # ames: latest sales held out

      housing train -d data.csv -t price --bundle-root s3://models

    Exit status 0 on success; 2 when data, configuration, S3 or MLflow are
    at fault (one line on stderr; nothing half-published).
    """
    cfg = TrainConfig(
        dataset=dataset,
        target=target,
        candidates=tuple(c.strip() for c in candidates.split(",") if c.strip()),
        cv_folds=cv_folds,
        split=split,
        time_column=time_column,
        test_size=test_size,
        seed=seed,
        optuna_trials=trials,
        impute=impute,
        log_target=log_target,
        model_name=model_name or load_settings().model_name,
        bundle_root=bundle_root,
        bundle_uri=bundle_uri,
        register=register,
        fast=fast,
        progress=progress and not as_json and sys.stderr.isatty(),
        n_jobs=n_jobs,
    )
    from training.api import run_training

    try:
        result = run_training(cfg)
    except TrainingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    _record_pin(result)
    if as_json:
        typer.echo(json.dumps(summary(result)))
    else:
        print_summary(result)


def _record_pin(result: TrainResult) -> None:
    """The chart's install Job (``HOUSING_PIN_CONFIGMAP`` set): the registered digest into the release's
    ConfigMap, where the predictor pins it (:mod:`training.pin`). Exit 2 when that fails: the bundle is
    registered, but no predictor pod will serve it until the digest is recorded."""
    from training.pin import PinError, pin_target, record_pin

    try:
        target = pin_target()
        if target is None:
            return
        if not result.model_version:
            raise PinError(f"{target[0]}: only a registered version is pinned, and this run registered none")
        record_pin(result.bundle_uri, result.digest, *target, say=lambda line: typer.echo(line, err=True))
    except PinError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None


def summary(result: TrainResult) -> dict:
    """Machine-readable summary of a run (``--json``)."""
    m = result.manifest
    return {
        "bundle_uri": result.bundle_uri,
        "bundle_digest": result.digest,
        "model_name": m.model_name,
        "bundle_version": m.model_version,
        "flavor": m.flavor,
        "target": m.target,
        "metrics": m.metrics,
        "registered_version": result.model_version,
        "aliases": result.aliases,
        "run_id": result.run_id,
        "leaderboard": [{k: v for k, v in row.items() if k != "params"} for row in result.leaderboard],
        "timings": result.timings,
    }


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def print_summary(result: TrainResult) -> None:
    """The rich tables: candidates by CV RMSE, holdout metrics, where everything went."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    m = result.manifest
    log = m.target.get("transform") == "log"
    scale = f"log({m.target['name']})" if log else m.target["name"]
    folds = m.metrics["cv"].get("folds", "?")
    board = Table(title=f"Candidates — {folds}-fold CV on the training split, RMSE of {scale}")
    for col in ("candidate", "CV RMSE", "± std", "CV R²", "seconds", ""):
        board.add_column(col, justify="left" if col == "candidate" else "right")
    for row in result.leaderboard:
        winner = "★ winner" if row["candidate"] == m.flavor else ""
        board.add_row(
            row["candidate"],
            f"{row['cv_rmse']:.4f}",
            f"{row['cv_rmse_std']:.4f}",
            f"{row['cv_r2']:.4f}",
            f"{row['seconds']:.1f}",
            winner,
        )
    console.print(board)

    hold = Table(title=f"{m.flavor} — holdout ({m.params.get('n_test', '?')} rows) and CV (out-of-fold)")
    hold.add_column("split")
    hold.add_column("scale")
    for col in ("RMSE", "MAE", "R²", "MAPE %"):
        hold.add_column(col, justify="right")
    for split in ("holdout", "cv"):
        h = m.metrics.get(split, {})
        if "rmse" not in h:
            continue
        mape = f"{h['mape']:.2f}" if "mape" in h else ""
        hold.add_row(split, m.target["name"], _num(h["rmse"]), _num(h["mae"]), f"{h['r2']:.4f}", mape)
        if log and "rmse_log" in h:
            hold.add_row(split, scale, f"{h['rmse_log']:.4f}", f"{h['mae_log']:.4f}", f"{h['r2_log']:.4f}", "")
    console.print(hold)
    console.print(f"bundle   {result.bundle_uri}")
    console.print(f"version  {m.model_version}")
    console.print(f"digest   {result.digest}")
    if result.model_version:
        aliases = ", ".join(result.aliases) or "none"
        console.print(f"MLflow   model {m.model_name!r} version {result.model_version} (aliases: {aliases})")
    else:
        console.print("MLflow   not registered (--no-register)")
    if result.timings:
        console.print(f"time     {result.timings.get('total', 0.0):.1f} s")
