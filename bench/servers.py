"""Start the servers the benchmark compares (ours, the floor, the peers), each as its own process on free ports."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import kserve_runtimes, mlflow_serve, mlserver
from common.net import LoopbackServer, free_port, wait_http
from common.procs import stop_process
from predictor.observe.request_logs import OFF, RequestLogs

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Server(LoopbackServer):
    """A running server under test."""

    label: str
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    model_name: str
    ready_path: str = ""  # default: the V2 model-ready endpoint
    logs: str = "as the server's defaults"  # its per-request log lines, as the report states them

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the server's process group (its own session)."""
        return group_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        """Terminate the process group and wait."""
        stop_process(self.proc, 20, group=True)


def _stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc ``stat`` file after the command name: state, ppid, pgrp, …, utime (12th), stime (13th)."""
    return stat.read_text().rsplit(")", 1)[1].split()


def _cpu_ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (utime + stime, /proc) of the live processes whose process group is ``pgid``."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry / "stat")
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:
            ticks += _cpu_ticks(fields)
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    """Resident set size of a process (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``)."""
    return _cpu_ticks(_stat_fields(Path(f"/proc/{pid}/stat"))) / os.sysconf("SC_CLK_TCK")


def wait_ready(server: Server, timeout: float = 120.0) -> float:
    """Block until the model-ready endpoint answers 200; returns seconds waited."""
    path = server.ready_path or f"/v2/models/{server.model_name}/ready"
    return wait_http(f"{server.http_url}{path}", timeout, server.proc, server.label)


def _spawn(label: str, args: list[str], model_name: str, http: int, grpc: int, log: Path, logs: str = "") -> Server:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = Server(label, proc, http, grpc, model_name)
    if logs:
        server.logs = logs
    return server


def _log_flags(logs: RequestLogs) -> list[str]:
    """The predictor's (and the floor's) flags for ``logs``."""
    return ["--access_log", str(logs.access).lower(), "--trace_log", str(logs.trace).lower()]


def start_ours(
    bundle_dir: Path,
    model_name: str,
    workdir: Path,
    extra: list[str] | None = None,
    label: str = "ours",
    logs: RequestLogs = OFF,
) -> Server:
    """``python -m predictor`` serving the bundle (``extra``: more predictor flags; ``logs``: its log lines)."""
    http, grpc = free_port(), free_port()
    args = [sys.executable, "-m", "predictor", "--model_name", model_name, "--model_dir", str(bundle_dir)]
    args += ["--http_port", str(http), "--grpc_port", str(grpc), *_log_flags(logs), *(extra or [])]
    return _spawn(label, args, model_name, http, grpc, workdir / f"{label}.log", logs.describe())


def start_floor(model_name: str, workdir: Path, label: str = "floor", logs: RequestLogs = OFF) -> Server:
    """The constant kserve.Model (bench.floor) with the same server and logging settings."""
    http, grpc = free_port(), free_port()
    args = [sys.executable, "-m", "bench.floor", "--model_name", model_name]
    args += ["--http_port", str(http), "--grpc_port", str(grpc), *_log_flags(logs)]
    return _spawn(label, args, model_name, http, grpc, workdir / f"{label}.log", logs.describe())


def start_limit(model_name: str, workdir: Path) -> Server:
    """The bare uvicorn ASGI app and bare grpc.aio servicer of :mod:`bench.limit` (no log line per request)."""
    http, grpc = free_port(), free_port()
    args = [sys.executable, "-m", "bench.limit", "--model_name", model_name]
    args += ["--http_port", str(http), "--grpc_port", str(grpc)]
    server = _spawn("limit", args, model_name, http, grpc, workdir / "limit.log", "no per-request lines")
    server.ready_path = "/"
    return server


def start_mlserver(bundle_dir: Path, model_name: str, workdir: Path) -> Server:
    """Seldon MLServer (mlserver-sklearn) serving the naive pipeline of the same bundle."""
    http, grpc = free_port(), free_port()
    model_dir = mlserver.prepare_model_dir(bundle_dir, workdir / "mlserver", model_name, http, grpc)
    proc = mlserver.start(model_dir, workdir / "mlserver.log")
    return Server("mlserver", proc, http, grpc, model_name)


def start_kserve_runtime(runtime: str, model_dir: Path, model_name: str, workdir: Path) -> Server:
    """KServe's own ``xgbserver`` or ``sklearnserver`` (own venv, see :mod:`bench.kserve_runtimes`)."""
    http, grpc = free_port(), free_port()
    proc = kserve_runtimes.start(runtime, model_dir, model_name, http, grpc, workdir / f"{runtime}.log")
    return Server(runtime, proc, http, grpc, model_name)


def start_mlflow(bundle_dir: Path, model_name: str, workdir: Path, example: list[dict[str, Any]]) -> Server:
    """MLflow's scoring server on the bundle's pyfunc model (see :mod:`bench.mlflow_serve`)."""
    port = free_port()
    model = mlflow_serve.model_dir(bundle_dir, workdir / "mlflow-model", example)
    proc = mlflow_serve.start(model, port, workdir / "mlflow.log")
    return Server("mlflow", proc, port, 0, model_name, ready_path="/ping")
