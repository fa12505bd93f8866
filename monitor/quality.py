"""``housing quality``: live accuracy per model version — RMSE, MAE, MAPE and R² of the labelled rows
(the payload log joined with ground truth by ``housing feedback``) answered within a time window, with
their count and a 95 % bootstrap confidence interval of the RMSE and the MAE."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from monitor.store import Store, labelled_frame
from predictor.observe.payload_rows import ACTUAL, MODEL_VERSION, PREDICTION, TIME

#: Bootstrap resamples of the confidence intervals (seeded: the same rows give the same interval).
RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class VersionQuality:
    """One model version's live accuracy."""

    model_version: str
    count: int
    rmse: float
    mae: float
    mape: float
    r2: float
    rmse_ci: tuple[float, float]
    mae_ci: tuple[float, float]
    first: str
    last: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metrics(actual: np.ndarray, predicted: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """RMSE, MAE, MAPE (of rows whose actual is not 0), R² and the bootstrap intervals of RMSE and MAE."""
    err = predicted - actual
    n = len(err)
    nonzero = actual != 0
    ss_tot = float(((actual - actual.mean()) ** 2).sum())
    out = {
        "count": n,
        "rmse": float(np.sqrt((err**2).mean())),
        "mae": float(np.abs(err).mean()),
        "mape": float(np.abs(err[nonzero] / actual[nonzero]).mean()) if nonzero.any() else float("nan"),
        "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
    }
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(RESAMPLES, n))
    sq, ab = (err**2)[idx].mean(axis=1), np.abs(err)[idx].mean(axis=1)
    lo, hi = (1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100
    out["rmse_ci"] = (float(np.sqrt(np.percentile(sq, lo))), float(np.sqrt(np.percentile(sq, hi))))
    out["mae_ci"] = (float(np.percentile(ab, lo)), float(np.percentile(ab, hi)))
    return out


def window_rows(frame: Any, since: dt.datetime | None, until: dt.datetime | None) -> Any:
    """The labelled rows answered in [since, until)."""
    if frame.empty:
        return frame
    keep = np.ones(len(frame), dtype=bool)
    if since is not None:
        keep &= (frame[TIME] >= since).to_numpy()
    if until is not None:
        keep &= (frame[TIME] < until).to_numpy()
    return frame[keep]


def quality(
    store: Store, since: dt.datetime | None = None, until: dt.datetime | None = None, versions: list[str] | None = None
) -> list[VersionQuality]:
    """Each version's live accuracy over the window (versions without labelled rows are left out)."""
    frame = window_rows(labelled_frame(store), since, until)
    out = []
    if frame.empty:
        return out
    for version, group in frame.groupby(MODEL_VERSION):
        if versions and version not in versions:
            continue
        m = metrics(group[ACTUAL].to_numpy(dtype=float), group[PREDICTION].to_numpy(dtype=float))
        times = group[TIME]
        out.append(VersionQuality(str(version), **m, first=str(times.min()), last=str(times.max())))
    return out


def table(rows: list[VersionQuality]) -> list[str]:
    """The human table's lines."""
    head = f"{'model_version':<32} {'n':>6} {'RMSE':>10} {'95% CI':>21} {'MAE':>10} {'MAPE':>7} {'R²':>7}"
    lines = [head, "-" * len(head)]
    for q in rows:
        ci = f"[{q.rmse_ci[0]:,.3f}, {q.rmse_ci[1]:,.3f}]"
        lines.append(
            f"{q.model_version:<32} {q.count:>6,} {q.rmse:>10,.3f} {ci:>21} {q.mae:>10,.3f} {q.mape:>7.2%} {q.r2:>7.3f}"
        )
    return lines
