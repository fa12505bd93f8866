"""Load generators that run in a separate process from the server under test.

REST load comes from ``wrk`` (Debian) driven by ``wrk_report.lua``; gRPC load from a small
asyncio client in a child process (wrk speaks no HTTP/2). Both report requests/s and
p50/p95/p99 latency; warm-up runs are made and discarded by the caller.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

LUA = Path(__file__).with_name("wrk_report.lua")


@dataclass
class LoadResult:
    """One load run's figures."""

    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_ms_per_request: float = float("nan")  # the server's CPU time over the run ÷ requests (set by the caller)

    def to_dict(self) -> dict[str, float]:
        """Plain dict for the JSON report."""
        return asdict(self)


def wrk_available() -> bool:
    """True when the wrk binary is on PATH."""
    return shutil.which("wrk") is not None


def run_wrk(url: str, body: bytes, seconds: float, connections: int = 8, threads: int = 1) -> LoadResult:
    """POST ``body`` to ``url`` for ``seconds`` with ``connections`` keep-alive connections."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        fh.write(body)
        body_file = fh.name
    try:
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(LUA), url],
            capture_output=True,
            text=True,
            env={**os.environ, "WRK_BODY": body_file},
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(body_file)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    ok = data["requests"] - data["non2xx"]
    return LoadResult(
        rps=ok / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        errors=data["errors"],
    )


def run_grpc(target: str, request_bytes: bytes, seconds: float, concurrency: int = 8) -> LoadResult:
    """Send a serialized ModelInferRequest to ``target`` from a child process."""
    with tempfile.NamedTemporaryFile(suffix=".pb", delete=False) as fh:
        fh.write(request_bytes)
        path = fh.name
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.grpc_client", target, path, str(seconds), str(concurrency)],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 120,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout
    finally:
        os.unlink(path)
    return LoadResult(**json.loads(out.strip().splitlines()[-1]))
