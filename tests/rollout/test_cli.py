"""The `housing rollout` commands: help, one-line errors with exit code 2, offline KServe dry-runs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rollout.cli import app
from rollout.validate import isvc_errors

runner = CliRunner()


@pytest.fixture
def manifest(tmp_path):
    obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "housing", "namespace": "ml"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "housing"}, "storageUri": "s3://models/housing/A"}}},
    }
    path = tmp_path / "isvc.yaml"
    import yaml

    path.write_text(yaml.safe_dump(obj))
    return path


def test_help_teaches_with_examples():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "housing rollout run" in result.output and "--dry-run" in result.output
    for command in ("start", "status", "promote", "rollback", "run", "shadow"):
        assert command in result.output
        assert runner.invoke(app, [command, "--help"]).exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--steps", "50,10"], "strictly increasing"),
        (["run", "--steps", "10,50"], "must end at 100"),
        (["start", "--backend", "k8s"], "--backend must be one of"),
        (["start", "--percent", "120"], "within 0..100"),
        (["shadow", "--fraction", "0"], "--fraction"),
        (["run", "--backend", "standard", "--manifest", "/nonexistent.yaml", "--dry-run"], "--manifest"),
        (["run", "--max-psi", "-0.1"], "--max-psi must be within [0, inf)"),
        (["run", "--max-error-rate", "1.5"], "--max-error-rate must be within [0, 1]"),
        (["run", "--max-mean-shift", "nan"], "--max-mean-shift"),
        (["run", "--alpha", "0"], "--alpha must be within (0, 0.5]"),
        (["run", "--alpha", "0.6"], "--alpha must be within (0, 0.5]"),
        (["run", "--shadow", "2"], "--shadow must be within [0, 1]"),
        (["run", "--backend", "standard", "--shadow", "1"], "--shadow needs the local router"),
        (["promote", "--backend", "serverless", "--route", "housing"], "--route applies to the standard backend"),
        (["start", "--backend", "standard", "--route", "housing", "--percent", "-5"], "within 0..100"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.strip().count("\n") == 0


@pytest.mark.parametrize("backend, field", [("standard", '"/spec/canary"'), ("serverless", "canaryTrafficPercent")])
def test_run_dry_run_prints_every_patch_offline(manifest, backend, field):
    result = runner.invoke(
        app,
        [
            "run",
            "--backend",
            backend,
            "--manifest",
            str(manifest),
            "--dry-run",
            "--steps",
            "25,100",
            "--challenger-uri",
            "s3://models/housing/B",
        ],
    )
    assert result.exit_code == 0, result.output
    chunks = result.output.split("# JSON patch (application/json-patch+json)\n")[1:]
    assert len(chunks) == 3  # start, weight 100, promote
    assert field in chunks[0]
    final = json.loads(chunks[-1].split("# resulting InferenceService (validated against the kserve SDK models)\n")[1])
    assert isvc_errors(final) == []
    predictor = final["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "s3://models/housing/B"
    assert "canary" not in final["spec"] and "canaryTrafficPercent" not in predictor


def test_a_manual_step_whose_registry_step_fails_names_the_command_to_run_again(capsys) -> None:
    from rollout.backends.base import RolloutStatus
    from rollout.cli import _finish
    from rollout.errors import RolloutError

    status = RolloutStatus(backend="standard", champion="s3://models/housing/2", ready=True)
    with pytest.raises(
        RolloutError, match=r"the cluster is rolled back but MLflow is down; run `housing rollout rollback`"
    ):
        _finish(status, False, lambda: "MLflow is down", "rolled back", "rollback")
    assert capsys.readouterr().out == ""  # nothing shown as done
    _finish(status, True, lambda: pytest.fail("a dry run moves no registry"), "promoted", "promote")
    assert capsys.readouterr().out == ""
    _finish(status, False, None, "promoted", "promote")  # --no-registry
    _finish(status, False, lambda: None, "promoted", "promote")
    assert capsys.readouterr().out.count("s3://models/housing/2") == 2


@pytest.mark.parametrize("command, change", [("promote", "remove"), ("rollback", "replace")])
def test_promote_and_rollback_act_where_their_target_flags_say(tmp_path, command, change):
    """--backend, --name, --namespace, --manifest and --dry-run (one TargetFlags group) reach the backend."""
    import yaml

    obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "housing", "namespace": "ml", "resourceVersion": "7"},
        "spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"modelFormat": {"name": "housing"}}}},
    }
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(obj))
    args = [command, "-b", "serverless", "--name", "housing", "-n", "ml", "--manifest", str(path), "--dry-run"]
    result = runner.invoke(app, [*args, "--no-registry"])
    assert result.exit_code == 0, result.output
    patch = json.loads(result.output.split("# JSON patch (application/json-patch+json)\n")[1].split("\n#")[0])
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert {"op": change, "path": "/spec/predictor/canaryTrafficPercent"}.items() <= patch[1].items()
