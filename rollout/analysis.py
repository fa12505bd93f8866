"""Metric-gated progressive delivery: steps, gates read from Prometheus, promote or roll back.

Each step sets the challenger's weight, lets traffic flow for ``interval`` seconds (longer, up
to ``max_wait_factor`` × interval, until the challenger has served ``min_requests``), then reads
the gates from Prometheus over the step's window, per model version:

- ``error_rate``: challenger 5xx / requests ≤ ``max_error_rate``;
- ``p95_latency``: ``histogram_quantile(0.95, …)`` of the challenger ≤ ``max_p95_seconds``;
- ``mean_shift``: |mean(challenger predictions) − mean(champion)| / |mean(champion)| ≤
  ``max_mean_shift`` (the champion's baseline covers the whole rollout so far, so it still exists
  at the 100 % step);
- ``psi``: population stability index of the challenger's prediction-value histogram against
  the champion's, over the same buckets ≤ ``max_psi``;
- ``drift``: the challenger's drift score (as exported by the predictor) ≤ ``max_drift``.

A failed step counts a failure and repeats at the same weight; ``max_failures`` failures roll
back. Passing every step promotes. Every step is appended to a JSON-lines event log.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bundle.reference import PSI_EPS
from bundle.reference import psi as population_stability
from predictor.series import DRIFT_SCORE, PREDICTION_VALUE, VERSION_LABEL
from rollout.backends.base import Backend, RolloutStatus
from rollout.prom import Prometheus, PrometheusError
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


# -- PromQL builders (pure) --------------------------------------------------------------------


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


# -- statistics and decisions (pure) -----------------------------------------------------------


def bucket_probabilities(cumulative: dict[str, float]) -> list[tuple[float, float]]:
    """Cumulative ``{le: count}`` → ``[(upper bound, probability)]`` per bucket."""
    items = sorted(((float(le), c) for le, c in cumulative.items()), key=lambda t: t[0])
    total = items[-1][1] if items else 0.0
    out, previous = [], 0.0
    for upper, count in items:
        out.append((upper, max(count - previous, 0.0) / total if total > 0 else 0.0))
        previous = count
    return out


def bucket_mean(cumulative: dict[str, float]) -> float | None:
    """Mean estimated from a cumulative histogram (bucket midpoints; the +Inf bucket at its lower
    bound). Used when a histogram's ``_sum`` is not exported — prometheus_client omits ``_sum``
    whenever the lowest bucket bound is negative."""
    probs = bucket_probabilities(cumulative)
    if not probs or sum(p for _, p in probs) == 0:
        return None
    finite = [u for u, _ in probs if math.isfinite(u)]
    if not finite:
        return None
    total, lower = 0.0, None
    for upper, p in probs:
        if not math.isfinite(upper):
            mid = finite[-1]
        elif lower is None:
            mid = upper
        else:
            mid = (lower + upper) / 2
        total += p * mid
        lower = upper if math.isfinite(upper) else lower
    return total


def rebin(cumulative: dict[str, float], bounds: list[float]) -> dict[str, float]:
    """A cumulative histogram re-expressed on other bucket ``bounds`` (``le`` values).

    Each predictor takes its histogram buckets from its own bundle's reference deciles, so the
    champion's and the challenger's ``le`` differ; the CDF is interpolated linearly inside
    buckets (as ``histogram_quantile`` does), with the first bucket assumed as wide as the second.
    """
    pts = sorted((float(le), c) for le, c in cumulative.items())
    finite = [(b, c) for b, c in pts if math.isfinite(b)]
    total = pts[-1][1] if pts else 0.0
    if len(finite) >= 2:
        finite.insert(0, (finite[0][0] - (finite[1][0] - finite[0][0]), 0.0))
    elif len(finite) == 1:
        finite.insert(0, (finite[0][0] - 1.0, 0.0))

    def cdf(x: float) -> float:
        if not math.isfinite(x):
            return total
        if not finite or x <= finite[0][0]:
            return 0.0
        for (x0, c0), (x1, c1) in zip(finite, finite[1:], strict=False):
            if x <= x1:
                return c0 + (c1 - c0) * (x - x0) / (x1 - x0) if x1 > x0 else c1
        return finite[-1][1]

    return {repr(b) if math.isfinite(b) else "+Inf": cdf(b) for b in bounds}


def psi(
    champion: dict[str, float], challenger: dict[str, float], eps: float = PSI_EPS, debias: bool = True
) -> float | None:
    """Population stability index of two cumulative histograms over the same buckets.

    With ``debias`` the value expected from sampling noise alone is subtracted: PSI is a
    symmetric KL divergence, ≈ χ²-distributed with ``k − 1`` degrees of freedom scaled by
    ``1/n₁ + 1/n₂`` for two samples of one distribution over ``k`` non-empty buckets. Without it a
    step of a few dozen requests shows PSI ≈ 0.3 between identical models.
    """
    if champion and challenger and {float(k) for k in champion} != {float(k) for k in challenger}:
        challenger = rebin(challenger, sorted(float(k) for k in champion))
    base, new = dict(bucket_probabilities(champion)), dict(bucket_probabilities(challenger))
    if not base or not new or sum(base.values()) == 0 or sum(new.values()) == 0:
        return None
    uppers = sorted(set(base) | set(new))
    b = [base.get(upper, 0.0) for upper in uppers]
    n = [new.get(upper, 0.0) for upper in uppers]
    occupied = sum((x > 0) or (y > 0) for x, y in zip(b, n, strict=True))
    value = population_stability(b, n, eps)
    if debias:
        n_base, n_new = max(champion.values()), max(challenger.values())
        value -= max(occupied - 1, 0) * (1.0 / max(n_base, 1.0) + 1.0 / max(n_new, 1.0))
        value = max(value, 0.0)
    return value


@dataclass
class GateResult:
    name: str
    value: float | None
    threshold: float
    passed: bool
    note: str = ""


def evaluate_gates(values: dict[str, float | None], thresholds: Thresholds) -> list[GateResult]:
    """Decide each gate from the values read. A missing error rate fails (no evidence of health);
    missing model-aware values are reported but do not fail a step on their own."""
    results: list[GateResult] = []

    def gate(name: str, value: float | None, limit: float, required: bool) -> None:
        if value is None:
            results.append(GateResult(name, None, limit, not required, "no data"))
        else:
            results.append(GateResult(name, value, limit, value <= limit))

    gate("error_rate", values.get("error_rate"), thresholds.max_error_rate, True)
    gate("p95_latency", values.get("p95_latency"), thresholds.max_p95_seconds, False)
    gate("mean_shift", values.get("mean_shift"), thresholds.max_mean_shift, False)
    gate("psi", values.get("psi"), thresholds.max_psi, False)
    # The drift score measures the traffic against each model's training data; the same traffic
    # drifts for the champion too, so the challenger is only blamed beyond the champion's score.
    champion_drift = values.get("champion.drift")
    drift_limit = thresholds.max_drift if champion_drift is None else max(thresholds.max_drift, champion_drift + 0.1)
    gate("drift", values.get("drift"), drift_limit, False)
    return results


def mean_shift(champion_mean: float | None, challenger_mean: float | None) -> float | None:
    if champion_mean is None or challenger_mean is None:
        return None
    return abs(challenger_mean - champion_mean) / max(abs(champion_mean), 1e-9)


# -- event log -------------------------------------------------------------------------------


class EventLog:
    """Append-only JSON lines: one object per event (start, step, promote, rollback, error)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **data: Any) -> dict[str, Any]:
        record = {"ts": time.time(), "event": event, **data}
        with open(self.path, "a") as out:
            out.write(json.dumps(record, default=str) + "\n")
        return record

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def new_log(home: Path, name: str) -> EventLog:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return EventLog(home / "rollouts" / f"{name}-{stamp}-{uuid.uuid4().hex[:6]}.jsonl")


# -- the run loop ----------------------------------------------------------------------------


@dataclass
class Outcome:
    decision: str  # promoted | rolled_back
    reason: str
    failures: int
    steps: list[dict[str, Any]]
    status: RolloutStatus | None
    log_path: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.to_dict() if self.status else None
        return out


class Analysis:
    """Drive a backend through the steps, judging each from Prometheus."""

    def __init__(
        self,
        backend: Backend,
        prometheus: Prometheus,
        config: AnalysisConfig,
        champion_version: str,
        challenger_version: str,
        log: EventLog,
        *,
        on_promote: Callable[[], Any] | None = None,
        on_rollback: Callable[[str], Any] | None = None,
        echo: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.backend = backend
        self.prom = prometheus
        self.cfg = config
        self.champion = champion_version
        self.challenger = challenger_version
        self.log = log
        self.on_promote = on_promote
        self.on_rollback = on_rollback
        self.echo = echo or (lambda _msg: None)
        self.sleep = sleep

    def read_values(self, step_window: str, baseline_window: str) -> tuple[dict[str, float | None], dict[str, str]]:
        """Read every gate's inputs; returns (values, the PromQL used)."""
        m = self.cfg.metrics
        q_new = build_queries(m, self.challenger, step_window)
        q_base = build_queries(m, self.champion, baseline_window)
        queries = {f"challenger.{k}": v for k, v in q_new.items()}
        queries.update({f"champion.{k}": v for k, v in q_base.items()})
        values: dict[str, float | None] = {}
        for key in ("requests", "error_rate", "p95_latency", "prediction_mean", "drift"):
            values[f"challenger.{key}"] = self.prom.scalar(q_new[key])
        for key in ("requests", "error_rate", "prediction_mean", "drift"):
            values[f"champion.{key}"] = self.prom.scalar(q_base[key])
        new_buckets = self.prom.by_label(q_new["prediction_buckets"], "le")
        base_buckets = self.prom.by_label(q_base["prediction_buckets"], "le")
        values["psi"] = psi(base_buckets, new_buckets)
        for role, buckets in (("challenger", new_buckets), ("champion", base_buckets)):
            if values[f"{role}.prediction_mean"] is None and buckets:
                values[f"{role}.prediction_mean"] = bucket_mean(buckets)
                values[f"{role}.prediction_mean_source"] = "buckets"
        values["mean_shift"] = mean_shift(values["champion.prediction_mean"], values["challenger.prediction_mean"])
        values["error_rate"] = values["challenger.error_rate"]
        values["p95_latency"] = values["challenger.p95_latency"]
        values["drift"] = values["challenger.drift"]
        return values, queries

    def _requests(self, window: str) -> float:
        q = build_queries(self.cfg.metrics, self.challenger, window)["requests"]
        return self.prom.scalar(q) or 0.0

    def run(self, challenger_uri: str | None = None) -> Outcome:
        cfg = self.cfg
        started = time.monotonic()
        self.log.write(
            "start",
            champion=self.champion,
            challenger=self.challenger,
            challenger_uri=challenger_uri,
            config=asdict(cfg),
            backend=getattr(self.backend, "name", "?"),
        )
        failures, index, records = 0, 0, []
        current_weight: int | None = None
        while index < len(cfg.steps):
            weight = cfg.steps[index]
            if current_weight is None and challenger_uri is not None:
                self.backend.start(challenger_uri, weight)
            elif weight != current_weight:
                self.backend.set_weight(weight)
            current_weight = weight
            self.echo(f"step {index + 1}/{len(cfg.steps)}: challenger at {weight}%")
            step_start = time.monotonic()
            self.sleep(cfg.interval)
            deadline = step_start + cfg.interval * cfg.max_wait_factor
            requests = self._requests(window_of(time.monotonic() - step_start))
            while requests < cfg.min_requests and time.monotonic() < deadline:
                self.sleep(1.0)
                requests = self._requests(window_of(time.monotonic() - step_start))
            self.sleep(cfg.settle)
            step_window = window_of(time.monotonic() - step_start)
            baseline_window = window_of(time.monotonic() - started + cfg.settle)
            try:
                values, queries = self.read_values(step_window, baseline_window)
            except PrometheusError as exc:
                values, queries = {"error": str(exc)}, {}
            gates = evaluate_gates(values, cfg.thresholds) if "error" not in values else []
            failed = [g for g in gates if not g.passed]
            reasons = [
                f"{g.name}={g.value:.4g} > {g.threshold:g}" if g.value is not None else f"{g.name}: no data"
                for g in failed
            ]
            if "error" in values:
                reasons.append(str(values["error"]))
            challenger_requests = values.get("challenger.requests") or 0.0
            if challenger_requests < cfg.min_requests:
                reasons.append(f"only {challenger_requests:.0f} challenger requests < {cfg.min_requests}")
            passed = not reasons
            failures += 0 if passed else 1
            decision = "advance" if passed else ("rollback" if failures >= cfg.max_failures else "hold")
            if passed and index == len(cfg.steps) - 1:
                decision = "promote"
            record = self.log.write(
                "step",
                step=index + 1,
                weights={"champion": 100 - weight, "challenger": weight},
                window=step_window,
                baseline_window=baseline_window,
                queries=queries,
                values=values,
                gates=[asdict(g) for g in gates],
                failures=failures,
                decision=decision,
                reasons=reasons,
            )
            records.append(record)
            self.echo(f"  {decision}: " + ("all gates passed" if passed else "; ".join(reasons)))
            if decision == "rollback":
                reason = "; ".join(reasons)
                status = self.backend.rollback(reason)
                if self.on_rollback:
                    self.on_rollback(reason)
                self.log.write("rollback", reason=reason, failures=failures, status=status.to_dict())
                return Outcome("rolled_back", reason, failures, records, status, str(self.log.path))
            if passed:
                index += 1
        status = self.backend.promote()
        if self.on_promote:
            self.on_promote()
        self.log.write("promote", failures=failures, status=status.to_dict())
        return Outcome("promoted", "all steps passed", failures, records, status, str(self.log.path))
