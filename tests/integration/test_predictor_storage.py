"""Loading bundles from URIs: s3:// (real MinIO, kserve-storage) and models:/NAME@ALIAS (MLflow)."""

from __future__ import annotations

import httpx
import pytest

from bundle.manifest import bundle_digest, load_manifest
from common.config import ALIAS_CHAMPION, DEFAULT_BUCKET, TAG_BUNDLE_DIGEST, TAG_BUNDLE_URI
from testkit.holdout import BOSTON_ROW as ROW
from testkit.procs import start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"


def _predict(proc) -> float:
    r = httpx.post(f"{proc.http_url}/v1/models/{NAME}:predict", json=ROW, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0]


def test_s3_storage_uri_via_kserve_storage(minio, boston_xgb):
    client = minio.s3()
    prefix = f"predictor-test/{load_manifest(boston_xgb).model_version}"
    for path in sorted(boston_xgb.iterdir()):
        client.upload_file(str(path), DEFAULT_BUCKET, f"{prefix}/{path.name}")
    proc = start_predictor(f"s3://{DEFAULT_BUCKET}/{prefix}", NAME, env=minio.env())
    try:
        assert 20 < _predict(proc) < 35
    finally:
        proc.stop()


@pytest.fixture
def registry(tmp_path, boston_xgb):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_registered_model(NAME)

    def register(digest: str) -> str:
        mv = client.create_model_version(
            NAME, source=str(boston_xgb), tags={TAG_BUNDLE_URI: str(boston_xgb), TAG_BUNDLE_DIGEST: digest}
        )
        return mv.version

    return uri, client, register


def test_models_uri_resolves_alias_and_pins_digest(registry, boston_xgb, tmp_path):
    uri, client, register = registry
    good = register(bundle_digest(boston_xgb))
    client.set_registered_model_alias(NAME, ALIAS_CHAMPION, good)
    env = {"MLFLOW_TRACKING_URI": uri, "HOUSING_HOME": str(tmp_path / "home")}
    proc = start_predictor(f"models:/{NAME}@{ALIAS_CHAMPION}", NAME, env=env)
    try:
        assert 20 < _predict(proc) < 35
    finally:
        proc.stop()
    # the registry's digest is pinned: a version whose recorded digest differs is refused
    bad = register("0" * 64)
    client.set_registered_model_alias(NAME, "broken", bad)
    with pytest.raises(RuntimeError, match="does not match the pinned"):
        start_predictor(f"models:/{NAME}@broken", NAME, env=env)
    with pytest.raises(RuntimeError, match="cannot resolve through MLflow"):
        start_predictor(f"models:/{NAME}@nope", NAME, env=env)


def test_housing_serve_defaults_to_the_embedded_champion(monkeypatch, tmp_path):
    from predictor.client.cli import serve_argv

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HOUSING_MODEL_NAME", raising=False)
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path))
    argv = serve_argv(None, None, None, 8080, 8081, None, 10_000, 1)
    assert argv[argv.index("--storage_uri") + 1] == f"models:/{NAME}@{ALIAS_CHAMPION}"
    assert serve_argv(None, "/mnt/models", "m", 1, 2, "abc", 5, 1)[-6:] == [
        "--workers", "1", "--model_dir", "/mnt/models", "--bundle_digest", "abc",
    ]  # fmt: skip


def test_storage_uri_env_only_when_model_dir_is_empty(boston_xgb, tmp_path):
    # KServe's storage-initializer already filled --model_dir: STORAGE_URI is not downloaded again
    proc = start_predictor(boston_xgb, NAME, env={"STORAGE_URI": "s3://no-such-bucket/nowhere"})
    try:
        assert 20 < _predict(proc) < 35
    finally:
        proc.stop()
    empty = tmp_path / "mnt-models"
    empty.mkdir()
    proc = start_predictor(empty, NAME, env={"STORAGE_URI": f"file://{boston_xgb}"})
    try:
        assert 20 < _predict(proc) < 35
    finally:
        proc.stop()
    with pytest.raises(RuntimeError, match=r"exited with 2[\s\S]*bundle.json: not found"):
        start_predictor(empty, NAME)


def test_housing_serve_runs_the_predictor(boston_xgb):
    import subprocess
    import sys
    import time

    from testkit.procs import ROOT, free_port

    http, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "housing", "serve", "--model-dir", str(boston_xgb)]
    cmd += ["--http-port", str(http), "--grpc-port", str(grpc_port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                r = httpx.post(f"http://127.0.0.1:{http}/v1/models/{NAME}:predict", json=ROW, timeout=5)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "housing serve did not become ready"
            time.sleep(0.2)
        assert 20 < r.json()["predictions"][0] < 35
    finally:
        proc.terminate()
        proc.wait(15)


def test_models_uri_over_mlflow_rest_matches_the_mlflow_client(mlflow_server, boston_xgb, monkeypatch):
    """An http(s) tracking URI is read through MLflow's REST API (the serving image has no mlflow)."""
    import sys

    from mlflow import MlflowClient

    from registry.resolve import RegistryError, resolve_uri

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    name = "rest-lookup"
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    digest = bundle_digest(boston_xgb)
    # a server refuses a local source without a run; the bundle_uri tag is what the lookup reads
    mv = client.create_model_version(
        name, source="s3://models/rest-lookup/1", tags={TAG_BUNDLE_URI: str(boston_xgb), TAG_BUNDLE_DIGEST: digest}
    )
    client.set_registered_model_alias(name, ALIAS_CHAMPION, mv.version)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # the REST path must not need the package
    by_alias = resolve_uri(f"models:/{name}@{ALIAS_CHAMPION}", tracking_uri=mlflow_server.uri)
    by_version = resolve_uri(f"models:/{name}/{mv.version}", tracking_uri=mlflow_server.uri + "/")
    assert (by_alias.uri, by_alias.digest) == (by_version.uri, by_version.digest) == (str(boston_xgb), digest)
    with pytest.raises(
        RegistryError, match=r"models:/rest-lookup@nope: cannot resolve .*HTTP 400 .*alias nope not found"
    ):
        resolve_uri(f"models:/{name}@nope", tracking_uri=mlflow_server.uri)
    with pytest.raises(RegistryError, match="expected models:/NAME@ALIAS or models:/NAME/VERSION"):
        resolve_uri(f"models:/{name}", tracking_uri=mlflow_server.uri)


def test_models_uri_served_through_mlflow_rest(mlflow_server, boston_xgb, tmp_path):
    """The predictor process resolves models:/ against a real MLflow server."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    name = "rest-served"
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    mv = client.create_model_version(
        name, source="s3://models/rest-served/1", tags={TAG_BUNDLE_URI: str(boston_xgb), TAG_BUNDLE_DIGEST: "f" * 64}
    )
    client.set_registered_model_alias(name, "pinned-wrong", mv.version)
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri, "HOUSING_HOME": str(tmp_path / "home")}
    # the digest recorded in the registry pins the bundle: it came back over REST
    with pytest.raises(RuntimeError, match="does not match the pinned"):
        start_predictor(f"models:/{name}@pinned-wrong", NAME, env=env)
    client.set_model_version_tag(name, mv.version, TAG_BUNDLE_DIGEST, bundle_digest(boston_xgb))
    proc = start_predictor(f"models:/{name}@pinned-wrong", NAME, env=env)
    try:
        assert 20 < _predict(proc) < 35
    finally:
        proc.stop()


def test_s3_download_takes_the_listed_files_of_the_exact_prefix(minio, boston_xgb, tmp_path, monkeypatch):
    """kserve-storage took every key under ``housing-x/1`` — ``housing-x/10/…`` too — and wrote each raw key
    under the target; now bundle.json's flat names under ``housing-x/1/`` are fetched, nothing else."""
    import json

    from predictor.core.storage import StorageError, download

    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    client = minio.s3()
    for path in sorted(boston_xgb.iterdir()):
        client.upload_file(str(path), DEFAULT_BUCKET, f"housing-x/1/{path.name}")
    client.put_object(Bucket=DEFAULT_BUCKET, Key="housing-x/10/other.bin", Body=b"not this bundle")
    client.put_object(Bucket=DEFAULT_BUCKET, Key="housing-x/1/unlisted.bin", Body=b"not listed")
    path, _ = download(f"s3://{DEFAULT_BUCKET}/housing-x/1", str(tmp_path / "ok"))
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) == sorted(
        p.name for p in boston_xgb.iterdir()
    )
    load_manifest(path)  # every digest verifies
    manifest = json.loads((boston_xgb / "bundle.json").read_text())
    manifest["files"]["../escape.bin"] = "0" * 64
    client.put_object(Bucket=DEFAULT_BUCKET, Key="housing-y/1/bundle.json", Body=json.dumps(manifest).encode())
    with pytest.raises(StorageError, match="'../escape.bin' is not a flat file name"):
        download(f"s3://{DEFAULT_BUCKET}/housing-y/1", str(tmp_path / "bad"))
    assert not (tmp_path / "escape.bin").exists() and not (tmp_path / "bad").exists()
