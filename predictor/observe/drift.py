"""Drift of served traffic against the bundle's training distribution (``reference.json``).

A :class:`DriftWindow` keeps the last ``size`` served rows (encoded) and predictions; at scrape
time :class:`DriftCollector` scores each feature (and the predictions) with a sample-size
corrected PSI and exports ``housing_drift_psi`` by ``feature`` (``feature="__prediction__"`` for
the predictions), ``housing_drift_score`` (the largest feature PSI) and
``housing_drift_window_rows``. Nothing is computed per request.

With several processes (``--workers`` > 1, :mod:`predictor.observe.multiproc`) each window lives in a
file of the shared metrics directory and a scrape scores the union of every live process's
window: a PSI is not additive, so per-process gauges could not be merged into one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from bundle.reference import PSI_EPS as EPS
from bundle.reference import psi
from bundle.schema import NUMERIC, FeatureSchema
from common.series import DRIFT_PSI, DRIFT_SCORE, DRIFT_WINDOW_ROWS, LABELS, PREDICTION_FEATURE

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


def window_path(directory: Path, labels: tuple[str, str], pid: int | None = None) -> Path:
    """The file of one process's window for one (model_name, model_version)."""
    key = hashlib.sha256("\0".join(labels).encode()).hexdigest()[:16]
    return directory / f"drift_{key}_{os.getpid() if pid is None else pid}.npy"


def remove_windows_of(directory: Path, pid: int) -> None:
    """Drop a dead process's windows (its rows are no longer recent traffic)."""
    for path in directory.glob(f"drift_*_{pid}.npy"):
        path.unlink(missing_ok=True)


class DriftWindow:
    """A ring buffer of the last ``size`` served rows (encoded) and predictions.

    With ``path`` the buffer is a memory-mapped ``.npy`` file (row 0 holds the row count) that
    other processes read with :func:`read_window`.
    """

    def __init__(
        self, schema: FeatureSchema, reference: dict[str, Any] | None, size: int = 2000, path: Path | None = None
    ) -> None:
        self.size = size
        self.schema = schema
        n = len(schema.features)
        self.path = path
        self._header: np.ndarray | None = None
        if path is None:
            self.X = np.zeros((size, n), dtype=np.float64)
            self.y = np.zeros(size, dtype=np.float64)
        else:
            mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(size + 1, n + 1))
            buf = mapped.view(np.ndarray)  # same memory, without np.memmap's per-slice overhead
            self._header, self.X, self.y = buf[0], buf[1:, :n], buf[1:, n]
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
            if self._header is not None:
                self._header[0] = self.count  # after the rows: a reader never counts unwritten ones

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the rows (encoded) and predictions in the window."""
        with self.lock:
            m = self.count
            return self.X[:m].copy(), self.y[:m].copy()

    def scores(self, min_rows: int = DRIFT_MIN_ROWS) -> dict[str, float]:
        """Bias-corrected PSI per feature (and of the predictions); empty below ``min_rows``."""
        return self.score_rows(*self.rows(), min_rows)

    def shared_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows of every process's window for these labels (this one's alone without a file)."""
        if self.path is None:
            return self.rows()
        prefix = self.path.name.rsplit("_", 1)[0]
        parts = [read_window(p, len(self.schema.features)) for p in sorted(self.path.parent.glob(prefix + "_*.npy"))]
        parts = [part for part in parts if part is not None]
        if not parts:
            return self.rows()
        return np.concatenate([X for X, _ in parts]), np.concatenate([y for _, y in parts])

    def score_rows(self, X: np.ndarray, y: np.ndarray, min_rows: int = DRIFT_MIN_ROWS) -> dict[str, float]:
        """Bias-corrected PSI per feature (and of the predictions) of ``X``/``y``; empty below ``min_rows``."""
        m = len(y)
        if m < min_rows:
            return {}
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


def read_window(path: Path, n_features: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows and predictions of a window file another process writes (None if gone or foreign)."""
    try:
        buf = np.load(path, mmap_mode="r")
    except (OSError, ValueError):  # removed (process gone) or not fully created yet
        return None
    if buf.ndim != 2 or buf.shape[1] != n_features + 1:
        return None
    m = min(int(buf[0, 0]), buf.shape[0] - 1)
    return np.array(buf[1 : 1 + m, :n_features]), np.array(buf[1 : 1 + m, n_features])


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
            X, y = window.shared_rows()
            scores = window.score_rows(X, y)
            window_rows.add_metric([name, version], len(y))
            for feat, value in scores.items():
                feature.add_metric([name, version, feat], value)
            feats = [v for k, v in scores.items() if k != PREDICTION_FEATURE]
            if feats:
                score.add_metric([name, version], max(feats))
        yield feature
        yield score
        yield window_rows


@functools.cache
def drift_collector() -> DriftCollector:
    """The process's one drift collector, registered on first use."""
    collector = DriftCollector()
    REGISTRY.register(collector)
    return collector
