"""The rollout run's lifecycle: what it starts on this machine it stops, in reverse order, however it ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout import orchestrator
from rollout.backends.base import Backend, Prepared, RolloutStatus
from rollout.errors import UsageError
from rollout.lease import LeaseState
from rollout.orchestrator import RunOptions, resume_steps, run_rollout


class FakeBackend:
    """Records the lifecycle calls; ``local`` says whether it runs its own processes and router."""

    name = "fake"

    def __init__(self, events: list[str], local: bool, tmp: Path) -> None:
        self.events, self.runs_champion, self.tmp = events, local, tmp

    def prepare(self, champion_uri, challenger_uri, *, port=None, sticky=False) -> Prepared:
        self.events.append(f"prepare {champion_uri} {challenger_uri}")
        if self.runs_champion:
            return Prepared("1", "2", None, router_url="http://router", targets_file=self.tmp / "targets.json")
        return Prepared("1", "2", challenger_uri)

    def close(self) -> None:
        self.events.append("close")

    def status(self) -> RolloutStatus:
        return RolloutStatus(backend="fake")

    def start(self, challenger_uri, percent):  # pragma: no cover - the analysis is replaced
        raise AssertionError

    set_weight = promote = rollback = start


class Recorder:
    """A context manager standing in for what the run starts (Prometheus, traffic)."""

    def __init__(self, events: list[str], what: str) -> None:
        self.events, self.what = events, what
        self.url, self.codes, self.versions = "http://prometheus", {}, {}

    def __enter__(self):
        self.events.append(f"{self.what} up")
        return self

    def __exit__(self, *exc) -> None:
        self.events.append(f"{self.what} down")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    events: list[str] = []
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("rollout.promserver.LocalPrometheus", lambda *a, **k: Recorder(events, "prometheus"))
    monkeypatch.setattr("rollout.traffic.TrafficGenerator", lambda *a, **k: Recorder(events, "traffic"))
    monkeypatch.setattr("rollout.traffic.reference_of", lambda uri: {})

    class FailingAnalysis:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def run(self, challenger_uri, digest=None):
            events.append(f"analysis {challenger_uri}")
            raise RuntimeError("prometheus went away")

    monkeypatch.setattr(orchestrator, "Analysis", FailingAnalysis)
    return events


def _options(**kw) -> RunOptions:
    # the quality gate reads real bundles; tests/rollout/test_quality_gate.py covers it
    return RunOptions(steps=[50, 100], champion_uri="/bundles/1", challenger_uri="/bundles/2", quality_gate=False, **kw)


def test_fake_backend_is_a_backend(tmp_path: Path) -> None:
    assert isinstance(FakeBackend([], True, tmp_path), Backend)


def test_everything_started_is_stopped_in_reverse_order_when_the_run_fails(events, tmp_path) -> None:
    with pytest.raises(RuntimeError, match="went away"):
        run_rollout(FakeBackend(events, True, tmp_path), _options(traffic=5.0), events.append, lambda s: None)
    assert [e for e in events if not e.startswith(("prometheus  ", "event log", "quality gate"))] == [
        "prepare /bundles/1 /bundles/2",
        "prometheus up",
        "traffic up",
        "analysis None",
        "traffic down",
        "prometheus down",
        "close",
    ]


def test_keep_leaves_the_deployment_running(events, tmp_path) -> None:
    with pytest.raises(RuntimeError):
        run_rollout(FakeBackend(events, True, tmp_path), _options(keep=True), events.append, lambda s: None)
    assert "close" not in events and "prometheus down" in events and "traffic up" not in events


def test_cluster_backend_needs_a_prometheus_url_and_starts_nothing_here(events, tmp_path) -> None:
    backend = FakeBackend(events, False, tmp_path)
    with pytest.raises(UsageError, match="--prometheus-url is required"):
        run_rollout(backend, _options(traffic=5.0), events.append, lambda s: None)
    assert [e for e in events if not e.startswith(("event log", "quality gate"))] == [
        "prepare None /bundles/2",
        "close",
    ]
    events.clear()
    with pytest.raises(RuntimeError):
        run_rollout(backend, _options(prometheus_url="http://prom:9090"), events.append, lambda s: None)
    assert [e for e in events if not e.startswith(("event log", "quality gate"))] == [
        "prepare None /bundles/2",
        "analysis /bundles/2",
        "close",
    ]


class RunningCanary(FakeBackend):
    """A cluster backend whose canary already serves ``challenger``."""

    def __init__(self, tmp: Path, challenger: str) -> None:
        super().__init__([], False, tmp)
        self.challenger = challenger

    def status(self) -> RolloutStatus:
        return RolloutStatus(backend="fake", challenger=self.challenger, challenger_percent=50)


def test_resume_steps_goes_on_from_the_weight_the_leases_progress_names(tmp_path: Path) -> None:
    """What an earlier run's Lease said (a ``LeaseState``, or None) picks the steps left for a canary that runs."""
    uri, steps = "s3://models/housing/2", [20, 50, 100]
    backend = RunningCanary(tmp_path, uri)
    at_50 = LeaseState(None, None, None, 30, {"challenger-uri": uri, "weight": "50"})
    assert resume_steps(backend, uri, steps, at_50) == [50, 100]
    assert resume_steps(backend, uri, steps, None) == steps  # no progress known: from the first step
    other = LeaseState(None, None, None, 30, {"challenger-uri": "s3://models/housing/3", "weight": "50"})
    assert resume_steps(backend, uri, steps, other) == steps  # progress of another challenger
    assert resume_steps(backend, "s3://models/housing/3", steps, at_50) is None  # another canary runs
    assert resume_steps(FakeBackend([], True, tmp_path), uri, steps, at_50) is None  # local: never adopted
