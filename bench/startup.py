"""Process start to Ready, and the memory of a warmed-up predictor (``housing bench --mode start``).

Each run spawns ``python -m predictor`` on a bundle and times it from the spawn to the first 200
from ``/v2/models/<name>/ready`` (what a readiness probe waits for), reads the CPU seconds the
process used until then, then sends ``warmup`` one-row requests (V1, V2 REST and V2 gRPC in
turn, a ``/metrics`` scrape every 50th) and reads its resident set size (``VmRSS``). Figures are
medians over the runs; nothing here asserts a time (two shared cores are noisy: the CPU seconds
move less with the neighbours than the wall-clock ones).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import servers
from common.config import DEFAULT_MODEL_NAME

console = Console(stderr=True)

#: Goals of issue 12 (docs/architecture.md, "Start-up").
GOAL_START_S = 1.0
GOAL_RSS_MIB = 150.0


@dataclass
class StartResult:
    """Every run's figures."""

    warmup_requests: int
    start_s: list[float] = field(default_factory=list)  # spawn → first 200 from the ready endpoint
    cpu_s: list[float] = field(default_factory=list)  # CPU seconds of the process until then
    rss_ready_kb: list[int] = field(default_factory=list)
    rss_warm_kb: list[int] = field(default_factory=list)  # after the warm-up requests
    loadavg: list[float] = field(default_factory=list)  # 1-min load average before each run

    def medians(self) -> dict[str, float]:
        med = statistics.median
        return {
            "start_s": med(self.start_s),
            "cpu_s": med(self.cpu_s),
            "rss_ready_mib": med(self.rss_ready_kb) / 1024,
            "rss_warm_mib": med(self.rss_warm_kb) / 1024,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median": self.medians()}


def warm_up(server: servers.Server, rows: list[dict[str, Any]], n: int) -> None:
    """``n`` one-row requests over V1, V2 REST and V2 gRPC in turn; anything but success raises."""
    import grpc
    import httpx
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    from bench.run import grpc_request, v2_columns

    name = server.model_name
    v1 = [json.dumps({"instances": [row]}).encode() for row in rows]
    v2 = [json.dumps(v2_columns([row])).encode() for row in rows]
    grpc_requests = [pb.ModelInferRequest.FromString(grpc_request(name, v2_columns([row]))) for row in rows]
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=server.http_url, timeout=30) as client, grpc.insecure_channel(server.grpc_target) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        for i in range(n):
            row = i % len(rows)
            if i % 3 == 0:
                status = client.post(f"/v1/models/{name}:predict", content=v1[row], headers=headers).status_code
            elif i % 3 == 1:
                status = client.post(f"/v2/models/{name}/infer", content=v2[row], headers=headers).status_code
            else:
                stub.ModelInfer(grpc_requests[row], timeout=30)
                status = 200
            if status != 200:
                raise RuntimeError(f"warm-up request {i} answered {status}")
            if i % 50 == 49:
                client.get("/metrics").raise_for_status()


def measure_starts(
    bundle_dir: Path, workdir: Path, runs: int, warmup: int = 300, model_name: str = DEFAULT_MODEL_NAME
) -> StartResult:
    """``runs`` predictor starts on ``bundle_dir``: start → Ready, CPU, RSS at Ready and after ``warmup``."""
    from bench.run import holdout_rows

    rows = holdout_rows(bundle_dir, 8)
    res = StartResult(warmup_requests=warmup)
    for i in range(runs):
        res.loadavg.append(os.getloadavg()[0])
        began = time.perf_counter()
        server = servers.start_ours(bundle_dir, model_name, workdir)
        try:
            servers.wait_ready(server)
            res.start_s.append(time.perf_counter() - began)
            res.cpu_s.append(servers.cpu_seconds(server.proc.pid))
            res.rss_ready_kb.append(servers.rss_kb(server.proc.pid))
            warm_up(server, rows, warmup)
            res.rss_warm_kb.append(servers.rss_kb(server.proc.pid))
        finally:
            server.stop()
        console.log(
            f"start {i + 1}/{runs}: ready in {res.start_s[-1]:.2f} s ({res.cpu_s[-1]:.2f} CPU s), "
            f"RSS {res.rss_ready_kb[-1] / 1024:.0f} MiB at ready, {res.rss_warm_kb[-1] / 1024:.0f} MiB after warm-up"
        )
    m = res.medians()
    console.log(
        f"start to ready: median {m['start_s']:.2f} s ({m['cpu_s']:.2f} CPU s); "
        f"RSS after {warmup} requests: median {m['rss_warm_mib']:.0f} MiB"
    )
    return res


def markdown(res: StartResult) -> list[str]:
    """The lines of the start-up section of benchmarks.md."""
    m = res.medians()
    spread = f"{min(res.start_s):.2f}–{max(res.start_s):.2f}"
    load = f"{min(res.loadavg):.1f}–{max(res.loadavg):.1f}"
    return [
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, `housing bench --mode start`: {len(res.start_s)} starts of "
        "`python -m predictor` on an ames XGBoost bundle (`--model_dir`), each timed from the spawn to the first "
        f"200 from `/v2/models/<name>/ready`, then {res.warmup_requests} one-row requests (V1, V2 REST, V2 gRPC in "
        f"turn). Load average {load} during the runs (2 cores shared with other jobs).",
        "",
        "| figure | median | goal |",
        "| --- | ---: | --- |",
        f"| process start to ready (s) [min–max] | {m['start_s']:.2f} [{spread}] | ≤ {GOAL_START_S:g} |",
        f"| CPU seconds used until ready | {m['cpu_s']:.2f} | |",
        f"| RSS at ready (MiB) | {m['rss_ready_mib']:.0f} | |",
        f"| RSS after {res.warmup_requests} requests (MiB) | {m['rss_warm_mib']:.0f} | ≤ {GOAL_RSS_MIB:g} |",
    ]
