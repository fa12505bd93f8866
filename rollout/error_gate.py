"""The error and latency gates' inputs: one definition, whichever series see the requests.

**Error rate = failed requests ÷ requests**, per version, over the step's window — the local
router's ``housing_router_requests_total`` and the predictor's ``housing_requests_total`` (every
inference request by status code, 5xx and internal exceptions included) through the same
:func:`rollout.promql.error_rate_query`, and, behind a gateway, the gateway's per-backend series
(refused connections, timeouts, 502/503/504 that never reach a predictor) counted against the
version behind that backend. The gate judges the worst of the two: a failure either one saw
counts. p95 latency is the client's: the gateway's when there is one, else the series' own.

With a gateway configured and no gateway data for the challenger (the gateway restarting, its
scrape failing), the error rate has no value: the step wants evidence and holds — it looks again,
and ends the run inconclusive at its last look — instead of promoting or rolling back on missing
data (:func:`rollout.gates.evaluate_gates`). :func:`error_rate` is the same definition over counts
already read (tests, reports).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rollout.analysis_config import MetricNames
from rollout.gates import MISSING_NOTE
from rollout.prom import Prometheus
from rollout.promql import gateway_queries


def error_rate(codes: Mapping[Any, float], failed: str = "5..") -> float | None:
    """Failed requests ÷ requests from counts by status code (None without requests)."""
    total = sum(codes.values())
    if total <= 0:
        return None
    pattern = re.compile(failed)
    return sum(n for code, n in codes.items() if pattern.fullmatch(str(code))) / total


def read_gateway(
    prom: Prometheus, metrics: MetricNames, step_window: str, baseline_window: str
) -> tuple[dict[str, float | None], dict[str, str]]:
    """The gateway's values per role (``challenger.gateway.error_rate`` …) and their PromQL."""
    values: dict[str, float | None] = {}
    queries: dict[str, str] = {}
    for role, window in (("challenger", step_window), ("champion", baseline_window)):
        for key, query in gateway_queries(metrics, role, window).items():
            queries[f"{role}.{key}"] = query
            values[f"{role}.{key}"] = prom.scalar(query)
    return values, queries


def judge(values: dict[str, Any], gateway: bool) -> None:
    """Set the gate inputs ``error_rate`` and ``p95_latency`` from the challenger's values."""
    own = values.get("challenger.error_rate")
    if not gateway:
        values["error_rate"] = own
        values["p95_latency"] = values.get("challenger.p95_latency")
        return
    seen = values.get("challenger.gateway.error_rate")
    if seen is None or not values.get("challenger.gateway.requests"):
        values["error_rate"] = None  # no evidence from the gateway: hold, neither promote nor roll back
        values[MISSING_NOTE] = (
            "no data from the gateway for the challenger's backend in this window "
            "(the gateway restarting, or its scrape failing)"
        )
    else:
        values["error_rate"] = max(seen, own or 0.0)
    gateway_p95 = values.get("challenger.gateway.p95_latency")
    values["p95_latency"] = gateway_p95 if gateway_p95 is not None else values.get("challenger.p95_latency")
