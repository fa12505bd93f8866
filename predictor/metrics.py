"""Prometheus metrics for the predictor, served on KServe's own ``/metrics``.

Every series carries ``model_name`` and ``model_version`` so a canary can be judged against the
champion:

* ``housing_predictions_total`` — rows predicted (label ``protocol``: v1, v2).
* ``housing_prediction_value`` — histogram of predicted prices (buckets from the bundle's
  reference prediction deciles).
* ``housing_out_of_range_total`` — values outside the training range / unseen categories, by
  ``feature``; ``housing_out_of_range_rows_total`` — rows with at least one.
* ``housing_request_errors_total`` — rejected requests by ``protocol`` and ``reason``.
* ``housing_drift_psi`` — PSI of the last ``window`` served rows against ``reference.json``, by
  ``feature`` (``feature="__prediction__"`` for predictions); ``housing_drift_score`` — the
  largest feature PSI. Computed when Prometheus scrapes, not per request.
* ``housing_model_info`` — 1, with flavor and bundle digest labels.

Small requests are recorded in bulk: ``observe`` queues them and the queue is applied to the
series every ``FLUSH_EVERY`` requests and whenever the registry is collected (a collector
registered ahead of our series flushes first), so every scrape sees every request answered
before it. Per request that is one append instead of a dozen lock/ufunc round trips.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from predictor.schema import NUMERIC, FeatureSchema

LABELS = ("model_name", "model_version")
#: Series names and extra labels: the one place they are spelled (the Grafana dashboard and the
#: alert rules read them here). Counters are exported with a ``_total`` suffix.
PREDICTIONS, PREDICTION_VALUE, MODEL_INFO = "housing_predictions", "housing_prediction_value", "housing_model_info"
OUT_OF_RANGE, OUT_OF_RANGE_ROWS = "housing_out_of_range", "housing_out_of_range_rows"
REQUEST_ERRORS = "housing_request_errors"
DRIFT_PSI, DRIFT_SCORE, DRIFT_WINDOW_ROWS = "housing_drift_psi", "housing_drift_score", "housing_drift_window_rows"
PROTOCOL, REASON, FEATURE, FLAVOR, DIGEST = "protocol", "reason", "feature", "flavor", "digest"
#: ``feature`` value of the drift PSI of the predictions themselves.
PREDICTION_FEATURE = "__prediction__"
EPS = 1e-4
#: Queued small requests applied to the series at once (and at every scrape).
FLUSH_EVERY = 128
#: Requests with more rows than this are applied at once (queueing would only copy them).
QUEUE_MAX_ROWS = 16

_created: dict[str, Any] = {}


class _Flusher:
    """Registered before our series: applies every model's queued observations when collected."""

    def __init__(self) -> None:
        self.models: weakref.WeakSet[ModelMetrics] = weakref.WeakSet()

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        for metrics in list(self.models):
            metrics.flush()
        return []


_flusher: _Flusher | None = None


def flusher() -> _Flusher:
    global _flusher
    if _flusher is None:
        _flusher = _Flusher()
        REGISTRY.register(_flusher)
    return _flusher


def _metric(kind: type, name: str, doc: str, labels: tuple[str, ...], **kw: Any) -> Any:
    """Create a metric once per process (models may be re-created in tests)."""
    flusher()  # registered ahead of the series it feeds: the registry collects in registration order
    if name not in _created:
        _created[name] = kind(name, doc, labels, **kw)
    return _created[name]


#: Rows a drift window needs before drift is reported: below it, sampling noise dominates PSI.
DRIFT_MIN_ROWS = 100


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two proportion vectors."""
    e = np.clip(np.asarray(expected, dtype=np.float64), EPS, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


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
    raw = psi(e, a)
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

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        feature = GaugeMetricFamily(
            DRIFT_PSI, "PSI of recent served rows vs training, by feature", labels=[*LABELS, FEATURE]
        )
        score = GaugeMetricFamily(DRIFT_SCORE, "Largest feature PSI of recent served rows", labels=list(LABELS))
        window_rows = GaugeMetricFamily(DRIFT_WINDOW_ROWS, "Rows in the drift window", labels=list(LABELS))
        flusher().collect()
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


def _buckets(reference: dict[str, Any] | None) -> tuple[float, ...]:
    pred = (reference or {}).get("prediction") or {}
    qs = sorted({float(q) for q in pred.get("quantiles", []) + pred.get("edges", []) if np.isfinite(q)})
    if len(qs) >= 2:
        return tuple(qs)
    return tuple(float(v) for v in np.geomspace(1, 1e7, 15))


class ModelMetrics:
    """The metric children for one (model_name, model_version)."""

    def __init__(
        self,
        name: str,
        version: str,
        schema: FeatureSchema,
        reference: dict[str, Any] | None,
        flavor: str,
        digest: str,
        window: int = 2000,
    ) -> None:
        self.labels = (name, version)
        self.names = schema.names
        predictions = _metric(Counter, PREDICTIONS, "Rows predicted", (*LABELS, PROTOCOL))
        self.predictions = {p: predictions.labels(name, version, p) for p in ("v1", "v2", "grpc", "explain")}
        # the buckets are fixed by the first model registered in this process (one per server)
        self.values = _metric(
            Histogram, PREDICTION_VALUE, "Predicted prices", LABELS, buckets=_buckets(reference)
        ).labels(name, version)
        oor = _metric(Counter, OUT_OF_RANGE, "Values outside the training range", (*LABELS, FEATURE))
        self.oor = [oor.labels(name, version, f) for f in schema.names]
        self.oor_rows = _metric(Counter, OUT_OF_RANGE_ROWS, "Rows with at least one out-of-range value", LABELS).labels(
            name, version
        )
        self.errors = _metric(Counter, REQUEST_ERRORS, "Rejected requests", (*LABELS, PROTOCOL, REASON))
        info = _metric(Gauge, MODEL_INFO, "The served bundle", (*LABELS, FLAVOR, DIGEST))
        info.labels(name, version, flavor, digest).set(1)
        self.window = DriftWindow(schema, reference, window)
        drift_collector().windows[self.labels] = self.window
        self._queue: deque[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = deque()
        self._flush_lock = threading.Lock()
        flusher().models.add(self)

    def observe(self, protocol: str, X: np.ndarray, prices: np.ndarray, oor_mask: np.ndarray | None) -> None:
        """Count one answered request (X, prices and the mask must not be modified afterwards)."""
        if len(prices) > QUEUE_MAX_ROWS:
            with self._flush_lock:
                self._apply(self._drain())  # keep the drift window in arrival order
                self._apply([(protocol, X, prices, oor_mask)])
            return
        queue = self._queue
        queue.append((protocol, X, prices, oor_mask))
        if len(queue) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Apply every queued observation to the series and the drift window."""
        if self._queue:
            with self._flush_lock:
                self._apply(self._drain())

    def _drain(self) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
        items = []
        pop = self._queue.popleft
        while True:
            try:
                items.append(pop())
            except IndexError:
                return items

    def _apply(self, items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]) -> None:
        if not items:
            return
        rows: dict[str, int] = {}
        for protocol, _, prices, _ in items:
            rows[protocol] = rows.get(protocol, 0) + len(prices)
        for protocol, n in rows.items():
            self.predictions.get(protocol, self.predictions["v1"]).inc(n)
        if len(items) == 1:
            _, X, prices, masks = items[0]
            masks = None if masks is None else [masks]
        else:
            X = np.concatenate([item[1] for item in items])
            prices = np.concatenate([item[2] for item in items])
            masks = [item[3] for item in items if item[3] is not None] or None
        if len(prices) == 1:
            self.values.observe(float(prices[0]))
        else:
            self._observe_many(prices)
        if masks is not None:
            oor_mask = masks[0] if len(masks) == 1 else np.concatenate(masks)
            for j in np.flatnonzero(oor_mask.any(axis=0)):
                self.oor[j].inc(int(oor_mask[:, j].sum()))
            self.oor_rows.inc(int(oor_mask.any(axis=1).sum()))
        self.window.add(X, prices)

    def _observe_many(self, prices: np.ndarray) -> None:
        hist = self.values
        bounds = getattr(hist, "_upper_bounds", None)
        buckets = getattr(hist, "_buckets", None)
        if bounds is None or buckets is None or len(bounds) != len(buckets):  # pragma: no cover - other versions
            for v in prices.tolist():
                hist.observe(v)
            return
        counts = np.bincount(np.searchsorted(np.asarray(bounds), prices, side="left"), minlength=len(bounds))
        for i in np.flatnonzero(counts):
            buckets[i].inc(int(counts[i]))
        hist._sum.inc(float(prices.sum()))

    def error(self, protocol: str, reason: str) -> None:
        self.errors.labels(*self.labels, protocol, reason).inc()
