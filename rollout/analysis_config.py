"""What a rollout run is configured with: the series the gates read, the limits, the steps."""

from __future__ import annotations

from dataclasses import dataclass, field

from predictor.series import DRIFT_SCORE, PREDICTION_VALUE, VERSION_LABEL
from rollout.router_series import ROUTER_REQUEST_SECONDS, ROUTER_REQUESTS_TOTAL


@dataclass
class MetricNames:
    """Prometheus series the gates read. Defaults: the local router + the housing predictor."""

    requests: str = ROUTER_REQUESTS_TOTAL  # counter: model_version, code
    errors: str | None = None  # a separate error counter (then error rate = errors / (requests + errors))
    latency: str = ROUTER_REQUEST_SECONDS  # histogram: model_version
    predictions: str = PREDICTION_VALUE  # histogram of predicted values: model_version
    drift: str = DRIFT_SCORE  # gauge: model_version
    version_label: str = VERSION_LABEL
    error_code_regex: str = "5.."
    code_label: str = "code"
    selector: str = ""  # extra matchers, e.g. 'namespace="ml"'


@dataclass
class Thresholds:
    max_error_rate: float = 0.01
    max_p95_seconds: float = 0.5
    max_mean_shift: float = 0.10
    max_psi: float = 0.25
    max_drift: float = 0.5


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
