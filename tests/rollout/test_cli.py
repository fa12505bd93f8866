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
