"""What a rollout run is configured with: the series the gates read, the limits, the steps."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.series import DRIFT_SCORE, PREDICTION_VALUE, VERSION_LABEL
from rollout.gateway_series import GATEWAY_REQUEST_SECONDS, GATEWAY_REQUESTS_TOTAL, SERVICE_LABEL
from rollout.router_series import (
    ROUTER_REQUEST_SECONDS,
    ROUTER_REQUESTS_TOTAL,
    ROUTER_SHADOW_DIFF_DOWN,
    ROUTER_SHADOW_DIFF_SQUARES,
    ROUTER_SHADOW_DIFF_UP,
    ROUTER_SHADOW_PAIRS,
)


@dataclass
class GatewaySeries:
    """The gateway's per-backend series, counted against the version behind each backend Service."""

    requests: str = GATEWAY_REQUESTS_TOTAL  # counter: service, code
    latency: str = GATEWAY_REQUEST_SECONDS  # histogram: service
    service_label: str = SERVICE_LABEL
    code_label: str = "code"
    error_code_regex: str = "5.."
    #: Requests whose ``code`` is an HTTP status: traefik v3.6 labels gRPC calls with a gRPC code read
    #: from the response *headers*, so a call answered OK (its status is in the trailers) and one the
    #: gateway could not deliver (no status at all) are both ``code="2"`` (Unknown) — measured with
    #: traefik v3.6.12 — and cannot count for or against a version; the predictor counts its gRPC calls.
    protocol_label: str = "protocol"
    http_protocols: str = "http|websocket|sse"
    #: ``{"champion": regex, "challenger": regex}`` of the service label (set by the run from the backend)
    services: dict[str, str] = field(default_factory=dict)


@dataclass
class MetricNames:
    """Prometheus series the gates read. Defaults: the local router + the housing predictor.

    ``requests`` counts requests by ``code_label``; the error gate is its ``error_code_regex``
    share (:func:`rollout.promql.error_rate_query`), for the router's series and the predictor's
    alike; with ``gateway`` the gateway's series are read as well.
    """

    requests: str = ROUTER_REQUESTS_TOTAL  # counter: model_version, code
    latency: str = ROUTER_REQUEST_SECONDS  # histogram: model_version
    predictions: str = PREDICTION_VALUE  # histogram of predicted values: model_version
    drift: str = DRIFT_SCORE  # gauge: model_version
    version_label: str = VERSION_LABEL
    error_code_regex: str = "5.."
    code_label: str = "code"
    selector: str = ""  # extra matchers, e.g. 'namespace="ml"'
    #: Counters of the paired comparison (pairs, Σ r⁺, Σ r⁻, Σ r²; labelled with the challenger's
    #: version); absent series (no shadow, or no router) leave the two-sample comparison.
    paired: tuple[str, str, str, str] | None = (
        f"{ROUTER_SHADOW_PAIRS}_total",
        f"{ROUTER_SHADOW_DIFF_UP}_total",
        f"{ROUTER_SHADOW_DIFF_DOWN}_total",
        f"{ROUTER_SHADOW_DIFF_SQUARES}_total",
    )

    gateway: GatewaySeries | None = None


#: Default significance level of the distribution gates (:mod:`rollout.evidence`): the largest
#: chance that a challenger within a threshold fails that gate in a step.
DEFAULT_ALPHA = 0.05


@dataclass
class Thresholds:
    max_error_rate: float = 0.01
    max_p95_seconds: float = 0.5
    max_mean_shift: float = 0.10
    max_psi: float = 0.25
    max_drift: float = 0.5
    alpha: float = DEFAULT_ALPHA  # significance level of the PSI and mean-shift tests


@dataclass
class AnalysisConfig:
    steps: list[int] = field(default_factory=lambda: [10, 25, 50, 100])
    interval: float = 30.0
    min_requests: int = 50
    max_failures: int = 2
    max_wait_factor: float = 3.0
    settle: float = 2.0  # seconds to wait after a step for the last scrape to land
    ready_timeout: float = 600.0  # seconds a deployed challenger may take to report Ready
    #: Seconds the rollout has already been running (a resumed run: since the stopped run took its
    #: Lease), so the champion's baseline still covers the steps before the stop.
    elapsed_before: float = 0.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    metrics: MetricNames = field(default_factory=MetricNames)


def parse_steps(text: str) -> list[int]:
    """``"10,25,50,100"`` → ``[10, 25, 50, 100]``; strictly increasing, within 1..100, ending at 100."""
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise ValueError(f"--steps must be comma-separated integers, got {text!r}") from exc
    if not steps or any(not 0 < s <= 100 for s in steps):
        raise ValueError(f"--steps must be percents within 1..100, got {text!r}")
    if steps != sorted(set(steps)):
        raise ValueError(f"--steps must be strictly increasing, got {text!r}")
    if steps[-1] != 100:
        raise ValueError(f"--steps must end at 100 (full promotion), got {text!r}")
    return steps
