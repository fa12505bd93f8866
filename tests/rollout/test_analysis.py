"""The step/decision loop on given values."""

from __future__ import annotations

import re

from rollout.analysis import Analysis, Decision, decide
from rollout.analysis_config import AnalysisConfig
from rollout.backends.base import RolloutStatus
from rollout.errors import RolloutError
from rollout.event_log import EventLog
from testkit.rollout_runs import FakeBackend, FewRequests, GivenValues


def run(error_rate, tmp_path, max_failures=2, digest=None):
    backend = FakeBackend()
    cfg = AnalysisConfig(steps=[10, 50, 100], interval=0, min_requests=10, max_failures=max_failures, settle=0)
    log = EventLog(tmp_path / "rollouts" / "r.jsonl")
    events = []
    outcome = Analysis(
        backend,
        GivenValues(error_rate),
        cfg,
        "1",
        "2",
        log,
        on_promote=lambda: events.append("promote"),
        on_rollback=events.append,
        sleep=lambda s: None,
    ).run("s3://models/housing/2", digest)
    return backend, outcome, events, log.read()


def test_good_challenger_walks_all_steps_and_promotes(tmp_path):
    backend, outcome, events, log = run(0.0, tmp_path)
    assert outcome.decision == "promoted"
    assert backend.calls == [("start", 10), ("weight", 50), ("weight", 100), ("promote",)]
    assert events == ["promote"]
    assert [e["event"] for e in log] == ["start", "step", "step", "step", "promote"]
    step = log[1]
    assert step["weights"] == {"champion": 90, "challenger": 10}
    assert any("histogram_quantile" in q for q in step["queries"].values())
    assert step["decision"] == "advance" and log[3]["decision"] == "promote"


def test_bad_challenger_rolls_back_after_max_failures(tmp_path):
    backend, outcome, events, log = run(0.3, tmp_path, max_failures=2)
    assert outcome.decision == "rolled_back"
    assert backend.calls[0] == ("start", 10) and backend.calls[-1][0] == "rollback"
    assert ("weight", 50) not in backend.calls
    assert "error_rate=0.3 > 0.01" in outcome.reason
    assert [e["decision"] for e in log if e["event"] == "step"] == ["hold", "rollback"]
    assert len(events) == 1 and "error_rate" in events[0]


def test_decisions() -> None:
    assert decide(True, 0, 2, last_step=False) is Decision.ADVANCE
    assert decide(True, 1, 2, last_step=True) is Decision.PROMOTE
    assert decide(False, 1, 2, last_step=False) is Decision.HOLD
    assert decide(False, 2, 2, last_step=True) is Decision.ROLLBACK
    assert Decision.ROLLBACK == "rollback"  # written to the event log as the plain string


class NeverReady(FakeBackend):
    """A cluster backend whose challenger never passes its readiness probe (a crashing bundle)."""

    def wait_ready(self, timeout):
        self.calls.append(("wait_ready", timeout))
        raise RolloutError("canary 'v2' not Ready after 5 s (CanariesNotReady)")


def test_challenger_that_never_turns_ready_is_rolled_back_before_any_gate(tmp_path):
    backend = NeverReady()
    cfg = AnalysisConfig(steps=[10, 100], interval=0, min_requests=10, settle=0, ready_timeout=5)
    prom = GivenValues(0.0)
    log = EventLog(tmp_path / "r.jsonl")
    rejected = []
    outcome = Analysis(backend, prom, cfg, "1", "2", log, on_rollback=rejected.append, sleep=lambda s: None).run(
        "s3://models/housing/2"
    )
    assert outcome.decision == "rolled_back"
    assert backend.calls[:2] == [("start", 10), ("wait_ready", 5)] and backend.calls[-1][0] == "rollback"
    assert "never became Ready" in outcome.reason and "CanariesNotReady" in outcome.reason
    assert prom.seen == []  # no gate was read, no traffic counted for a challenger that never served
    assert rejected == [outcome.reason]
    assert [e["event"] for e in log.read()] == ["start", "step", "rollback"]


def test_ready_wait_is_logged_before_the_first_step(tmp_path):
    class ReadyAtOnce(FakeBackend):
        def wait_ready(self, timeout):
            self.calls.append(("wait_ready", timeout))

    backend = ReadyAtOnce()
    cfg = AnalysisConfig(steps=[100], interval=0, min_requests=10, settle=0)
    log = EventLog(tmp_path / "r.jsonl")
    outcome = Analysis(backend, GivenValues(0.0), cfg, "1", "2", log, sleep=lambda s: None).run("s3://x/2")
    assert outcome.decision == "promoted"
    assert [e["event"] for e in log.read()] == ["start", "ready", "step", "promote"]


class RunningCanary(FakeBackend):
    """A canary a stopped run left at 50 %: it reports its weight and becomes Ready."""

    def status(self):
        return RolloutStatus("fake", challenger="s3://models/housing/2", challenger_percent=50, champion_percent=50)

    def wait_ready(self, timeout):
        self.calls.append(("wait_ready",))
        return self.status()


def test_a_resumed_canary_is_adopted_not_started_and_its_baseline_reaches_back(tmp_path):
    backend, prom = RunningCanary(), GivenValues(0.0)
    cfg = AnalysisConfig(steps=[50, 100], interval=0, min_requests=10, settle=0, elapsed_before=900)
    log = EventLog(tmp_path / "rollouts" / "r.jsonl")
    outcome = Analysis(backend, prom, cfg, "1", "2", log, sleep=lambda s: None).run(None)
    assert outcome.decision == "promoted"
    # no start, no write of the weight it already has; Ready checked before the first step counts
    assert backend.calls == [("wait_ready",), ("weight", 100), ("promote",)]
    windows = {int(w) for q in prom.seen for w in re.findall(r"\[(\d+)s\]", q)}
    assert max(windows) >= 900  # the champion's baseline covers the stopped run's steps too


def test_lack_of_data_waits_then_ends_inconclusive_never_rolls_back(tmp_path):
    backend, prom = FakeBackend(), FewRequests(0.0)
    cfg = AnalysisConfig(steps=[10, 100], interval=5, min_requests=10, max_failures=1, settle=0)
    log = EventLog(tmp_path / "r.jsonl")
    rejected, slept = [], []
    outcome = Analysis(backend, prom, cfg, "1", "2", log, on_rollback=rejected.append, sleep=slept.append).run(
        "s3://x/2"
    )
    assert outcome.decision == "inconclusive" and outcome.failures == 0
    assert not rejected and all(c[0] != "rollback" for c in backend.calls) and ("promote",) not in backend.calls
    steps = [e for e in log.read() if e["event"] == "step"]
    assert [(s["look"], s["decision"]) for s in steps] == [(1, "wait"), (2, "wait"), (3, "inconclusive")]
    assert slept == [5, 5, 5]  # one interval per look, up to max_wait_factor looks
    assert "only 4 challenger requests < 10" in outcome.reason and "not enough evidence" in outcome.reason
    psi = next(g for g in steps[-1]["gates"] if g["name"] == "psi")
    assert psi["evidence"]["verdict"] == "not enough evidence" and psi["evidence"]["counts"]["challenger"] == 4
    assert log.read()[-1]["event"] == "inconclusive"
    assert log.read()[-1]["status"]["challenger_percent"] == 10  # where it holds, as the backend reports it


def test_wait_and_inconclusive_decisions():
    assert decide(True, 0, 2, last_step=False, wanting=True, last_look=False) is Decision.WAIT
    assert decide(True, 0, 2, last_step=False, wanting=True, last_look=True) is Decision.INCONCLUSIVE
    assert decide(False, 2, 2, last_step=False, wanting=True, last_look=False) is Decision.ROLLBACK  # evidence wins


class PrometheusDown(GivenValues):
    """Every query fails as when Prometheus cannot be reached."""

    def scalar(self, q):
        from rollout.errors import PrometheusError

        self.seen.append(q)
        raise PrometheusError("Prometheus at http://127.0.0.1:9 unreachable: connection refused")


def test_prometheus_down_holds_then_ends_inconclusive_never_rolls_back(tmp_path):
    """A failed query is no evidence either way: the step looks again, then the run stops inconclusive
    (it used to count a failure per look and roll the challenger back after max_failures)."""
    backend = FakeBackend()
    cfg = AnalysisConfig(steps=[10, 100], interval=5, min_requests=10, max_failures=1, settle=0)
    log = EventLog(tmp_path / "r.jsonl")
    rejected = []
    outcome = Analysis(
        backend, PrometheusDown(0.0), cfg, "1", "2", log, on_rollback=rejected.append, sleep=lambda s: None
    ).run("s3://x/2")
    assert outcome.decision == "inconclusive" and outcome.failures == 0, outcome.reason
    assert not rejected and backend.calls == [("start", 10)]  # the split stays where it was
    steps = [e for e in log.read() if e["event"] == "step"]
    assert [s["decision"] for s in steps] == ["wait", "wait", "inconclusive"]
    assert all("unreachable" in s["reasons"][0] for s in steps)


class GatewayAnswers(GivenValues):
    """The predictor's series answer; the gateway's have no data while ``gateway_down`` says so."""

    def __init__(self, gateway_error_rate, gateway_down):
        super().__init__(0.0)
        self.gateway_error_rate = gateway_error_rate
        self.gateway_down = gateway_down  # look number → True while the gateway is restarting
        self.look = 0

    def scalar(self, q):
        if q.startswith("sum(increase(housing_requests_total"):
            self.look += q.count('model_version="2"')  # the challenger's requests: read once per look
            return 500.0
        if "traefik_" in q:
            self.seen.append(q)
            if self.gateway_down(self.look):
                return None
            if q.startswith("sum(increase("):
                return 400.0
            if "histogram_quantile" in q:
                return 0.01
            return self.gateway_error_rate
        return super().scalar(q.replace("housing_requests_total", "housing_router_requests_total"))


def gateway_run(tmp_path, prom, max_failures=1):
    from rollout.analysis_config import GatewaySeries
    from rollout.orchestrator import cluster_metrics

    backend = FakeBackend()
    cfg = AnalysisConfig(steps=[10, 100], interval=5, min_requests=10, max_failures=max_failures, settle=0)
    cfg.metrics = cluster_metrics()
    cfg.metrics.gateway = GatewaySeries(services={"challenger": "c", "champion": "p"})
    log = EventLog(tmp_path / "r.jsonl")
    rejected = []
    outcome = Analysis(backend, prom, cfg, "1", "2", log, on_rollback=rejected.append, sleep=lambda s: None).run(
        "s3://x/2"
    )
    return backend, outcome, rejected, [e for e in log.read() if e["event"] == "step"]


def test_a_gateway_restart_holds_the_step_and_never_promotes_on_missing_data(tmp_path):
    """The predictors answer (500 requests, no error) but the gateway has no series for the
    challenger's backend: the step waits and the run ends inconclusive — neither promoted on the
    predictor's figures alone nor rolled back (it used to fail the step: a rollback at max_failures)."""
    backend, outcome, rejected, steps = gateway_run(tmp_path, GatewayAnswers(0.0, lambda look: True))
    assert outcome.decision == "inconclusive", outcome.reason
    assert ("promote",) not in backend.calls and not rejected
    assert [s["decision"] for s in steps] == ["wait", "wait", "inconclusive"]
    assert all("no data from the gateway" in " ".join(s["reasons"]) for s in steps), steps[-1]["reasons"]


def test_a_gateway_back_after_a_restart_lets_the_step_decide(tmp_path):
    """Missing at the first look, back at the second: the rollout goes on from the same step."""
    backend, outcome, _, steps = gateway_run(tmp_path, GatewayAnswers(0.0, lambda look: look <= 1))
    assert outcome.decision == "promoted", outcome.reason
    assert [s["decision"] for s in steps] == ["wait", "advance", "promote"]
    # and a gateway that comes back counting refused connections rolls the challenger back
    backend, outcome, rejected, steps = gateway_run(tmp_path / "bad", GatewayAnswers(0.3, lambda look: look <= 1))
    assert outcome.decision == "rolled_back" and "error_rate=0.3" in outcome.reason
    assert [s["decision"] for s in steps] == ["wait", "rollback"]


def test_the_challenger_is_deployed_pinned_to_its_registered_digest(tmp_path):
    backend, *_ = run(0.0, tmp_path, digest="c" * 64)
    assert backend.calls[0] == ("start", 10, "c" * 64)


def _with_extra_gate(tmp_path, gate):
    backend = FakeBackend()
    cfg = AnalysisConfig(steps=[10, 100], interval=0, min_requests=10, max_failures=2, settle=0)
    log = EventLog(tmp_path / "rollouts" / "x.jsonl")
    analysis = Analysis(backend, GivenValues(0.0), cfg, "1", "2", log, sleep=lambda s: None, extra_gates=lambda: [gate])
    return backend, analysis.run("s3://models/housing/2"), log.read()


def test_an_extra_gate_that_fails_holds_then_rolls_back(tmp_path):
    """The live-accuracy gate (rollout.live_step) joins every look's gates: failing, it fails the step."""
    from rollout.gates import GateResult

    failing = GateResult("live_rmse", 3.0, 1.02, False, "live RMSE 3 > champion's 1 × 1.02")
    backend, outcome, log = _with_extra_gate(tmp_path, failing)
    assert outcome.decision == "rolled_back" and "live_rmse=3 > 1.02" in outcome.reason
    steps = [e for e in log if e["event"] == "step"]
    assert [s["decision"] for s in steps] == ["hold", "rollback"]
    assert all(any(g["name"] == "live_rmse" for g in s["gates"]) for s in steps)


def test_an_extra_gate_wanting_evidence_ends_inconclusive(tmp_path):
    from rollout.evidence import NOT_ENOUGH
    from rollout.gates import GateResult

    waiting = GateResult("live_rmse", None, 1.02, True, "waiting for labels", {"verdict": NOT_ENOUGH})
    backend, outcome, log = _with_extra_gate(tmp_path, waiting)
    assert outcome.decision == "inconclusive" and "waiting for labels" in outcome.reason
    assert ("promote",) not in backend.calls and not any(c[0] == "rollback" for c in backend.calls)
