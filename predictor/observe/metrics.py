"""Prometheus series for the predictor, served on KServe's own ``/metrics``.

Every series carries ``model_name`` and ``model_version`` so a canary can be judged against the
champion (names in :mod:`common.series`; drift in :mod:`predictor.observe.drift`):

* ``housing_predictions_total`` — rows predicted (label ``protocol``: v1, v2, grpc, explain).
* ``housing_prediction_value`` — histogram of predicted prices; each model version has its own
  buckets, from its bundle's reference prediction deciles.
* ``housing_out_of_range_total`` — values outside the training range / unseen categories, by
  ``feature``; ``housing_out_of_range_rows_total`` — rows with at least one.
* ``housing_requests_total`` — inference requests answered, by ``protocol`` and status ``code``,
  server errors and internal exceptions included (:mod:`predictor.observe.request_count`): what the
  rollout's error gate divides.
* ``housing_request_errors_total`` — rejected requests by ``protocol`` and ``reason`` (client
  errors, counted where they are answered: :mod:`predictor.transport.rest_middleware`,
  :mod:`predictor.transport.grpc_server`).
* ``housing_requests_refused_total`` — requests the guard refused (``reason``: ``Unauthenticated``,
  ``RateLimited``), by ``protocol``.
* ``housing_request_duration_seconds`` — histogram of the seconds each answered request spent
  in the model's predict handler, by ``protocol`` (the rollout's latency gate reads it per version).
* ``housing_model_info`` — 1, with flavor and bundle digest labels.

Small requests are recorded in bulk: ``observe`` queues them and the queue is applied to the
series every ``FLUSH_EVERY`` requests and whenever the registry is collected (a collector
registered ahead of our series flushes first), so every scrape sees every request answered
before it. Per request that is one append instead of a dozen lock/ufunc round trips.

With several processes (``--workers`` > 1, :mod:`predictor.observe.multiproc`) nothing is queued — a
scrape answered by one worker cannot flush another's queue — and every series, our numpy
histograms included, is written to the shared per-pid files the scrape merges.
"""

from __future__ import annotations

import bisect
import functools
import threading
import weakref
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, values
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from bundle.schema import FeatureSchema
from common.series import (
    CODE,
    DIGEST,
    FEATURE,
    FLAVOR,
    LABELS,
    MODEL_INFO,
    OUT_OF_RANGE,
    OUT_OF_RANGE_ROWS,
    PREDICTION_VALUE,
    PREDICTIONS,
    PROTOCOL,
    REASON,
    REQUEST_DURATION,
    REQUEST_ERRORS,
    REQUESTS,
    REQUESTS_REFUSED,
)
from predictor.observe import multiproc
from predictor.observe.drift import DriftWindow, drift_collector, window_path

#: Queued small requests applied to the series at once (and at every scrape).
FLUSH_EVERY = 128
#: Requests with more rows than this are applied at once (queueing would only copy them).
QUEUE_MAX_ROWS = 16

#: Upper bounds (seconds) of the request-duration histogram.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

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


@functools.cache
def flusher() -> _Flusher:
    """The process's one flusher, registered on first use (and run before the drift collector collects)."""
    flush = _Flusher()
    REGISTRY.register(flush)
    drift_collector().before_collect = flush.collect
    return flush


def _metric(kind: type, name: str, doc: str, labels: tuple[str, ...], **kw: Any) -> Any:
    """Create a metric once per process (models may be re-created in tests)."""
    flusher()  # registered ahead of the series it feeds: the registry collects in registration order
    if name not in _created:
        _created[name] = kind(name, doc, labels, **kw)
    return _created[name]


def _buckets(reference: dict[str, Any] | None) -> tuple[float, ...]:
    pred = (reference or {}).get("prediction") or {}
    qs = sorted({float(q) for q in pred.get("quantiles", []) + pred.get("edges", []) if np.isfinite(q)})
    if len(qs) >= 2:
        return tuple(qs)
    return tuple(float(v) for v in np.geomspace(1, 1e7, 15))


class CountedHistogram:
    """One histogram (predicted prices, request seconds, …) counted with numpy, many values at once."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = np.asarray([*buckets, np.inf], dtype=np.float64)
        self._bound_list = self.bounds.tolist()
        self.counts = np.zeros(len(self.bounds), dtype=np.int64)
        self.sum = 0.0
        self.lock = threading.Lock()
        self._shared: tuple[list[Any], Any] | None = None

    def share(self, name: str, doc: str, labelnames: tuple[str, ...], labelvalues: tuple[str, ...]) -> None:
        """Also write the counts to prometheus_client's per-process files (multiprocess mode only).

        Each bucket is one non-cumulative ``_bucket`` value with its ``le`` label and the sum one
        ``_sum`` value, the layout prometheus_client's own histograms use, so
        ``MultiProcessCollector`` adds them up over processes and derives ``_count``.
        """
        if not getattr(values.ValueClass, "_multiprocess", False):
            return
        le_names = (*labelnames, "le")
        buckets = [
            values.ValueClass("histogram", name, name + "_bucket", le_names, (*labelvalues, floatToGoString(b)), doc)
            for b in self.bounds
        ]
        total = values.ValueClass("histogram", name, name + "_sum", labelnames, labelvalues, doc)
        self._shared = (buckets, total)

    def observe(self, prices: np.ndarray) -> None:
        """Count every value of ``prices`` (upper bounds inclusive, as Prometheus buckets are)."""
        idx = np.searchsorted(self.bounds, prices, side="left")
        counts = np.bincount(idx, minlength=len(self.bounds))[: len(self.bounds)]
        total = float(prices.sum())
        with self.lock:
            self.counts += counts
            self.sum += total
        if self._shared is not None:
            buckets, shared_sum = self._shared
            for i in np.flatnonzero(counts).tolist():
                buckets[i].inc(float(counts[i]))
            shared_sum.inc(total)

    def observe_one(self, value: float) -> None:
        """Count one value: :meth:`observe` without numpy's per-call cost (one request, one row)."""
        i = bisect.bisect_left(self._bound_list, value) if value == value else len(self._bound_list)  # NaN: no bucket
        with self.lock:
            if i < len(self._bound_list):
                self.counts[i] += 1
            self.sum += value
        if self._shared is not None:
            buckets, shared_sum = self._shared
            if i < len(buckets):
                buckets[i].inc(1.0)
            shared_sum.inc(value)

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs and the sum, for a HistogramMetricFamily."""
        with self.lock:
            cumulative = np.cumsum(self.counts)
            total = self.sum
        les = [("+Inf" if np.isinf(b) else repr(float(b))) for b in self.bounds]
        return list(zip(les, cumulative.astype(float).tolist(), strict=True)), total


class Histograms:
    """A collector of numpy-counted histograms, one per label tuple, under one series name."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.histograms: dict[tuple[str, ...], CountedHistogram] = {}

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        family = HistogramMetricFamily(self.name, self.doc, labels=list(self.labels))
        for labels, hist in list(self.histograms.items()):
            buckets, total = hist.snapshot()
            family.add_metric(list(labels), buckets, total)
        yield family


def _histogram(collector: Histograms, labels: tuple[str, ...], buckets: tuple[float, ...]) -> CountedHistogram:
    """The collector's histogram for ``labels``, created (and shared across processes) once."""
    hist = collector.histograms.get(labels)
    if hist is None:
        hist = collector.histograms[labels] = CountedHistogram(buckets)
        hist.share(collector.name, collector.doc, collector.labels, labels)
    return hist


def _histogram_collector(name: str, doc: str, labels: tuple[str, ...]) -> Histograms:
    flusher()
    if name not in _created:
        _created[name] = Histograms(name, doc, labels)
        REGISTRY.register(_created[name])
    return _created[name]


def price_histograms() -> Histograms:
    """``housing_prediction_value``: one histogram per model version, with its own buckets."""
    return _histogram_collector(PREDICTION_VALUE, "Predicted prices", LABELS)


def duration_histograms() -> Histograms:
    """``housing_request_duration_seconds``: per model version and protocol."""
    return _histogram_collector(REQUEST_DURATION, "Seconds in the model's predict handler", (*LABELS, PROTOCOL))


#: One answered request: (protocol, X, prices, out-of-range mask, seconds in the handler).
_Observation = tuple[str, np.ndarray, np.ndarray, "np.ndarray | None", float]


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
        # this version's own buckets; a re-created model keeps counting into the same series
        self.values = _histogram(price_histograms(), self.labels, _buckets(reference))
        durations = duration_histograms()
        self.durations = {p: _histogram(durations, (name, version, p), DURATION_BUCKETS) for p in self.predictions}
        oor = _metric(Counter, OUT_OF_RANGE, "Values outside the training range", (*LABELS, FEATURE))
        self.oor = [oor.labels(name, version, f) for f in schema.names]
        self.oor_rows = _metric(Counter, OUT_OF_RANGE_ROWS, "Rows with at least one out-of-range value", LABELS).labels(
            name, version
        )
        self.requests = _metric(
            Counter, REQUESTS, "Inference requests answered, by status code", (*LABELS, PROTOCOL, CODE)
        )
        self._answered: dict[tuple[str, int], Any] = {}
        self.errors = _metric(Counter, REQUEST_ERRORS, "Rejected requests", (*LABELS, PROTOCOL, REASON))
        self.refused = _metric(Counter, REQUESTS_REFUSED, "Requests refused by the guard", (*LABELS, PROTOCOL, REASON))
        # several processes each set 1: max, not the default per-pid series or a sum
        info = _metric(Gauge, MODEL_INFO, "The served bundle", (*LABELS, FLAVOR, DIGEST), multiprocess_mode="max")
        info.labels(name, version, flavor, digest).set(1)
        shared = multiproc.directory()
        path = None if shared is None else window_path(shared, self.labels)
        self.window = DriftWindow(schema, reference, window, path)
        drift_collector().windows[self.labels] = self.window
        #: apply each request at once: with several processes no scrape could flush the queue
        self.immediate = shared is not None
        self._queue: deque[_Observation] = deque()
        self._flush_lock = threading.Lock()
        flusher().models.add(self)

    def observe(
        self, protocol: str, X: np.ndarray, prices: np.ndarray, oor_mask: np.ndarray | None, seconds: float = 0.0
    ) -> None:
        """Count one answered request that took ``seconds`` (X, prices and the mask must not change afterwards)."""
        if self.immediate or len(prices) > QUEUE_MAX_ROWS:
            with self._flush_lock:
                self._apply(self._drain())  # keep the drift window in arrival order
                self._apply([(protocol, X, prices, oor_mask, seconds)])
            return
        queue = self._queue
        queue.append((protocol, X, prices, oor_mask, seconds))
        if len(queue) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Apply every queued observation to the series and the drift window."""
        if self._queue:
            with self._flush_lock:
                self._apply(self._drain())

    def _drain(self) -> list[_Observation]:
        items = []
        pop = self._queue.popleft
        while True:
            try:
                items.append(pop())
            except IndexError:
                return items

    def _apply(self, items: list[_Observation]) -> None:
        if not items:
            return
        if len(items) == 1 and len(items[0][2]) == 1:
            self._apply_one(*items[0])
            return
        rows: dict[str, int] = {}
        seconds: dict[str, list[float]] = {}
        for protocol, _, prices, _, took in items:
            rows[protocol] = rows.get(protocol, 0) + len(prices)
            seconds.setdefault(protocol, []).append(took)
        for protocol, n in rows.items():
            self.predictions.get(protocol, self.predictions["v1"]).inc(n)
            self.durations.get(protocol, self.durations["v1"]).observe(np.asarray(seconds[protocol]))
        if len(items) == 1:
            _, X, prices, masks, _ = items[0]
            masks = None if masks is None else [masks]
        else:
            X = np.concatenate([item[1] for item in items])
            prices = np.concatenate([item[2] for item in items])
            masks = [item[3] for item in items if item[3] is not None] or None
        self.values.observe(prices)
        if masks is not None:
            oor_mask = masks[0] if len(masks) == 1 else np.concatenate(masks)
            for j in np.flatnonzero(oor_mask.any(axis=0)):
                self.oor[j].inc(int(oor_mask[:, j].sum()))
            self.oor_rows.inc(int(oor_mask.any(axis=1).sum()))
        self.window.add(X, prices)

    def _apply_one(
        self, protocol: str, X: np.ndarray, prices: np.ndarray, oor_mask: np.ndarray | None, seconds: float
    ) -> None:
        """One request of one row (the common case when applied per request): no numpy per series."""
        self.predictions.get(protocol, self.predictions["v1"]).inc(1)
        self.durations.get(protocol, self.durations["v1"]).observe_one(seconds)
        self.values.observe_one(float(prices[0]))
        if oor_mask is not None and oor_mask.any():
            for j in np.flatnonzero(oor_mask[0]).tolist():
                self.oor[j].inc(1)
            self.oor_rows.inc(1)
        self.window.add(X, prices)

    def answered(self, protocol: str, code: int) -> None:
        """Count one inference request answered with status ``code`` (any code: 2xx, 4xx, 5xx)."""
        child = self._answered.get((protocol, code))
        if child is None:
            child = self._answered[(protocol, code)] = self.requests.labels(*self.labels, protocol, str(code))
        child.inc()

    def error(self, protocol: str, reason: str) -> None:
        """Count one rejected request (a client error)."""
        self.errors.labels(*self.labels, protocol, reason).inc()

    def refuse(self, protocol: str, reason: str) -> None:
        """Count one request the guard refused (no key, over the rate)."""
        self.refused.labels(*self.labels, protocol, reason).inc()
