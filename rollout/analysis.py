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

This module is the run loop and its decisions (:class:`Decision`, :class:`Verdict`); the
configuration is in :mod:`rollout.analysis_config`, the PromQL in :mod:`rollout.promql`, the
histogram statistics in :mod:`rollout.histograms`, the gates in :mod:`rollout.gates` and the
event log in :mod:`rollout.event_log`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from rollout.analysis_config import AnalysisConfig
from rollout.backends.base import Backend, RolloutError, RolloutStatus
from rollout.event_log import EventLog
from rollout.gates import GateResult, evaluate_gates
from rollout.histograms import bucket_mean, mean_shift, psi
from rollout.prom import Prometheus, PrometheusError
from rollout.promql import build_queries, window_of


class Decision(StrEnum):
    """What a step decides."""

    ADVANCE = "advance"  # every gate passed: next weight
    HOLD = "hold"  # a gate failed: the same weight again
    ROLLBACK = "rollback"  # max_failures failed steps: back to the champion
    PROMOTE = "promote"  # the last step passed


class Verdict(StrEnum):
    """How a rollout ended."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"


def decide(passed: bool, failures: int, max_failures: int, last_step: bool) -> Decision:
    """A step's decision from whether its gates passed and the failed steps counted so far."""
    if passed:
        return Decision.PROMOTE if last_step else Decision.ADVANCE
    return Decision.ROLLBACK if failures >= max_failures else Decision.HOLD


def failure_reasons(values: dict[str, Any], gates: list[GateResult], min_requests: int) -> list[str]:
    """Why a step failed, one phrase per failed gate (empty: it passed)."""
    reasons = [
        f"{g.name}={g.value:.4g} > {g.threshold:g}" if g.value is not None else f"{g.name}: no data"
        for g in gates
        if not g.passed
    ]
    if "error" in values:
        reasons.append(str(values["error"]))
    challenger_requests = values.get("challenger.requests") or 0.0
    if challenger_requests < min_requests:
        reasons.append(f"only {challenger_requests:.0f} challenger requests < {min_requests}")
    return reasons


@dataclass
class Outcome:
    decision: Verdict
    reason: str
    failures: int
    steps: list[dict[str, Any]]
    status: RolloutStatus | None
    log_path: str
    #: Why the registry step after the cluster change did not happen (MLflow unreachable): the
    #: cluster is promoted/rolled back, the aliases are not; re-running the command finishes it.
    registry_pending: str | None = None

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
        on_step: Callable[[dict[str, Any]], Any] | None = None,
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
        self.on_step = on_step  # progress of each step (the rollout Lease records it)

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
        """The challenger's requests in ``window`` (0 while Prometheus cannot answer: the step then
        waits its longest and the gates say why)."""
        q = build_queries(self.cfg.metrics, self.challenger, window)["requests"]
        try:
            return self.prom.scalar(q) or 0.0
        except PrometheusError:
            return 0.0

    def _wait_for_traffic(self, step_start: float) -> None:
        """Let the step run ``interval`` s, longer (up to ``max_wait_factor``×) until ``min_requests``."""
        cfg = self.cfg
        self.sleep(cfg.interval)
        deadline = step_start + cfg.interval * cfg.max_wait_factor
        requests = self._requests(window_of(time.monotonic() - step_start))
        while requests < cfg.min_requests and time.monotonic() < deadline:
            self.sleep(1.0)
            requests = self._requests(window_of(time.monotonic() - step_start))
        self.sleep(cfg.settle)

    def _wait_ready(self) -> str | None:
        """Wait for a just-deployed challenger to report Ready (backends that can tell); the reason if it never does."""
        wait = getattr(self.backend, "wait_ready", None)
        if wait is None:
            return None
        started = time.monotonic()
        try:
            wait(self.cfg.ready_timeout)
        except RolloutError as exc:
            self.echo(f"  challenger not Ready: {exc}")
            return f"challenger never became Ready: {exc}"
        seconds = time.monotonic() - started
        self.log.write("ready", seconds=round(seconds, 2))
        self.echo(f"  challenger Ready after {seconds:.1f} s")
        return None

    def _rollback(self, reason: str, failures: int, records: list[dict[str, Any]]) -> Outcome:
        status = self.backend.rollback(reason)
        if self.on_rollback:
            self.on_rollback(reason)
        self.log.write("rollback", reason=reason, failures=failures, status=status.to_dict())
        return Outcome(Verdict.ROLLED_BACK, reason, failures, records, status, str(self.log.path))

    def run(self, challenger_uri: str | None = None) -> Outcome:
        """Walk the steps (deploying ``challenger_uri`` first, unless it already runs); promote or roll back."""
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
            if current_weight is None:
                if challenger_uri is not None:
                    self.backend.start(challenger_uri, weight)
                elif weight != self.backend.status().challenger_percent:  # adopted: it runs already
                    self.backend.set_weight(weight)
                not_ready = self._wait_ready()
                if not_ready is not None:
                    failures += 1
                    record = self.log.write(
                        "step",
                        step=index + 1,
                        weights={"champion": 100 - weight, "challenger": weight},
                        values={},
                        gates=[],
                        failures=failures,
                        decision=Decision.ROLLBACK,
                        reasons=[not_ready],
                    )
                    records.append(record)
                    return self._rollback(not_ready, failures, records)
            elif weight != current_weight:
                self.backend.set_weight(weight)
            current_weight = weight
            self.echo(f"step {index + 1}/{len(cfg.steps)}: challenger at {weight}%")
            if self.on_step:
                self.on_step({"step": f"{index + 1}/{len(cfg.steps)}", "weight": weight, "failures": failures})
            step_start = time.monotonic()
            self._wait_for_traffic(step_start)
            step_window = window_of(time.monotonic() - step_start)
            baseline_window = window_of(time.monotonic() - started + cfg.elapsed_before + cfg.settle)
            try:
                values, queries = self.read_values(step_window, baseline_window)
            except PrometheusError as exc:
                values, queries = {"error": str(exc)}, {}
            gates = evaluate_gates(values, cfg.thresholds) if "error" not in values else []
            reasons = failure_reasons(values, gates, cfg.min_requests)
            passed = not reasons
            failures += 0 if passed else 1
            decision = decide(passed, failures, cfg.max_failures, index == len(cfg.steps) - 1)
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
            if decision is Decision.ROLLBACK:
                return self._rollback("; ".join(reasons), failures, records)
            if passed:
                index += 1
        status = self.backend.promote()
        if self.on_promote:
            self.on_promote()
        self.log.write("promote", failures=failures, status=status.to_dict())
        return Outcome(Verdict.PROMOTED, "all steps passed", failures, records, status, str(self.log.path))
