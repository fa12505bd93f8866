"""The offline quality gate: same schema, challenger no worse than the champion on the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from rollout import orchestrator
from rollout.errors import GateRefused, SchemaMismatch
from rollout.orchestrator import RunOptions, run_rollout
from rollout.quality_gate import OVERRIDDEN, PASSED, REFUSED, check
from testkit.procs import train_bundle


@pytest.fixture(scope="module")
def boston_linear(bundle_cache: Path) -> Path:
    return train_bundle(bundle_cache, "boston", "linear")


def test_a_version_against_itself_passes(boston_xgb: Path) -> None:
    result = check(boston_xgb, boston_xgb)
    assert result.decision == PASSED and result.same_rows and result.rows > 50
    assert result.champion == result.challenger and result.champion["rmse"] > 0


def test_a_worse_challenger_is_refused_with_the_figures(boston_xgb: Path, boston_linear: Path) -> None:
    result = check(boston_xgb, boston_linear, tolerance=0.05)
    assert result.decision == REFUSED and result.same_rows
    assert result.challenger["rmse"] > result.champion["rmse"] * 1.05
    assert f"challenger {result.challenger['rmse']:.6g} vs champion {result.champion['rmse']:.6g}" in result.reason
    assert check(boston_xgb, boston_linear, tolerance=0.05, allow_worse=True).decision == OVERRIDDEN
    assert check(boston_xgb, boston_linear, tolerance=10).decision == PASSED  # within a generous tolerance
    with pytest.raises(ValueError, match="tolerance must be 0 or more"):
        check(boston_xgb, boston_linear, tolerance=-1)


def test_other_schemas_are_refused_by_name(boston_xgb: Path, ames_linear: Path) -> None:
    with pytest.raises(SchemaMismatch, match=r"different feature schemas: target 'Sale_Price' instead of 'MEDV'"):
        check(boston_xgb, ames_linear)


class NoBackend:
    """Fails the test if the run gets as far as deploying anything."""

    name = "none"
    runs_champion = True

    def prepare(self, *args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("a refused challenger must not be deployed")

    def close(self) -> None:
        pass


def _log(home: Path) -> list[dict]:
    (path,) = (home / "rollouts").glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_refused_run_deploys_nothing_and_logs_why(boston_xgb, boston_linear, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    options = RunOptions(steps=[100], champion_uri=str(boston_xgb), challenger_uri=str(boston_linear))
    said: list[str] = []
    with pytest.raises(GateRefused, match="challenger worse than the champion.*pass --allow-worse"):
        run_rollout(NoBackend(), options, said.append, lambda s: None)
    (event,) = _log(tmp_path / "home")
    assert event["event"] == "quality_gate" and event["decision"] == REFUSED and event["allow_worse"] is False
    assert event["challenger"]["rmse"] > event["champion"]["rmse"]
    # the figures went to the embedded MLflow, whose artifacts stay under HOUSING_HOME
    client = MlflowClient(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("housing")
    assert experiment.artifact_location == (tmp_path / "home" / "mlartifacts").resolve().as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["quality_gate"] == REFUSED
    assert run.data.metrics["challenger_rmse"] == pytest.approx(event["challenger"]["rmse"])


def test_allow_worse_is_recorded_and_the_run_goes_on(boston_xgb, boston_linear, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(orchestrator.registry, "log_quality_gate", lambda *a, **k: "run-1")
    options = RunOptions(steps=[100], champion_uri=str(boston_xgb), challenger_uri=str(boston_linear), allow_worse=True)
    with pytest.raises(AssertionError, match="must not be deployed"):  # the gate let it through to prepare
        run_rollout(NoBackend(), options, lambda line: None, lambda s: None)
    (event,) = _log(tmp_path / "home")
    assert event["decision"] == OVERRIDDEN and event["allow_worse"] is True


def test_a_rollout_between_schemas_is_refused(boston_xgb, ames_linear, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    options = RunOptions(steps=[100], champion_uri=str(boston_xgb), challenger_uri=str(ames_linear), allow_worse=True)
    with pytest.raises(GateRefused, match="different feature schemas"):
        run_rollout(NoBackend(), options, lambda line: None, lambda s: None)
    (event,) = _log(tmp_path / "home")
    assert event["decision"] == REFUSED and event["schema"] is False
