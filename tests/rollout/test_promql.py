"""PromQL building: every gate's query scoped by version and window."""

from __future__ import annotations

from rollout.analysis_config import MetricNames
from rollout.promql import build_queries


def test_queries_are_scoped_by_version_and_window():
    q = build_queries(MetricNames(selector='job="housing"'), "7", "15s")
    assert q["requests"] == 'sum(increase(housing_router_requests_total{model_version="7",job="housing"}[15s]))'
    assert q["error_rate"] == (
        '(sum(rate(housing_router_requests_total{model_version="7",job="housing",code=~"5.."}[15s])) or vector(0))'
        ' / sum(rate(housing_router_requests_total{model_version="7",job="housing"}[15s]))'
    )
    assert q["p95_latency"].startswith(
        "histogram_quantile(0.95, sum by (le) (rate(housing_router_request_duration_seconds_bucket{"
    )
    assert "_sum{" in q["prediction_mean"] and "_count{" in q["prediction_mean"]
    assert q["prediction_buckets"].startswith("sum by (le) (increase(housing_prediction_value_bucket{")
