"""Metric-gated progressive delivery: steps, gates read from Prometheus, promote or roll back.

Each step sets the challenger's weight, lets traffic flow for ``interval`` seconds and reads the
gates from Prometheus over the step's window, per model version:

- ``error_rate``: challenger failed requests ÷ requests ≤ ``max_error_rate`` (behind a gateway,
  the worse of the gateway's and the predictor's: :mod:`rollout.error_gate`);
- ``p95_latency``: ``histogram_quantile(0.95, …)`` of the challenger ≤ ``max_p95_seconds`` (the
  gateway's when there is one: what the client sees);
- ``mean_shift`` and ``psi``: statistical tests at level ``alpha`` (:mod:`rollout.evidence`) of
  the challenger's predictions against the champion's (whose baseline covers the whole rollout
  so far, so it still exists at the 100 % step) — the paired comparison of the two answers to
  the same rows decides the mean shift when the router shadows the champion's requests;
- ``drift``: the challenger's drift score (as exported by the predictor) ≤ ``max_drift``.

A gate that says "not enough evidence", fewer than ``min_requests`` challenger requests, no error
rate (behind a gateway: no gateway data for the challenger, e.g. while the gateway restarts) or a
failed Prometheus query makes the step look again one ``interval`` later, up to
``max_wait_factor`` looks; each look tests at
``alpha / looks`` (Bonferroni), so a step fails a challenger within the thresholds with
probability at most ``alpha`` per gate. A step still wanting evidence at its last look ends the
run **inconclusive**: nothing is rolled back or promoted (the split stays as it is; a cluster run
resumes from that step when run again). A failed step counts a failure and repeats at the same
weight; ``max_failures`` failures roll back. Passing every step promotes. Every look is appended
to a JSON-lines event log with each gate's evidence (estimate, interval, p-value, counts).

This module is the run loop and its decisions (:class:`Decision`, :class:`Verdict`); the
configuration is in :mod:`rollout.analysis_config`, the PromQL in :mod:`rollout.promql`, the
histogram statistics in :mod:`rollout.histograms` and :mod:`rollout.evidence`, the gates in
:mod:`rollout.gates` and the event log in :mod:`rollout.event_log`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from rollout.analysis_config import AnalysisConfig
from rollout.backends.base import AwaitsReady, Backend, RolloutStatus
from rollout.error_gate import judge, read_gateway
from rollout.errors import PrometheusError, RolloutError
from rollout.event_log import EventLog
from rollout.gates import GateResult, evaluate_gates
from rollout.histograms import bucket_mean
from rollout.prom import Prometheus
from rollout.promql import build_queries, window_of


class Decision(StrEnum):
    """What a step decides."""

    ADVANCE = "advance"  # every gate passed: next weight
    HOLD = "hold"  # a gate failed: the same weight again
    ROLLBACK = "rollback"  # max_failures failed steps: back to the champion
    PROMOTE = "promote"  # the last step passed
    WAIT = "wait"  # not enough evidence yet: look again after another interval
    INCONCLUSIVE = "inconclusive"  # still not enough evidence at the step's last look: stop, change nothing


class Verdict(StrEnum):
    """How a rollout ended."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    INCONCLUSIVE = "inconclusive"  # not enough evidence within the limit: neither promoted nor rolled back


def decide(
    passed: bool, failures: int, max_failures: int, last_step: bool, wanting: bool = False, last_look: bool = True
) -> Decision:
    """A step's decision from whether its gates passed (or want more evidence) and the failed steps so far."""
    if passed and wanting:
        return Decision.INCONCLUSIVE if last_look else Decision.WAIT
    if passed:
        return Decision.PROMOTE if last_step else Decision.ADVANCE
    return Decision.ROLLBACK if failures >= max_failures else Decision.HOLD


def describe_gate(g: GateResult) -> str:
    """One phrase for a gate: its value against the threshold and, for a test, the evidence."""
    if g.value is None:
        return f"{g.name}: {g.note or 'no data'}"
    ev = g.evidence
    if ev is None:
        return f"{g.name}={g.value:.4g} > {g.threshold:g}"
    counts = ", ".join(f"{k} {v:g}" for k, v in ev["counts"].items())
    rel = ">" if ev["verdict"] == "exceeds" else "vs"
    return (
        f"{g.name}={g.value:.4g} {rel} {g.threshold:g} ({ev['comparison']}, interval "
        f"[{ev['low']:.4g}, {ev['high']:.4g}], p={ev['p_value']:.3g}, {counts})"
    )


def failure_reasons(values: dict[str, Any], gates: list[GateResult], min_requests: int = 0) -> list[str]:
    """Why a step failed, one phrase per failed gate (empty: it passed or wants evidence). A gate
    without data (and a failed Prometheus query) is wanting evidence, never a failure: missing data
    must not roll a step back any more than it may promote it."""
    few = (values.get("challenger.requests") or 0.0) < min_requests
    return [describe_gate(g) for g in gates if not g.passed and not g.wanting and not (few and g.value is None)]


def wanting_reasons(values: dict[str, Any], gates: list[GateResult], min_requests: int) -> list[str]:
    """What the step still lacks to decide (never a failure): Prometheus unreadable, too few requests,
    gates without enough evidence or without data."""
    if "error" in values:  # nothing was read: no gate can say anything
        return [f"no data: {values['error']}"]
    reasons = [f"not enough evidence: {describe_gate(g)}" for g in gates if g.wanting]
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
        clock: Callable[[], float] = time.monotonic,
        extra_gates: Callable[[], list[GateResult]] | None = None,
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
        self.clock = clock
        self.extra_gates = extra_gates  # gates not read from Prometheus (the live-accuracy gate), judged at every look

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
        values["challenger.buckets"], values["champion.buckets"] = new_buckets, base_buckets  # type: ignore[assignment]
        for role, buckets in (("challenger", new_buckets), ("champion", base_buckets)):
            if values[f"{role}.prediction_mean"] is None and buckets:
                values[f"{role}.prediction_mean"] = bucket_mean(buckets)
                values[f"{role}.prediction_mean_source"] = "buckets"  # type: ignore[assignment]
        # the challenger's answers to the champion's own requests (shadow): the same rows answered by
        # both versions, whatever the weight, so they count over the whole rollout like the baseline
        q_pair = build_queries(m, self.challenger, baseline_window)
        if "paired_pairs" in q_pair:
            queries.update({f"paired.{k}": v for k, v in q_pair.items() if k.startswith("paired_")})
            pairs = self.prom.scalar(q_pair["paired_pairs"])
            if pairs:
                up, down = self.prom.scalar(q_pair["paired_up"]), self.prom.scalar(q_pair["paired_down"])
                values["paired.pairs"] = pairs
                values["paired.sum"] = (up or 0.0) - (down or 0.0)
                values["paired.squares"] = self.prom.scalar(q_pair["paired_squares"])
        gateway_values, gateway_q = read_gateway(self.prom, m, step_window, baseline_window)
        values.update(gateway_values)
        queries.update(gateway_q)
        judge(values, gateway=bool(m.gateway and m.gateway.services))
        values["drift"] = values["challenger.drift"]
        return values, queries

    def _wait_ready(self) -> str | None:
        """Wait for a just-deployed challenger to report Ready (backends that can tell); the reason if it never does."""
        if not isinstance(self.backend, AwaitsReady):
            return None
        started = time.monotonic()
        try:
            self.backend.wait_ready(self.cfg.ready_timeout)
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

    def _inconclusive(self, reason: str, failures: int, records: list[dict[str, Any]]) -> Outcome:
        """Not enough evidence at a step's last look: stop here, change nothing (never a rollback for lack of data)."""
        status = self.backend.status()
        self.log.write("inconclusive", reason=reason, failures=failures, status=status.to_dict())
        return Outcome(
            Verdict.INCONCLUSIVE, f"not enough evidence: {reason}", failures, records, status, str(self.log.path)
        )

    def run(self, challenger_uri: str | None = None, digest: str | None = None) -> Outcome:
        """Walk the steps (deploying ``challenger_uri`` first, pinned to ``digest``, unless it already
        runs); promote or roll back."""
        cfg = self.cfg
        started = self.clock()
        self.log.write(
            "start",
            champion=self.champion,
            challenger=self.challenger,
            challenger_uri=challenger_uri,
            config=asdict(cfg),
            backend=self.backend.name,
        )
        failures, index, records = 0, 0, []
        current_weight: int | None = None
        while index < len(cfg.steps):
            weight = cfg.steps[index]
            if current_weight is None:
                if challenger_uri is not None and digest:
                    self.backend.start(challenger_uri, weight, digest=digest)
                elif challenger_uri is not None:
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
            step_start = self.clock()
            looks = max(1, int(cfg.max_wait_factor))
            thresholds = replace(cfg.thresholds, alpha=cfg.thresholds.alpha / looks)  # Bonferroni over the looks
            for look in range(1, looks + 1):
                self.sleep(cfg.interval + (cfg.settle if look == 1 else 0.0))
                step_window = window_of(self.clock() - step_start)
                baseline_window = window_of(self.clock() - started + cfg.elapsed_before)
                try:
                    values, queries = self.read_values(step_window, baseline_window)
                except PrometheusError as exc:
                    values, queries = {"error": str(exc)}, {}
                gates = evaluate_gates(values, thresholds) if "error" not in values else []
                if self.extra_gates is not None:
                    gates += self.extra_gates()
                for g in gates:
                    if g.name in ("psi", "mean_shift"):
                        values[g.name] = g.value
                reasons = failure_reasons(values, gates, cfg.min_requests)
                wanting = wanting_reasons(values, gates, cfg.min_requests) if not reasons else []
                passed = not reasons
                decision = decide(
                    passed,
                    failures + (0 if passed else 1),
                    cfg.max_failures,
                    index == len(cfg.steps) - 1,
                    wanting=bool(wanting),
                    last_look=look == looks,
                )
                failures += 0 if passed else 1
                record = self.log.write(
                    "step",
                    step=index + 1,
                    look=look,
                    weights={"champion": 100 - weight, "challenger": weight},
                    window=step_window,
                    baseline_window=baseline_window,
                    alpha=thresholds.alpha,
                    queries=queries,
                    values=values,
                    gates=[asdict(g) for g in gates],
                    failures=failures,
                    decision=decision,
                    reasons=reasons + wanting,
                )
                records.append(record)
                summary = "all gates passed" if passed and not wanting else "; ".join(reasons + wanting)
                self.echo(f"  {decision} (look {look}/{looks}, {step_window}): {summary}")
                if decision is not Decision.WAIT:
                    break
            if decision is Decision.ROLLBACK:
                return self._rollback("; ".join(reasons), failures, records)
            if decision is Decision.INCONCLUSIVE:
                return self._inconclusive("; ".join(wanting), failures, records)
            if passed:
                index += 1
        status = self.backend.promote()
        if self.on_promote:
            self.on_promote()
        self.log.write("promote", failures=failures, status=status.to_dict())
        return Outcome(Verdict.PROMOTED, "all steps passed", failures, records, status, str(self.log.path))
