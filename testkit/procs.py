"""Launch real server processes for integration tests (and the rollout work).

``start_predictor`` runs ``python -m predictor`` on free ports as a child process, waits until
the model is ready (or the process dies), and returns a handle with the URLs and ``stop()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.net import LoopbackServer, free_port, wait_http
from common.procs import stop_process

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class PredictorProcess(LoopbackServer):
    """A running ``python -m predictor``."""

    proc: subprocess.Popen
    model_name: str
    http_port: int
    grpc_port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        return stop_process(self.proc, timeout)

    def __enter__(self) -> PredictorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_json(code: str, timeout: float) -> Any:
    """What ``code``, run in a fresh interpreter from the repository root, printed last (one JSON line);
    the tail of its stderr in the assertion when it fails."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_predictor(
    storage_uri_or_dir: str | os.PathLike[str],
    model_name: str = "housing",
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    *,
    wait_ready: bool = True,
    timeout: float = 60.0,
) -> PredictorProcess:
    """Start ``python -m predictor`` on free HTTP/gRPC ports.

    ``storage_uri_or_dir`` is a local bundle directory (served with ``--model_dir``) or a URI
    (``s3://``, ``file://``, ``models:/NAME@ALIAS``; served with ``--storage_uri``). With
    ``wait_ready`` it blocks until ``/v2/models/{name}/ready`` answers 200 and raises with the
    process log if the process exits or the timeout passes first. With ``wait_ready=False`` it
    only waits until the HTTP server answers at all (so not-ready states can be tested).
    """
    source = str(storage_uri_or_dir)
    http_port, grpc_port = free_port(), free_port()
    while grpc_port == http_port:
        grpc_port = free_port()
    where = ["--storage_uri", source] if "://" in source or source.startswith("models:/") else ["--model_dir", source]
    args = [
        sys.executable,
        "-m",
        "predictor",
        "--model_name",
        model_name,
        *where,
        "--http_port",
        str(http_port),
        "--grpc_port",
        str(grpc_port),
        *(extra_args or []),
    ]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), full_env.get("PYTHONPATH", "")) if p)
    fd, log_name = tempfile.mkstemp(prefix="predictor-", suffix=".log")
    log_file = os.fdopen(fd, "wb")
    proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=str(ROOT))
    log_file.close()
    handle = PredictorProcess(proc, model_name, http_port, grpc_port, Path(log_name), args)
    path = f"/v2/models/{model_name}/ready" if wait_ready else "/v2/health/live"
    try:
        wait_http(handle.http_url + path, timeout, proc, "predictor")
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}:\n{handle.log()[-4000:]}") from None
    except TimeoutError as exc:
        handle.stop()
        raise TimeoutError(f"{exc}:\n{handle.log()[-4000:]}") from None
    return handle


def train_bundle(cache_root: str | os.PathLike[str], dataset: str = "boston", flavor: str = "xgboost") -> Path:
    """A bundle made by the real training code (fast config, no registry), cached per session.

    ``cache_root`` is a directory shared by the session (e.g. ``tmp_path_factory.getbasetemp()``);
    the same (dataset, flavor) is trained once and its bundle directory reused.
    """
    from training.api import TrainConfig, run_training

    root = Path(cache_root) / "bundles" / f"{dataset}-{flavor}"
    marker = root / "BUNDLE_DIR"
    if marker.is_file():
        return Path(marker.read_text().strip())
    root.mkdir(parents=True, exist_ok=True)
    result = run_training(
        TrainConfig(
            dataset=dataset,
            fast=True,
            register=False,
            bundle_root=str(root),
            candidates=(flavor,),
            progress=False,
        )
    )
    marker.write_text(str(result.bundle_dir))
    return Path(result.bundle_dir)
