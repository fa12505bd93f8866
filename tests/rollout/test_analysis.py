"""The step/decision loop on given values."""

from __future__ import annotations

from rollout.analysis import Analysis, Decision, decide
from rollout.analysis_config import AnalysisConfig
from rollout.backends.base import RolloutStatus
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
