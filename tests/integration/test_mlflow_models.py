"""Registered versions are MLflow models, against a real MLflow server with artifacts in a real MinIO.

``mlflow.pyfunc.load_model`` and ``mlflow models serve`` answer like the predictor (which still reads
the bundle itself through ``models:/``); the run shows its datasets with the bundle's digests; a
version with another feature schema is refused before anything is written; the offline quality
gate logs both versions' figures to MLflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from bundle.manifest import BundleError
from common.config import DEFAULT_BUCKET
from common.net import free_port, wait_http
from testkit.holdout import holdout, records
from testkit.procs import start_predictor
from training.api import TrainConfig, run_training

pytestmark = pytest.mark.integration

BOSTON = dict(dataset="boston", fast=True, progress=False)


def _client(uri: str):  # noqa: ANN202 - MlflowClient
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _keys(minio, prefix: str) -> list[str]:
    pages = minio.s3().get_paginator("list_objects_v2").paginate(Bucket=DEFAULT_BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="module")
def rows() -> tuple[pd.DataFrame, list[str]]:
    test, features = holdout("boston")
    return test[features].head(25).reset_index(drop=True), features


def test_pyfunc_and_mlflow_serve_answer_like_the_predictor(stack_env, mlflow_server, rows, tmp_path: Path) -> None:
    import mlflow

    name = "housing-it-pyfunc"
    result = run_training(TrainConfig(**BOSTON, candidates=("xgboost",), model_name=name))
    assert result.bundle_dir is None  # published to S3: no local copy left behind
    frame, features = rows
    uri = f"models:/{name}@champion"

    with start_predictor(uri, model_name=name, env=stack_env) as served:  # models:/ still works for the predictor
        body = {"instances": records(frame)}
        expected = np.array(httpx.post(f"{served.http_url}/v1/models/{name}:predict", json=body).json()["predictions"])
    assert expected.shape == (len(frame),)

    model = mlflow.pyfunc.load_model(uri)
    got = model.predict(frame)
    assert list(got.columns) == ["MEDV"]
    np.testing.assert_allclose(got["MEDV"].to_numpy(), expected, rtol=1e-9, atol=0)

    info = mlflow.models.get_model_info(uri)  # what the UI shows: signature, input example
    inputs = {c["name"]: c["type"] for c in info.signature.inputs.to_dict()}
    assert list(inputs) == features and inputs["CHAS"] == "long" and inputs["CRIM"] == "double"
    assert info.signature.outputs.to_dict() == [{"type": "double", "name": "MEDV", "required": True}]
    assert info.saved_input_example_info is not None
    requirements = Path(mlflow.artifacts.download_artifacts(f"{uri}/requirements.txt", dst_path=str(tmp_path)))
    pinned = requirements.read_text().split()
    assert {p.split("==")[0] for p in pinned} == {"mlflow", "numpy", "pandas"} and all("==" in p for p in pinned)

    port = free_port()
    bin_dir = Path(sys.executable).parent  # mlflow runs `uvicorn` from PATH, as in an activated venv
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port)]
    log = tmp_path / "mlflow-serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/ping", 180, proc, "mlflow models serve")
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
        split = json.loads(frame.to_json(orient="split", index=False, double_precision=15))
        split["data"] = frame.to_numpy(dtype=object).tolist()  # exact values, not 15 digits
        reply = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_split": split}, timeout=60)
        assert reply.status_code == 200, reply.text
        served_values = np.array([row["MEDV"] for row in reply.json()["predictions"]])
    finally:  # stop the server we started: its process group, by its pid
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    np.testing.assert_allclose(served_values, expected, rtol=1e-9, atol=0)


def test_pyfunc_verifies_the_bundle_before_reading_it(stack_env, mlflow_server, tmp_path: Path) -> None:
    import mlflow

    name = "housing-it-pyfunc-tamper"
    run_training(TrainConfig(**BOSTON, candidates=("linear",), model_name=name))
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path)))
    model_file = local / "artifacts" / "bundle" / "linear.json"
    model_file.write_text(model_file.read_text().replace("1", "2", 1))
    with pytest.raises(BundleError, match="linear.json: sha256 .* does not match"):
        mlflow.pyfunc.load_model(str(local))


def test_run_logs_its_datasets_with_the_bundle_digests(stack_env, mlflow_server) -> None:
    name = "housing-it-datasets"
    result = run_training(TrainConfig(**BOSTON, candidates=("linear",), model_name=name))
    run = _client(mlflow_server.uri).get_run(result.run_id)
    by_context = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset for d in run.inputs.dataset_inputs
    }
    training, evaluation = by_context["training"], by_context["evaluation"]
    assert training.name == "boston" and training.digest == result.manifest.data_digest
    assert "Rdatasets/csv/MASS/Boston.csv" in training.source
    columns = [c["name"] for c in json.loads(training.schema)["mlflow_colspec"]]
    assert columns == [*(f["name"] for f in result.manifest.schema["features"]), "MEDV"]
    assert evaluation.digest == result.manifest.params["evaluation"]["digest"]
    params = run.data.params
    assert params["eval_rows_digest"] == evaluation.digest and params["data_digest"] == training.digest


def test_another_schema_under_the_same_name_is_refused_before_anything_is_written(
    stack_env, minio, mlflow_server, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from housing.cli import app

    name = "housing-it-mixed"
    first = run_training(TrainConfig(**BOSTON, candidates=("linear",), model_name=name))
    keys = _keys(minio, f"{name}/")
    rng = np.random.default_rng(1)
    csv = tmp_path / "houses.csv"
    pd.DataFrame(
        {"area": rng.uniform(50, 250, 120), "CRIM": rng.uniform(0, 1, 120), "price": rng.uniform(1, 9, 120)}
    ).to_csv(csv, index=False)
    args = ["train", "-d", str(csv), "-t", "price", "--fast", "-c", "linear", "--model-name", name]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith(f"error: model '{name}': the feature schema differs from its champion (version 1)")
    assert "target 'price' instead of 'MEDV'" in message and "missing features ZN, INDUS" in message
    assert "new features area" in message and f"--model-name {name}-houses" in message
    assert _keys(minio, f"{name}/") == keys
    assert [v.version for v in _client(mlflow_server.uri).search_model_versions(f"name='{name}'")] == ["1"]
    assert first.model_version == "1"


def test_quality_gate_scores_both_versions_and_logs_to_mlflow(stack_env, mlflow_server, monkeypatch) -> None:
    from common.config import ALIAS_CHALLENGER
    from rollout.errors import GateRefused
    from rollout.orchestrator import pinned, quality_gate, resolve_uris

    name = "housing-it-gate"
    monkeypatch.setenv("HOUSING_MODEL_NAME", name)
    run_training(TrainConfig(**BOSTON, candidates=("xgboost",), model_name=name))
    run_training(TrainConfig(**BOSTON, candidates=("linear",), model_name=name, seed=7))
    champ, chall = resolve_uris(None, None)
    assert chall["uri"].startswith("s3://")  # downloaded from MinIO, verified against the registry's digest
    said: list[str] = []
    with pytest.raises(GateRefused, match=r"challenger worse than the champion: evaluation RMSE on \d+ rows"):
        quality_gate(champ, chall, 0.02, False, said.append)
    record = quality_gate(champ, chall, 0.02, True, said.append)
    assert record["decision"] == "overridden" and record["same_rows"] is True
    assert record["challenger"]["rmse"] > record["champion"]["rmse"] * 1.02
    client = _client(mlflow_server.uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("housing").experiment_id], "tags.quality_gate = 'overridden'"
    )
    assert runs and runs[0].data.metrics["challenger_rmse"] == pytest.approx(record["challenger"]["rmse"])
    assert runs[0].data.metrics["champion_rmse"] == pytest.approx(record["champion"]["rmse"])
    assert client.get_model_version_by_alias(name, ALIAS_CHALLENGER).tags["quality_gate"] == "overridden"
    # --challenger-uri: no registry digest, so the canary is pinned to the bundle the gate judged
    by_uri = {"uri": chall["uri"], "version": None, "digest": None}
    judged = quality_gate(champ, by_uri, 0.02, True, said.append)
    assert judged["challenger_digest"] == chall["digest"]  # the very bundle training registered
    assert pinned(by_uri, judged)["digest"] == chall["digest"] and pinned(chall, judged) is chall
    assert any("pinned to the bundle it judged" in line for line in said)


def test_s3_training_leaves_no_local_copy(stack_env, monkeypatch, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    run_training(TrainConfig(**BOSTON, candidates=("linear",), model_name="housing-it-temp"))
    assert [p.name for p in scratch.iterdir() if p.name.startswith("housing-")] == []
