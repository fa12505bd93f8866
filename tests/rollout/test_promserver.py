"""The embedded mode's throwaway Prometheus (real binary, real scrape targets on loopback)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from common.net import free_port
from rollout.backends.base import RolloutError
from rollout.promserver import LocalPrometheus


def _query(url: str, promql: str) -> float | None:
    result = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5.0).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_ready_means_every_target_was_scraped_so_no_request_is_lost(tmp_path: Path) -> None:
    """Requests served right after start count in ``increase()``: the first sample preceded them.

    Before, ``start`` returned on ``/-/ready``, traffic began at once, and a counter's first scrape
    already held the requests served meanwhile — lost to every gate (the canary's PSI then lacked
    the champion's evidence)."""
    registry = CollectorRegistry()
    served = Counter("served", "requests", registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {}}]))
    try:
        with LocalPrometheus(tmp_path / "prom", targets) as prom:
            served.inc(40)  # the traffic that starts as soon as the Prometheus is handed over
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and _query(prom.url, "max_over_time(served_total[1m])") != 40:
                time.sleep(0.3)
            assert _query(prom.url, "max_over_time(served_total[1m])") == 40
            assert _query(prom.url, "min_over_time(served_total[1m])") == 0  # scraped before any request
    finally:
        server.shutdown()
        thread.join(5)


def test_a_target_never_up_fails_the_start_naming_it(tmp_path: Path) -> None:
    targets = tmp_path / "targets.json"
    dead = f"127.0.0.1:{free_port()}"
    targets.write_text(json.dumps([{"targets": [dead], "labels": {}}]))
    prom = LocalPrometheus(tmp_path / "prom", targets)
    try:
        with pytest.raises(RolloutError, match=dead):
            prom.start(timeout=6)
        assert prom.proc is None or prom.proc.poll() is not None  # stopped again
    finally:
        prom.stop()  # when the start did not fail as it should
