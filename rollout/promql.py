"""The PromQL of every gate, per model version and window (pure)."""

from __future__ import annotations

import math

from rollout.analysis_config import MetricNames


def _sel(metrics: MetricNames, version: str, extra: str = "") -> str:
    parts = [f'{metrics.version_label}="{version}"']
    if metrics.selector:
        parts.append(metrics.selector)
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


def window_of(seconds: float) -> str:
    return f"{max(2, math.ceil(seconds))}s"


def error_rate_query(requests: str, selector: str, failed: str, window: str) -> str:
    """The error gate, one definition for every series: failed requests ÷ requests over ``window``.

    ``requests`` is a counter of requests by status code; ``selector`` picks one version's (or one
    backend's) requests, ``failed`` the same plus the failed codes. No request: no value (the gate
    then has no data); requests and no failure: 0.
    """
    return f"(sum(rate({requests}{failed}[{window}])) or vector(0)) / sum(rate({requests}{selector}[{window}]))"


def p95_query(latency: str, selector: str, window: str) -> str:
    """p95 of a latency histogram over ``window``."""
    return f"histogram_quantile(0.95, sum by (le) (rate({latency}_bucket{selector}[{window}])))"


def gateway_queries(metrics: MetricNames, role: str, window: str) -> dict[str, str]:
    """The gateway's requests, error rate and p95 of the backend behind ``role`` (champion/challenger)."""
    gw = metrics.gateway
    if gw is None or not gw.services.get(role):
        return {}
    backend = f'{gw.service_label}=~"{gw.services[role]}",{gw.protocol_label}=~"{gw.http_protocols}"'
    sel = "{" + backend + "}"
    failed = "{" + f'{backend},{gw.code_label}=~"{gw.error_code_regex}"' + "}"
    return {
        "gateway.requests": f"sum(increase({gw.requests}{sel}[{window}]))",
        "gateway.error_rate": error_rate_query(gw.requests, sel, failed, window),
        "gateway.p95_latency": p95_query(gw.latency, sel, window),
    }


def build_queries(metrics: MetricNames, version: str, window: str) -> dict[str, str]:
    """The PromQL of every gate for one model version over ``window`` (e.g. ``"15s"``)."""
    failed = _sel(metrics, version, f'{metrics.code_label}=~"{metrics.error_code_regex}"')
    sel = _sel(metrics, version)
    queries = {
        "requests": f"sum(increase({metrics.requests}{sel}[{window}]))",
        "error_rate": error_rate_query(metrics.requests, sel, failed, window),
        "p95_latency": p95_query(metrics.latency, sel, window),
        "prediction_mean": (
            f"sum(increase({metrics.predictions}_sum{sel}[{window}]))"
            f" / sum(increase({metrics.predictions}_count{sel}[{window}]))"
        ),
        "prediction_buckets": f"sum by (le) (increase({metrics.predictions}_bucket{sel}[{window}]))",
        "drift": f"max({metrics.drift}{sel})",
    }
    if metrics.paired:  # the paired comparison's counters (the local router's shadow)
        for key, series in zip(
            ("paired_pairs", "paired_up", "paired_down", "paired_squares"), metrics.paired, strict=True
        ):
            queries[key] = f"sum(increase({series}{sel}[{window}]))"
    return queries
