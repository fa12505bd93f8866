"""Shared fixtures: real MinIO/MLflow/Prometheus servers, and bundles made by the real training code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.config import DEFAULT_BUCKET
from testkit.procs import train_bundle
from testkit.servers import MinioServer, MlflowServer, PrometheusServer


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    """A real MinIO server with the default bucket created; restartable via .stop()/.start()."""
    server = MinioServer(tmp_path_factory.mktemp("minio"), bucket=DEFAULT_BUCKET)
    server.start()
    server.ensure_bucket(DEFAULT_BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(minio: MinioServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server whose artifacts live in MinIO."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), minio)
    server.start(timeout=120)
    yield server
    server.stop()


@pytest.fixture
def servers_up(minio: MinioServer, mlflow_server: MlflowServer) -> Iterator[None]:
    """Make sure both servers run before and after a test (tests may stop them)."""
    minio.start()
    mlflow_server.start()
    yield
    minio.start()
    mlflow_server.start()


@pytest.fixture
def stack_env(
    servers_up: None,
    minio: MinioServer,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """Point the process environment at the real servers and a fresh HOUSING_HOME."""
    env = minio.env()
    env["MLFLOW_TRACKING_URI"] = mlflow_server.uri
    env["MLFLOW_S3_ENDPOINT_URL"] = minio.endpoint
    env["HOUSING_HOME"] = str(tmp_path / "home")
    for key in ("HOUSING_BUNDLE_ROOT", "HOUSING_MODEL_NAME", "S3_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator:
    """Start real Prometheus servers scraping given ``host:port`` targets; stopped afterwards."""
    started: list[PrometheusServer] = []

    def start(targets: list[str], scrape_interval: str = "1s") -> PrometheusServer:
        server = PrometheusServer(tmp_path / f"prometheus-{len(started)}", targets, scrape_interval)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# -- bundles from the real training code (fast configurations), trained once per session ------
@pytest.fixture(scope="session")
def bundle_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp()


def _trained(name: str, dataset: str, kind: str):  # noqa: ANN202 - a pytest fixture
    """A session fixture ``name``: the bundle of ``kind`` trained on ``dataset`` (once per session)."""

    @pytest.fixture(scope="session", name=name)
    def bundle(bundle_cache: Path) -> Path:
        return train_bundle(bundle_cache, dataset, kind)

    return bundle


boston_xgb = _trained("boston_xgb", "boston", "xgboost")
ames_xgb = _trained("ames_xgb", "ames", "xgboost")
boston_forest = _trained("boston_forest", "boston", "random_forest")
ames_linear = _trained("ames_linear", "ames", "linear")
