"""Candidate models, their fixed defaults, fast (smoke-test) settings and Optuna search spaces.

The fixed defaults were tuned on ames and boston with the documented split (random, 20 %
holdout, seed 42); ``--trials N`` replaces them by an Optuna TPE search (N trials per
candidate, scored by CV RMSE on the training split). The linear candidate tunes its own
regularisation strength internally (RidgeCV, efficient leave-one-out), so it takes no trials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from training.errors import TrainingError

CANDIDATES = ("linear", "random_forest", "xgboost")

DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"alphas": [float(a) for a in np.logspace(-3, 4, 29)]},
    "random_forest": {"n_estimators": 250, "max_features": 0.33, "min_samples_leaf": 1, "max_depth": None},
    "xgboost": {
        "n_estimators": 1200,
        "learning_rate": 0.03,
        "max_depth": 4,
        "min_child_weight": 1.0,
        "subsample": 0.7,
        "colsample_bytree": 0.5,
        "reg_lambda": 1.0,
        "reg_alpha": 0.0,
    },
}
FAST: dict[str, dict[str, Any]] = {
    "linear": DEFAULTS["linear"],
    "random_forest": {"n_estimators": 25, "max_features": 0.5, "min_samples_leaf": 2, "max_depth": 12},
    "xgboost": {**DEFAULTS["xgboost"], "n_estimators": 120, "learning_rate": 0.15},
}


def default_params(name: str, fast: bool = False) -> dict[str, Any]:
    check_names([name])
    return dict((FAST if fast else DEFAULTS)[name])


def check_names(names: tuple[str, ...] | list[str]) -> None:
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown or not names:
        raise TrainingError(
            f"unknown candidate {unknown[0] if unknown else '(none)'!r}: expected some of {', '.join(CANDIDATES)}"
        )


def make_model(name: str, params: dict[str, Any], seed: int = 42, n_jobs: int = 2) -> Any:
    """A fresh, unfitted estimator for a candidate."""
    if name == "linear":
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        return Pipeline([("scale", StandardScaler()), ("model", RidgeCV(alphas=params["alphas"]))])
    if name == "random_forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(random_state=seed, n_jobs=n_jobs, **params)
    if name == "xgboost":
        from xgboost import XGBRegressor

        return XGBRegressor(
            objective="reg:squarederror", tree_method="hist", random_state=seed, n_jobs=n_jobs, **params
        )
    raise TrainingError(f"unknown candidate {name!r}")


def suggest(name: str, trial: Any, fast: bool = False) -> dict[str, Any]:
    """Optuna search space for a candidate (None for linear: it tunes itself)."""
    if name == "random_forest":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 20, 60)
            if fast
            else trial.suggest_int("n_estimators", 150, 500),
            "max_features": trial.suggest_float("max_features", 0.2, 1.0),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 8),
            "max_depth": trial.suggest_categorical("max_depth", [None, 8, 12, 20]),
        }
    if name == "xgboost":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 60, 200)
            if fast
            else trial.suggest_int("n_estimators", 400, 2000),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "max_depth": trial.suggest_int("max_depth", 2, 7),
            "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 10.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
            "reg_alpha": trial.suggest_float("reg_alpha", 1e-4, 1.0, log=True),
        }
    return default_params(name, fast)


Fold = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # X_fit, y_fit, X_val, y_val


def cross_validate(
    name: str,
    params: dict[str, Any],
    folds: list[Fold],
    seed: int = 42,
    n_jobs: int = 2,
    on_fold: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """K-fold CV on pre-encoded folds; RMSE/MAE/R² on the model's (transformed) scale.

    Each fold's preprocessing was fitted on that fold's training part only (see
    ``training.pipeline.make_folds``), so CV scores the whole pipeline, not just the model.
    """
    from bundle.metrics import regression_metrics

    scores, truth, preds = [], [], []
    for X_fit, y_fit, X_val, y_val in folds:
        model = make_model(name, params, seed, n_jobs).fit(X_fit, y_fit)
        pred = model.predict(X_val)
        truth.append(y_val)
        preds.append(pred)
        scores.append(float(np.sqrt(np.mean((pred - y_val) ** 2))))
        if on_fold:
            on_fold()
    y_all, p_all = np.concatenate(truth), np.concatenate(preds)
    overall = regression_metrics(y_all, p_all, mape=False)
    return {**overall, "rmse_std": float(np.std(scores)), "fold_rmse": scores, "oof": (y_all, p_all)}


def importances(name: str, model: Any, X: np.ndarray) -> np.ndarray:
    """Per-feature importance (normalised to sum 1) for the plots and the manifest."""
    if name == "linear":
        from bundle.model_files import fold_linear

        _, coef = fold_linear(model)
        raw = np.abs(coef) * X.std(axis=0)
    elif name == "xgboost":
        scores = model.get_booster().get_score(importance_type="gain")
        raw = np.array([scores.get(f"f{j}", 0.0) for j in range(X.shape[1])], dtype=np.float64)
    else:
        raw = np.asarray(model.feature_importances_, dtype=np.float64)
    total = raw.sum()
    return raw / total if total > 0 else raw
