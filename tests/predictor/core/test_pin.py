"""The registered digest of a bundle URI, waited for and handed to the predictor (:mod:`predictor.core.pin`),
against a real MLflow tracking server (over its REST API, as the serving image asks it) and a real MinIO."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from bundle.manifest import bundle_digest
from common.config import BUNDLE_DIGEST_FILE_ENV, DEFAULT_BUCKET, SOURCE_URI_ENV, TAG_BUNDLE_DIGEST, TAG_BUNDLE_URI
from predictor.core.pin import PinError, main, read_pin, wait, write_pin
from registry.resolve import RegistryConflict, registered_digest
from testkit.holdout import BOSTON_ROW
from testkit.procs import start_predictor

pytestmark = pytest.mark.integration

DIGEST_A, DIGEST_B = "a" * 64, "b" * 64


@pytest.fixture
def model(mlflow_server) -> tuple[MlflowClient, str]:
    """A registered model of its own (the server is shared by the session)."""
    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    name = f"pin-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    return client, name


def register(client: MlflowClient, name: str, uri: str, digest: str | None) -> str:
    tags = {TAG_BUNDLE_URI: uri, **({TAG_BUNDLE_DIGEST: digest} if digest else {})}
    return str(client.create_model_version(name, source=uri, tags=tags).version)


def test_the_digest_registered_for_a_uri(mlflow_server, model):
    client, name = model
    version = register(client, name, "s3://models/h/1", DIGEST_A)
    register(client, name, "s3://models/h/10", DIGEST_B)  # a longer URI with the same start
    assert registered_digest("s3://models/h/1", name, mlflow_server.uri) == (version, DIGEST_A)
    assert registered_digest("s3://models/h/2", name, mlflow_server.uri) is None  # not (yet) registered
    assert registered_digest("s3://models/h/1", f"{name}-other", mlflow_server.uri) is None
    register(client, name, "s3://models/h/1", DIGEST_A)  # registered twice, the same bytes: still one pin
    assert registered_digest("s3://models/h/1", name, mlflow_server.uri) == (version, DIGEST_A)


def test_a_version_without_a_digest_tag_or_two_digests_pin_nothing(mlflow_server, model):
    client, name = model
    untagged = register(client, name, "s3://models/h/3", None)
    with pytest.raises(RegistryConflict) as info:
        registered_digest("s3://models/h/3", name, mlflow_server.uri)
    assert f"version {untagged} has no 'bundle_digest' tag" in str(info.value)
    assert "s3://models/h/3" in str(info.value)
    register(client, name, "s3://models/h/4", DIGEST_A)
    register(client, name, "s3://models/h/4", DIGEST_B)
    with pytest.raises(RegistryConflict, match=r"s3://models/h/4: versions record different 'bundle_digest' tags"):
        registered_digest("s3://models/h/4", name, mlflow_server.uri)


def upload(minio, bundle: Path, prefix: str) -> str:
    s3 = minio.s3()
    for path in sorted(bundle.iterdir()):
        s3.upload_file(str(path), DEFAULT_BUCKET, f"{prefix}/{path.name}")
    return f"s3://{DEFAULT_BUCKET}/{prefix}"


def test_waits_for_the_bundle_and_its_registration_then_writes_the_pin(
    minio, mlflow_server, model, boston_xgb, tmp_path, monkeypatch
):
    client, name = model
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    uri = f"s3://{DEFAULT_BUCKET}/pin-{uuid.uuid4().hex[:8]}/1"
    digest = bundle_digest(boston_xgb)
    pin = tmp_path / "pin.json"

    def publish() -> None:  # the training Job: bundle.json, then the registered version
        upload(minio, boston_xgb, uri.removeprefix(f"s3://{DEFAULT_BUCKET}/"))
        register(client, name, uri, digest)

    timer = threading.Timer(1.5, publish)
    timer.start()
    lines: list[str] = []
    try:
        got = wait(uri, 60, pin, model_name=name, tracking_uri=mlflow_server.uri, interval=0.3, say=lines.append)
    finally:
        timer.join()
    assert got == digest
    assert any("bundle.json" in line for line in lines if line.startswith("waiting"))  # it did wait
    assert json.loads(pin.read_text())["digest"] == digest
    assert read_pin(pin, uri) == digest and read_pin(pin, uri + "/") == digest
    assert read_pin(pin, "s3://models/another/2") is None  # a canary copied from this spec: not its pin


def test_gives_up_when_no_version_is_registered(minio, mlflow_server, model, boston_xgb, tmp_path, monkeypatch):
    _, name = model
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    uri = upload(minio, boston_xgb, f"pin-{uuid.uuid4().hex[:8]}/1")
    with pytest.raises(PinError, match=f"gave up after 0.5 s: no version of model '{name}' registered"):
        wait(uri, 0.5, tmp_path / "pin.json", model_name=name, tracking_uri=mlflow_server.uri, interval=0.2)
    assert not (tmp_path / "pin.json").exists()


def test_the_init_container_fails_at_once_on_an_untagged_version(
    minio, mlflow_server, model, boston_xgb, tmp_path, monkeypatch, capsys
):
    """``python -m predictor.core.pin`` as the chart runs it: environment only, exit 1 with the reason."""
    client, name = model
    uri = upload(minio, boston_xgb, f"pin-{uuid.uuid4().hex[:8]}/1")
    register(client, name, uri, None)
    env = {
        **minio.env(),
        "STORAGE_URI": uri,
        "WAIT_SECONDS": "600",  # not waited for: the registry's answer is final
        BUNDLE_DIGEST_FILE_ENV: str(tmp_path / "pin.json"),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "HOUSING_MODEL_NAME": name,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main([]) == 1
    err = capsys.readouterr().err
    assert f"wait-for-bundle: refusing to serve unpinned: model '{name}', bundle_uri {uri}" in err
    assert "has no 'bundle_digest' tag" in err


@pytest.mark.parametrize("body", ["", "{}", '{"storage_uri": "s3://m/1", "digest": "xyz"}'])
def test_a_malformed_pin_file_is_refused(tmp_path, body):
    pin = tmp_path / "pin.json"
    pin.write_text(body)
    with pytest.raises(PinError, match="--bundle_digest_file"):
        read_pin(pin, "s3://m/1")
    with pytest.raises(PinError, match="cannot read it"):
        read_pin(tmp_path / "missing.json", "s3://m/1")


def test_the_predictor_serves_only_the_pinned_bundle(boston_xgb, tmp_path):
    """As in the pod: the storage-initializer filled --model_dir from STORAGE_URI, the pin file names it."""
    uri, pin = "s3://models/housing/1", tmp_path / "pin.json"
    # KServe's webhook rewrites STORAGE_URI to /mnt/models; the chart passes the fetched URI apart
    env = {"STORAGE_URI": "/mnt/models", SOURCE_URI_ENV: uri, BUNDLE_DIGEST_FILE_ENV: str(pin)}
    write_pin(pin, uri, "housing", "1", "0" * 64)  # registered: other bytes than these
    with pytest.raises(RuntimeError, match="does not match the pinned"):
        start_predictor(boston_xgb, env=env)
    with pytest.raises(RuntimeError, match="cannot read it"):  # told to pin, no pin: never unpinned
        start_predictor(boston_xgb, env={**env, BUNDLE_DIGEST_FILE_ENV: str(tmp_path / "none.json")})
    # HOUSING_BUNDLE_DIGEST (the chart's value, a rollout's patch) wins over the file
    proc = start_predictor(boston_xgb, env={**env, "HOUSING_BUNDLE_DIGEST": bundle_digest(boston_xgb)})
    try:
        assert httpx.post(f"{proc.http_url}/v1/models/housing:predict", json=BOSTON_ROW, timeout=30).status_code == 200
    finally:
        proc.stop()
    write_pin(pin, uri, "housing", "1", bundle_digest(boston_xgb))
    proc = start_predictor(boston_xgb, env=env)
    try:
        assert httpx.post(f"{proc.http_url}/v1/models/housing:predict", json=BOSTON_ROW, timeout=30).status_code == 200
    finally:
        proc.stop()


def test_a_digest_given_is_written_without_asking_the_registry(boston_xgb, tmp_path, monkeypatch, capsys):
    """The chart's predictor.bundleDigest (or canary.bundleDigest) reaches the init container too: the pin file
    then holds it, so a rollout's copy of that spec finds a pin file; no MLflow is asked (none is set here)."""
    pin = tmp_path / "pin.json"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    argv = ["--storage_uri", str(boston_xgb), "--pin_file", str(pin), "--bundle_digest", DIGEST_A.upper()]
    assert main(argv) == 0
    assert read_pin(pin, str(boston_xgb)) == DIGEST_A
    with pytest.raises(SystemExit):  # argparse's exit 2, naming the flag
        main(["--storage_uri", str(boston_xgb), "--pin_file", str(pin), "--bundle_digest", "xyz"])
    assert "--bundle_digest 'xyz': not a sha256" in capsys.readouterr().err
