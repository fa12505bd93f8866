"""Small network helpers shared by the demo, the rollout's local backend, benchmarks and tests."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


class LoopbackServer:
    """Where a server process started on this machine listens: its ``http_port`` and ``grpc_port`` on
    127.0.0.1. A base of the dataclasses that hold the ports (the benchmark's servers, the tests'
    predictor processes); it has no fields of its own."""

    http_port: int
    grpc_port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, what: str = "") -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited.

    Raises RuntimeError when ``proc`` exits first and TimeoutError after ``timeout``.
    """
    start = time.perf_counter()
    last: object = "no answer"
    while time.perf_counter() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what or proc.args} exited with {proc.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return time.perf_counter() - start
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:g}s: {last}")
