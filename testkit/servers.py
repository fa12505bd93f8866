"""Real servers for the integration tests: MinIO, an MLflow tracking server, Prometheus.

Each runs as a child process on a free loopback port with its data in a temporary directory,
and can be stopped and started again on the same port (to test outages mid-run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common import net
from common.net import free_port
from common.procs import stop_process

TOOLS_DIR = Path(os.environ.get("HOUSING_TOOLS_DIR", Path.home() / ".cache" / "housing" / "bin"))
MINIO_USER = "housing-test"
MINIO_PASSWORD = "housing-test-secret"  # test-only credentials of a throwaway server
MLFLOW_ARTIFACT_BUCKET = "mlflow"


def find_tool(name: str, hint: str) -> str:
    """Path of a tool binary, from the tools cache or PATH; fails under CI, skips elsewhere."""
    candidate = TOOLS_DIR / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found in {TOOLS_DIR} or PATH; install it with {hint}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """:func:`common.net.wait_http`, with the tail of the server's log when it dies first."""
    try:
        net.wait_http(url, timeout, proc)
    except RuntimeError as exc:
        tail = log.read_text()[-3000:] if log and log.exists() else ""
        raise RuntimeError(f"{exc}:\n{tail}") from None


class ServerProcess:
    """A restartable child process with its output in a log file."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        """Where it listens: ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def health_url(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self, timeout: float = 90.0) -> None:
        """Start (or restart) the process on the same port and wait until it is healthy."""
        if self.running:
            return
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            wait_http(self.health_url(), timeout=timeout, proc=self.proc, log=self.log)
        except BaseException:  # not healthy in time: a fixture that fails here never reaches its stop()
            self.stop()
            raise

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the process (its process group) and wait for it."""
        if self.proc is not None:
            stop_process(self.proc, 15, group=True)


class MinioServer(ServerProcess):
    """A real MinIO server (built from source by scripts/tools/minio.sh)."""

    name = "minio"
    access_key = MINIO_USER
    secret_key = MINIO_PASSWORD
    region = "us-east-1"

    def __init__(self, workdir: Path, bucket: str) -> None:
        super().__init__(workdir)
        self.binary = find_tool("minio", "scripts/tools/minio.sh")
        self.bucket = bucket
        self.console_port = free_port()

    endpoint = ServerProcess.url  # the S3 endpoint

    def command(self) -> list[str]:
        return [
            self.binary,
            "server",
            str(self.workdir / "data"),
            "--address",
            f"127.0.0.1:{self.port}",
            "--console-address",
            f"127.0.0.1:{self.console_port}",
            "--quiet",
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(MINIO_ROOT_USER=self.access_key, MINIO_ROOT_PASSWORD=self.secret_key, MINIO_BROWSER="off")
        return env

    def health_url(self) -> str:
        return f"{self.endpoint}/minio/health/live"

    def env(self) -> dict[str, str]:
        """The AWS_* variables a client needs to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def s3(self):  # noqa: ANN201 - boto3 client type is dynamic
        """A boto3 S3 client bound to this server."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=10),
        )

    def ensure_bucket(self, name: str) -> None:
        client = self.s3()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)


class MlflowServer(ServerProcess):
    """A real MLflow tracking server: sqlite backend, artifacts proxied to MinIO."""

    name = "mlflow"

    def __init__(self, workdir: Path, minio: MinioServer) -> None:
        super().__init__(workdir)
        self.minio = minio
        minio.ensure_bucket(MLFLOW_ARTIFACT_BUCKET)

    uri = ServerProcess.url  # the tracking URI

    def command(self) -> list[str]:
        mlflow = Path(sys.executable).with_name("mlflow")
        return [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.workdir / 'mlflow.db'}",
            "--artifacts-destination",
            f"s3://{MLFLOW_ARTIFACT_BUCKET}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.minio.env())
        env["MLFLOW_S3_ENDPOINT_URL"] = self.minio.endpoint
        env.pop("MLFLOW_TRACKING_URI", None)
        return env

    def health_url(self) -> str:
        return f"{self.uri}/health"


class PrometheusServer(ServerProcess):
    """A real Prometheus server (Debian's package) scraping the given targets."""

    name = "prometheus"

    def __init__(self, workdir: Path, targets: list[str], scrape_interval: str = "1s") -> None:
        super().__init__(workdir)
        self.binary = find_tool("prometheus", "scripts/tools/prometheus.sh")
        self.targets = targets
        self.scrape_interval = scrape_interval
        self.write_config()

    def write_config(self) -> None:
        """(Re)write prometheus.yml for the current targets."""
        targets = ", ".join(f"'{t}'" for t in self.targets)
        (self.workdir / "prometheus.yml").write_text(
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            f"  evaluation_interval: {self.scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: housing\n"
            f"    static_configs:\n      - targets: [{targets}]\n"
        )

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
        ]

    def health_url(self) -> str:
        return f"{self.url}/-/ready"
