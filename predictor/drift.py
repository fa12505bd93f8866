"""Drift of served traffic against the bundle's training distribution (``reference.json``).

A :class:`DriftWindow` keeps the last ``size`` served rows (encoded) and predictions; at scrape
time :class:`DriftCollector` scores each feature (and the predictions) with a sample-size
corrected PSI and exports ``housing_drift_psi`` by ``feature`` (``feature="__prediction__"`` for
the predictions), ``housing_drift_score`` (the largest feature PSI) and
``housing_drift_window_rows``. Nothing is computed per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from bundle.reference import PSI_EPS as EPS
from bundle.reference import psi
from bundle.schema import NUMERIC, FeatureSchema
from predictor.series import DRIFT_PSI, DRIFT_SCORE, DRIFT_WINDOW_ROWS, LABELS, PREDICTION_FEATURE

#: Rows a drift window needs before drift is reported: below it, sampling noise dominates PSI.
DRIFT_MIN_ROWS = 100


def psi_from_counts(expected: np.ndarray, counts: np.ndarray) -> float:
    """PSI of observed bin ``counts`` against ``expected`` proportions, corrected for sample size.

    A finite sample of the training distribution itself has PSI ≈ (k − 1)/m (k occupied bins,
    m rows), and an empty bin with a small expected share adds a large term on its own. The
    observed shares are therefore smoothed (+½ per bin) and that bias is subtracted, so the score
    stays near 0 for traffic like the training data at any window size and grows with real shift.
    """
    e = np.asarray(expected, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)[: len(e)]
    m = float(c.sum())
    if m <= 0:
        return 0.0
    occupied = int(np.count_nonzero(e > 0))
    a = (c + 0.5) / (m + 0.5 * len(e))
    raw = psi(e, a, EPS)
    return max(raw - max(occupied - 1, 0) / m, 0.0)


class DriftWindow:
    """A ring buffer of the last ``size`` served rows (encoded) and predictions."""

    def __init__(self, schema: FeatureSchema, reference: dict[str, Any] | None, size: int = 2000) -> None:
        self.size = size
        self.schema = schema
        self.X = np.zeros((size, len(schema.features)), dtype=np.float64)
        self.y = np.zeros(size, dtype=np.float64)
        self.count = 0
        self.pos = 0
        self.lock = threading.Lock()
        self.reference = reference or {}
        self._bins: list[tuple[str, int, Any, np.ndarray]] = []  # (name, column, edges|codes, proportions)
        numeric = self.reference.get("numeric", {})
        categorical = self.reference.get("categorical", {})
        for j, feat in enumerate(schema.features):
            if feat.kind == NUMERIC and feat.name in numeric:
                ref = numeric[feat.name]
                self._bins.append(
                    (feat.name, j, np.asarray(ref["edges"], dtype=np.float64), np.asarray(ref["proportions"]))
                )
            elif feat.name in categorical:
                freqs = categorical[feat.name]["frequencies"]
                cats = list(freqs)
                codes = np.asarray([feat.categories.get(c, np.nan) for c in cats], dtype=np.float64)
                props = np.asarray([freqs[c] for c in cats] + [0.0])  # last bin: unseen
                self._bins.append((feat.name, j, codes, props))
        pred = self.reference.get("prediction")
        self._pred = (np.asarray(pred["edges"]), np.asarray(pred["proportions"])) if pred else None

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        n = len(y)
        if n >= self.size:
            X, y, n = X[-self.size :], y[-self.size :], self.size
        with self.lock:
            end = self.pos + n
            if end <= self.size:
                self.X[self.pos : end] = X
                self.y[self.pos : end] = y
            else:
                k = self.size - self.pos
                self.X[self.pos :] = X[:k]
                self.y[self.pos :] = y[:k]
                self.X[: n - k] = X[k:]
                self.y[: n - k] = y[k:]
            self.pos = end % self.size
            self.count = min(self.count + n, self.size)

    def scores(self, min_rows: int = DRIFT_MIN_ROWS) -> dict[str, float]:
        """Bias-corrected PSI per feature (and of the predictions); empty below ``min_rows``."""
        with self.lock:
            m = self.count
            if m < min_rows:
                return {}
            X = self.X[:m].copy()
            y = self.y[:m].copy()
        out: dict[str, float] = {}
        for name, j, spec, props in self._bins:
            col = X[:, j]
            if self.schema.features[j].kind == NUMERIC:
                counts = np.bincount(np.searchsorted(spec, col, side="left"), minlength=len(props))
            else:
                idx = np.full(m, len(spec))
                for k, code in enumerate(spec):
                    idx[(col == code) & (idx == len(spec))] = k
                counts = np.bincount(idx, minlength=len(props))
            out[name] = psi_from_counts(props, counts)
        if self._pred is not None:
            edges, props = self._pred
            counts = np.bincount(np.searchsorted(edges, y, side="left"), minlength=len(props))
            out[PREDICTION_FEATURE] = psi_from_counts(props, counts)
        return out


class DriftCollector:
    """Exposes drift gauges computed from the window at scrape time."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str], DriftWindow] = {}
        #: Called before the windows are read (the metrics queue flushes into them).
        self.before_collect: Callable[[], object] | None = None

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        feature = GaugeMetricFamily(
            DRIFT_PSI, "PSI of recent served rows vs training, by feature", labels=[*LABELS, "feature"]
        )
        score = GaugeMetricFamily(DRIFT_SCORE, "Largest feature PSI of recent served rows", labels=list(LABELS))
        window_rows = GaugeMetricFamily(DRIFT_WINDOW_ROWS, "Rows in the drift window", labels=list(LABELS))
        if self.before_collect is not None:
            self.before_collect()
        for (name, version), window in list(self.windows.items()):
            scores = window.scores()
            window_rows.add_metric([name, version], window.count)
            for feat, value in scores.items():
                feature.add_metric([name, version, feat], value)
            feats = [v for k, v in scores.items() if k != PREDICTION_FEATURE]
            if feats:
                score.add_metric([name, version], max(feats))
        yield feature
        yield score
        yield window_rows


_drift: DriftCollector | None = None


def drift_collector() -> DriftCollector:
    global _drift
    if _drift is None:
        _drift = DriftCollector()
        REGISTRY.register(_drift)
    return _drift
