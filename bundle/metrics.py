"""Regression metrics: RMSE, MAE, R², MAPE (price units) and their log-scale counterparts."""

from __future__ import annotations

from typing import Any

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, mape: bool = True) -> dict[str, float]:
    """RMSE, MAE, R² (and MAPE in percent when ``mape``) of predictions on one scale."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    err = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    out = {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else 0.0,
    }
    nonzero = y_true != 0
    if mape and nonzero.any():  # MAPE is undefined (and omitted) when every target is 0
        out["mape"] = float(np.mean(np.abs(err[nonzero] / y_true[nonzero])) * 100)
    return out


def holdout_metrics(y_price: np.ndarray, pred_price: np.ndarray, log_target: bool) -> dict[str, Any]:
    """Holdout metrics in price units, plus ``*_log`` on the log scale when the target is logged."""
    out: dict[str, Any] = regression_metrics(y_price, pred_price)
    if log_target:
        logged = regression_metrics(np.log(y_price), np.log(np.maximum(pred_price, 1e-12)), mape=False)
        out.update({f"{k}_log": v for k, v in logged.items()})
    return out
