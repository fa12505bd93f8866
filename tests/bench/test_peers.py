"""The benchmark's peers really serve our models: each is started and must answer our in-process price.

KServe's xgbserver and sklearnserver (their own venv, built from the KServe Go module on first
use; skipped with the reason when it cannot be built here) get rows encoded by the bundle's
schema and answer on the log scale; MLflow's scoring server gets raw rows through the bundle's
pyfunc model and answers prices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench import kserve_runtimes, mlflow_serve, servers
from bench.run import encoded_rows, holdout_rows, v2_tensor
from predictor.core.loaded import load_bundle

pytestmark = pytest.mark.integration

NAME = "housing"


@pytest.fixture(scope="module")
def peer_venv() -> Path:
    try:
        return kserve_runtimes.ensure_venv()
    except kserve_runtimes.PeerUnavailable as exc:
        pytest.skip(f"KServe runtimes venv cannot be built here: {exc}")


@pytest.fixture(scope="module")
def ames_forest_fit(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - TrainResult
    from training.api import TrainConfig, run_training

    root = tmp_path_factory.mktemp("forest")
    return run_training(
        TrainConfig(
            dataset="ames",
            fast=True,
            register=False,
            bundle_root=str(root),
            candidates=("random_forest",),
            progress=False,
        )
    )


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[servers.Server]]:
    running: list[servers.Server] = []
    yield running
    for server in running:
        server.stop()


def _ready(server: servers.Server, started: list[servers.Server], log: Path) -> servers.Server:
    started.append(server)
    try:
        servers.wait_ready(server)
    except (RuntimeError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from None
    return server


def _post(server: servers.Server, path: str, body: dict) -> dict:
    reply = httpx.post(f"{server.http_url}{path}", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _runtime_answers(server: servers.Server, X: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    v1 = _post(server, f"/v1/models/{NAME}:predict", {"instances": X})["predictions"]
    v2 = _post(server, f"/v2/models/{NAME}/infer", v2_tensor(X))["outputs"][0]
    assert v2["shape"] == [len(X)]
    return np.exp(np.asarray(v1, dtype=np.float64)), np.exp(np.asarray(v2["data"], dtype=np.float64))


def test_xgbserver_serves_our_booster_on_encoded_rows(peer_venv, ames_xgb: Path, tmp_path: Path, started) -> None:
    rows = holdout_rows(ames_xgb, 20)
    X = encoded_rows(ames_xgb, rows)
    expected = load_bundle(ames_xgb).predict(np.asarray(X))
    model_dir = kserve_runtimes.xgboost_model_dir(ames_xgb, tmp_path / "xgb")
    assert [p.name for p in model_dir.iterdir()] == ["model.ubj"]
    server = _ready(
        servers.start_kserve_runtime("xgbserver", model_dir, NAME, tmp_path), started, tmp_path / "xgbserver.log"
    )
    v1, v2 = _runtime_answers(server, X)
    # xgboost answers float32 on the log scale: ~1e-7 relative after exp
    np.testing.assert_allclose(v1, expected, rtol=1e-5)
    np.testing.assert_allclose(v2, expected, rtol=1e-5)
    assert len(set(np.round(expected))) > 1  # the rows differ, so a constant answer would fail


def test_sklearnserver_serves_our_forest_on_encoded_rows(peer_venv, ames_forest_fit, tmp_path: Path, started) -> None:
    bundle = ames_forest_fit.bundle_dir
    rows = holdout_rows(bundle, 20)
    X = encoded_rows(bundle, rows)
    expected = load_bundle(bundle).predict(np.asarray(X))
    model_dir = kserve_runtimes.sklearn_model_dir(ames_forest_fit.estimator, tmp_path / "sk")
    log = tmp_path / "sklearnserver.log"
    server = _ready(servers.start_kserve_runtime("sklearnserver", model_dir, NAME, tmp_path), started, log)
    v1, v2 = _runtime_answers(server, X)
    np.testing.assert_allclose(v1, expected, rtol=1e-9)
    np.testing.assert_allclose(v2, expected, rtol=1e-9)
    assert len(set(np.round(expected))) > 1


def test_mlflow_scoring_server_serves_the_pyfunc_model_on_raw_rows(ames_xgb: Path, tmp_path: Path, started) -> None:
    rows = holdout_rows(ames_xgb, 20)
    expected = load_bundle(ames_xgb).predict(np.asarray(encoded_rows(ames_xgb, rows)))
    server = _ready(servers.start_mlflow(ames_xgb, NAME, tmp_path, rows[:5]), started, tmp_path / "mlflow.log")
    headers = {"content-type": "application/json"}  # without it MLflow 3.17 answers 500 (content_type None)
    reply = httpx.post(f"{server.http_url}/invocations", content=mlflow_serve.body(rows), headers=headers, timeout=60)
    assert reply.status_code == 200, reply.text
    target = json.loads((ames_xgb / "bundle.json").read_text())["target"]["name"]
    got = np.array([p[target] for p in reply.json()["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
