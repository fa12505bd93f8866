"""The step/decision loop on given values."""

from __future__ import annotations

import re

from rollout.analysis import Analysis, Decision, decide
from rollout.analysis_config import AnalysisConfig
from rollout.backends.base import RolloutError, RolloutStatus
from rollout.event_log import EventLog


class FakeBackend:
    name = "fake"

    def __init__(self):
        self.calls = []

    def start(self, uri, percent):
        self.calls.append(("start", percent))
        return RolloutStatus("fake", challenger_percent=percent)

    def set_weight(self, percent):
        self.calls.append(("weight", percent))
        return RolloutStatus("fake", challenger_percent=percent)

    def promote(self):
        self.calls.append(("promote",))
        return RolloutStatus("fake", challenger_percent=0, champion_percent=100)

    def rollback(self, reason):
        self.calls.append(("rollback", reason))
        return RolloutStatus("fake")


class GivenValues:
    """Answers queries with fixed values (for the decision loop only)."""

    def __init__(self, error_rate):
        self.error_rate = error_rate
        self.seen = []

    def scalar(self, q):
        self.seen.append(q)
        if q.startswith("sum(increase(housing_router_requests_total"):
            return 500.0
        if "error" not in q and "/ sum(rate(" in q:
            return self.error_rate
        if "histogram_quantile" in q:
            return 0.01
        if "_sum{" in q:
            return 25.0
        return None

    def by_label(self, q, label):
        return {"10": 10, "30": 90, "+Inf": 100}


def run(error_rate, tmp_path, max_failures=2):
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
    ).run("s3://models/housing/2")
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
