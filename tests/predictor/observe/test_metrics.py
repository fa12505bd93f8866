"""The predictor's Prometheus series: queued observations, per-version histograms."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY

from predictor.core.loaded import load_bundle
from predictor.observe.metrics import FLUSH_EVERY, ModelMetrics


def test_queued_observations_are_all_counted_at_a_scrape(boston_xgb):
    bundle = load_bundle(boston_xgb)
    labels = {"model_name": "queue-test", "model_version": "q1"}
    metrics = ModelMetrics(*labels.values(), bundle.schema, bundle.reference, bundle.flavor, bundle.digest, 64)
    F = bundle.n_features

    def sample(name: str, **extra: str) -> float:
        return REGISTRY.get_sample_value(name, {**labels, **extra}) or 0.0

    singles = FLUSH_EVERY + 5  # one automatic flush, five still queued
    for i in range(singles):
        mask = None
        if i % 10 == 0:
            mask = np.zeros((1, F), dtype=bool)
            mask[0, 1] = True
        metrics.observe("v1", np.full((1, F), float(i)), np.array([1000.0 + i]), mask)
    assert len(metrics._queue) == 5
    big = np.zeros((40, F), dtype=bool)
    big[:3, 0] = True
    metrics.observe("grpc", np.zeros((40, F)), np.full(40, 7.0), big)  # applied at once, after the queue
    assert sample("housing_predictions_total", protocol="v1") == singles
    assert sample("housing_predictions_total", protocol="grpc") == 40
    assert sample("housing_prediction_value_count") == singles + 40
    assert sample("housing_prediction_value_sum") == pytest.approx(sum(1000.0 + i for i in range(singles)) + 280.0)
    name0, name1 = bundle.schema.names[:2]
    assert sample("housing_out_of_range_total", feature=name1) == len(range(0, singles, 10))
    assert sample("housing_out_of_range_total", feature=name0) == 3
    assert sample("housing_out_of_range_rows_total") == len(range(0, singles, 10)) + 3
    # the drift window holds the last 64 rows in arrival order
    assert metrics.window.count == 64
    for _ in range(5):  # queued singles, then the batch: no row lost or reordered
        metrics.observe("v2", np.full((1, F), -1.0), np.array([5.0]), None)
    assert REGISTRY.get_sample_value("housing_drift_window_rows", labels) == 64
    assert sample("housing_predictions_total", protocol="v2") == 5
    window = metrics.window
    last = np.roll(window.y, -window.pos)[-45:]
    np.testing.assert_array_equal(last, [7.0] * 40 + [5.0] * 5)


def test_each_version_has_the_buckets_of_its_own_bundle(boston_xgb):
    """A second model version in the process does not inherit the first one's buckets."""
    bundle = load_bundle(boston_xgb)
    F = bundle.n_features
    flat = {"edges": [], "proportions": [1.0]}
    narrow = {**bundle.reference, "prediction": {**flat, "quantiles": [1.0, 2.0, 3.0]}}
    wide = {**bundle.reference, "prediction": {**flat, "quantiles": [100.0, 200.0]}}
    first = ModelMetrics("bucket-test", "b1", bundle.schema, narrow, bundle.flavor, bundle.digest, 8)
    second = ModelMetrics("bucket-test", "b2", bundle.schema, wide, bundle.flavor, bundle.digest, 8)
    first.observe("v1", np.zeros((2, F)), np.array([1.5, 150.0]), None)
    second.observe("v1", np.zeros((2, F)), np.array([1.5, 150.0]), None)

    def bucket(version: str, le: str) -> float | None:
        labels = {"model_name": "bucket-test", "model_version": version, "le": le}
        return REGISTRY.get_sample_value("housing_prediction_value_bucket", labels)

    assert bucket("b1", "2.0") == 1 and bucket("b1", "3.0") == 1 and bucket("b1", "+Inf") == 2
    assert bucket("b2", "200.0") == 2 and bucket("b2", "100.0") == 1
    assert bucket("b1", "200.0") is None and bucket("b2", "2.0") is None


def test_request_seconds_are_a_histogram_per_version_and_protocol(boston_xgb):
    """The latency gate's series: each answered request once, in its version's and protocol's buckets."""
    bundle = load_bundle(boston_xgb)
    F = bundle.n_features
    metrics = ModelMetrics("duration-test", "d1", bundle.schema, bundle.reference, bundle.flavor, bundle.digest, 8)
    other = ModelMetrics("duration-test", "d2", bundle.schema, bundle.reference, bundle.flavor, bundle.digest, 8)
    for took in (0.0004, 0.003, 0.003, 0.2):
        metrics.observe("v2", np.zeros((1, F)), np.array([1.0]), None, took)
    metrics.observe("grpc", np.zeros((40, F)), np.full(40, 7.0), None, 0.02)  # a batch is one request
    other.observe("v2", np.zeros((1, F)), np.array([1.0]), None, 7.0)

    def sample(suffix: str, version: str = "d1", **extra: str) -> float | None:
        labels = {"model_name": "duration-test", "model_version": version, **extra}
        return REGISTRY.get_sample_value(f"housing_request_duration_seconds{suffix}", labels)

    assert sample("_count", protocol="v2") == 4
    assert sample("_sum", protocol="v2") == pytest.approx(0.2064)
    assert sample("_bucket", protocol="v2", le="0.0005") == 1
    assert sample("_bucket", protocol="v2", le="0.005") == 3
    assert sample("_bucket", protocol="v2", le="0.1") == 3 and sample("_bucket", protocol="v2", le="0.25") == 4
    assert sample("_count", protocol="grpc") == 1 and sample("_bucket", protocol="grpc", le="0.025") == 1
    assert sample("_count", "d2", protocol="v2") == 1 and sample("_bucket", "d2", protocol="v2", le="5.0") == 0


def test_one_value_is_counted_as_a_batch_of_one_would_be():
    """``observe_one`` (the per-request path with several workers) agrees with ``observe``."""
    from predictor.observe.metrics import CountedHistogram

    bounds = (0.001, 0.01, 0.1, 1.0)
    values = [0.0, 0.001, 0.0011, 0.01, 0.5, 1.0, 3.0, float("inf"), float("nan")]
    batch, ones = CountedHistogram(bounds), CountedHistogram(bounds)
    batch.observe(np.asarray(values))
    for v in values:
        ones.observe_one(v)
    assert ones.counts.tolist() == batch.counts.tolist()
    assert np.isnan(ones.sum) and np.isnan(batch.sum)
