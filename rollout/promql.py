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


def build_queries(metrics: MetricNames, version: str, window: str) -> dict[str, str]:
    """The PromQL of every gate for one model version over ``window`` (e.g. ``"15s"``)."""
    errors = _sel(metrics, version, f'{metrics.code_label}=~"{metrics.error_code_regex}"')
    sel = _sel(metrics, version)
    if metrics.errors:
        err = f"(sum(rate({metrics.errors}{sel}[{window}])) or vector(0))"
        error_rate = f"{err} / (sum(rate({metrics.requests}{sel}[{window}])) + {err})"
    else:
        error_rate = (
            f"(sum(rate({metrics.requests}{errors}[{window}])) or vector(0))"
            f" / sum(rate({metrics.requests}{sel}[{window}]))"
        )
    return {
        "requests": f"sum(increase({metrics.requests}{sel}[{window}]))",
        "error_rate": error_rate,
        "p95_latency": (f"histogram_quantile(0.95, sum by (le) (rate({metrics.latency}_bucket{sel}[{window}])))"),
        "prediction_mean": (
            f"sum(increase({metrics.predictions}_sum{sel}[{window}]))"
            f" / sum(increase({metrics.predictions}_count{sel}[{window}]))"
        ),
        "prediction_buckets": f"sum by (le) (increase({metrics.predictions}_bucket{sel}[{window}]))",
        "drift": f"max({metrics.drift}{sel})",
    }
