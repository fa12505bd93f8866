"""Analysis: PromQL building, statistics and the step/decision loop on given values."""

from __future__ import annotations

import pytest

from rollout.analysis import (
    Analysis,
    AnalysisConfig,
    EventLog,
    MetricNames,
    Thresholds,
    bucket_mean,
    build_queries,
    evaluate_gates,
    mean_shift,
    parse_steps,
    psi,
)
from rollout.backends.base import RolloutStatus


def test_parse_steps():
    assert parse_steps("10,25,50,100") == [10, 25, 50, 100]
    for bad in ("", "10,x", "50,25,100", "10,50", "0,100", "10,200"):
        with pytest.raises(ValueError):
            parse_steps(bad)


def test_queries_are_scoped_by_version_and_window():
    q = build_queries(MetricNames(selector='job="housing"'), "7", "15s")
    assert q["requests"] == 'sum(increase(housing_router_requests_total{model_version="7",job="housing"}[15s]))'
    assert 'code=~"5.."' in q["error_rate"] and "or vector(0)" in q["error_rate"]
    assert q["p95_latency"].startswith(
        "histogram_quantile(0.95, sum by (le) (rate(housing_router_request_duration_seconds_bucket{"
    )
    assert "_sum{" in q["prediction_mean"] and "_count{" in q["prediction_mean"]
    assert q["prediction_buckets"].startswith("sum by (le) (increase(housing_prediction_value_bucket{")


def test_psi_and_mean_shift():
    same = {"10": 10, "20": 60, "30": 90, "+Inf": 100}
    assert psi(same, same) == pytest.approx(0.0)
    shifted = {"10": 0, "20": 5, "30": 20, "+Inf": 100}
    assert psi(same, shifted) > 1.0
    assert psi({}, same) is None
    assert mean_shift(100.0, 110.0) == pytest.approx(0.1)
    assert mean_shift(None, 1.0) is None


def test_gates():
    t = Thresholds(max_error_rate=0.01, max_p95_seconds=0.2, max_mean_shift=0.1, max_psi=0.2, max_drift=0.5)
    ok = evaluate_gates({"error_rate": 0.0, "p95_latency": 0.01, "mean_shift": 0.01, "psi": 0.01, "drift": 0.1}, t)
    assert all(g.passed for g in ok)
    bad = {g.name: g for g in evaluate_gates({"error_rate": 0.5, "psi": 0.9}, t)}
    assert not bad["error_rate"].passed and not bad["psi"].passed
    assert bad["drift"].passed and bad["drift"].note == "no data"
    assert not {g.name: g for g in evaluate_gates({}, t)}["error_rate"].passed


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


def test_bucket_mean_estimates_without_sum():
    assert bucket_mean({"10": 50, "20": 100, "+Inf": 100}) == pytest.approx(12.5)  # 0.5·10 + 0.5·15
    assert bucket_mean({"-1": 0, "1": 10, "+Inf": 10}) == pytest.approx(0.0)
    assert bucket_mean({}) is None


def test_psi_across_different_bucket_bounds():
    # the same uniform(0, 100) distribution, histogrammed on two different bucket sets
    a = {str(b): b * 10 for b in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)} | {"+Inf": 1000}
    b = {str(b): b * 10 for b in (15, 35, 55, 75, 95, 100)} | {"+Inf": 1000}
    assert psi(a, b, debias=False) == pytest.approx(0.0, abs=0.01)
    shifted = {str(x): max(0, (x - 30) * 10 / 0.7) if x > 30 else 0 for x in (15, 35, 55, 75, 95, 100)} | {"+Inf": 1000}
    assert psi(a, shifted) > 0.5
