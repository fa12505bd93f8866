"""The rollout's step/decision loop on given values: a backend that records its calls, Prometheus answers
fixed in advance, and an event log written by the real :class:`~rollout.analysis.Analysis` from them.

For the analysis, the report and the watch tests (unit tier); the backends themselves are tested on
real servers (the integration and node tiers).
"""

from __future__ import annotations

from rollout.analysis import Analysis
from rollout.analysis_config import AnalysisConfig
from rollout.backends.base import RolloutStatus
from rollout.event_log import EventLog


class FakeBackend:
    """Records the calls the analysis makes; ``status`` reads back the last weight it was given."""

    name = "fake"

    def __init__(self):
        self.calls = []
        self.percent = 0

    def start(self, uri, percent, **pinned):
        self.calls.append(("start", percent, *pinned.values()))
        self.percent = percent
        return RolloutStatus("fake", challenger_percent=percent)

    def set_weight(self, percent):
        self.calls.append(("weight", percent))
        self.percent = percent
        return RolloutStatus("fake", challenger_percent=percent)

    def promote(self):
        self.calls.append(("promote",))
        self.percent = 0
        return RolloutStatus("fake", challenger_percent=0, champion_percent=100)

    def rollback(self, reason):
        self.calls.append(("rollback", reason))
        self.percent = 0
        return RolloutStatus("fake")

    def status(self):
        return RolloutStatus("fake", challenger_percent=self.percent, champion_percent=100 - self.percent)


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
        return {"10": 500, "30": 4500, "+Inf": 5000}  # enough predictions for the tests to decide


class FewRequests(GivenValues):
    """A challenger that gets only a handful of requests and predictions."""

    def scalar(self, q):
        if q.startswith("sum(increase(housing_router_requests_total"):
            return 4.0
        return super().scalar(q)

    def by_label(self, q, label):
        return {"10": 1, "30": 3, "+Inf": 4}


def run_to_log(tmp_path, error_rate: float) -> EventLog:
    cfg = AnalysisConfig(steps=[10, 50, 100], interval=0, min_requests=10, max_failures=2, settle=0)
    log = EventLog(tmp_path / "rollouts" / "housing-20260101T000000-abcdef.jsonl")
    Analysis(FakeBackend(), GivenValues(error_rate), cfg, "1", "2", log, sleep=lambda s: None).run("s3://m/h/2")
    return log
