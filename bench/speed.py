"""``housing bench --mode speed``: ours against the KServe floor and the stack's own limit.

Five servers, started once, measured in interleaved rounds (the order reversed every other round,
so a drift in the shared machine's load hits all alike):

- ``limit``: :mod:`bench.limit` — a bare uvicorn ASGI app and a bare ``grpc.aio`` servicer answering
  fixed bodies (no per-request log line);
- ``ours`` / ``floor``: the predictor and KServe's constant model (:mod:`bench.floor`) with the
  per-request log lines off (the predictor's defaults, ``--access_log false --trace_log false``);
- ``ours-logs`` / ``floor-logs``: both with every line KServe writes at INFO
  (``--access_log true --trace_log true``), what the same request costs with them.

Loads: one ames row over V1, V2 REST (JSON) and V2 gRPC from each, and a 10,000-row V2 batch to
``ours``. Every figure is the median over the rounds; ratios are ratios of medians of the same run,
given both in requests/s and in the server's CPU per request (steadier on shared cores).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import loadgen, servers
from bench.run import Results, _with_cpu, grpc_request, holdout_rows, machine_description, v1_body, v2_columns
from common.config import DEFAULT_MODEL_NAME
from predictor.observe.request_logs import OFF, ON

LOADS = ("v1_1row", "v2_1row", "grpc_1row")
#: (label, what it is) in the order the report lists them
SERVERS = ("limit", "ours", "floor", "ours-logs", "floor-logs")
#: the issue's goals, same-run ratios of medians (req/s)
GOALS = {
    "ours_over_floor_v1": 2.0,
    "ours_over_floor_grpc": 1.5,
    "ours_over_floor_v2": 3.5,
    "ours_over_limit_v1": 0.5,
    "batch_rows_per_s": 150_000,
}


def measure(
    bundle_dir: Path, workdir: Path, seconds: float, rounds: int, connections: int = 8, batch_rows: int = 10_000
) -> dict[str, Any]:
    """Start the five servers, check the answers, run warm-up and ``rounds`` interleaved rounds."""
    name = DEFAULT_MODEL_NAME
    res = Results(
        machine=machine_description(),
        config={"seconds": seconds, "rounds": rounds, "connections": connections, "batch_rows": batch_rows},
    )
    rows = holdout_rows(bundle_dir, batch_rows)
    one = v2_columns(rows[:1])
    bodies = {"v1_1row": v1_body(rows[0]), "v2_1row": json.dumps(one).encode()}
    batch = json.dumps(v2_columns(rows[:batch_rows])).encode()
    grpc_body = grpc_request(name, one)
    paths = {"v1_1row": f"/v1/models/{name}:predict", "v2_1row": f"/v2/models/{name}/infer"}
    running = [
        servers.start_limit(name, workdir),
        servers.start_ours(bundle_dir, name, workdir, logs=OFF),
        servers.start_floor(name, workdir, logs=OFF),
        servers.start_ours(bundle_dir, name, workdir, label="ours-logs", logs=ON),
        servers.start_floor(name, workdir, label="floor-logs", logs=ON),
    ]
    try:
        for server in running:
            servers.wait_ready(server)
        by_label = {s.label: s for s in running}
        logs = {s.label: s.logs for s in running}
        for server in running:  # every answer is a 200 before anything is timed
            for load, path in paths.items():
                reply = httpx.post(
                    server.http_url + path, content=bodies[load], headers={"content-type": "application/json"}
                )
                if reply.status_code != 200:
                    raise RuntimeError(f"{server.label} answered {reply.status_code} to {path}: {reply.text[:300]}")
        plan: list[tuple[str, Callable[[float], loadgen.LoadResult]]] = []
        for label in SERVERS:
            server = by_label[label]
            for load in LOADS:
                if load == "grpc_1row":
                    run = _grpc(server.grpc_target, grpc_body, connections)
                else:
                    run = _rest(server.http_url + paths[load], bodies[load], connections)
                plan.append((f"{label}.{load}", _with_cpu(server, run)))
        batch_run = _rest(by_label["ours"].http_url + paths["v2_1row"], batch, 2, timeout=30)
        plan.append(("ours.v2_batch", _with_cpu(by_label["ours"], lambda secs: batch_run(3 * secs))))
        for _key, run in plan:  # warm-up, discarded
            run(min(2.0, seconds))
        for rep in range(rounds):
            for key, run in plan if rep % 2 == 0 else plan[::-1]:
                result = run(seconds)
                res.add(key, result)
    finally:
        for server in running:
            server.stop()
    return {"res": res, "logs": logs, "batch_rows": batch_rows, "summary": summarise(res, batch_rows)}


def _rest(url: str, body: bytes, conns: int, timeout: float = 2.0) -> Callable[[float], loadgen.LoadResult]:
    return lambda secs: loadgen.run_wrk(url, body, secs, connections=conns, timeout=timeout)


def _grpc(target: str, body: bytes, conns: int) -> Callable[[float], loadgen.LoadResult]:
    return lambda secs: loadgen.run_grpc(target, body, secs, conns)


def summarise(res: Results, batch_rows: int) -> dict[str, float]:
    """The same-run ratios: req/s of medians, and server CPU per request (theirs ÷ ours)."""

    def rps(key: str, over: str) -> float:
        below = res.median(over)
        return res.median(key) / below if below else float("nan")

    def cpu(key: str, over: str) -> float:  # CPU per request of ``over`` ÷ of ``key``: >1 = ours cheaper
        mine = res.median(key, "cpu_ms_per_request")
        return res.median(over, "cpu_ms_per_request") / mine if mine else float("nan")

    out: dict[str, float] = {}
    for load in LOADS:
        proto = load.split("_")[0]
        for other in ("floor", "limit"):
            out[f"ours_over_{other}_{proto}"] = rps(f"ours.{load}", f"{other}.{load}")
            out[f"cpu_{other}_over_ours_{proto}"] = cpu(f"ours.{load}", f"{other}.{load}")
        out[f"logs_ours_over_floor_{proto}"] = rps(f"ours-logs.{load}", f"floor-logs.{load}")
        out[f"logs_on_over_off_ours_{proto}"] = rps(f"ours-logs.{load}", f"ours.{load}")
        out[f"logs_on_over_off_floor_{proto}"] = rps(f"floor-logs.{load}", f"floor.{load}")
    out["batch_rows_per_s"] = res.median("ours.v2_batch") * batch_rows
    out["batch_cpu_ms_per_request"] = res.median("ours.v2_batch", "cpu_ms_per_request")
    return out


def markdown(result: dict[str, Any], command: str) -> list[str]:
    """The section of docs/benchmarks.md: rows with their logging, the ratios against the goals."""
    res: Results = result["res"]
    s = result["summary"]
    cfg = res.config
    load_avg = res.machine["loadavg_at_start"]
    lines = [
        f"{res.machine['date'][:10]}, `{command}`: {cfg['rounds']} interleaved rounds (order reversed every "
        f"other round) of {cfg['seconds']:g} s per load, {cfg['connections']} connections, warm-up excluded, "
        f"on {res.machine['cores']} cores shared with other jobs (load average {load_avg[0]:.1f} at the start); "
        "medians with [min–max] over the rounds. CPU ms/req: the server's user + system CPU over a run ÷ its "
        "requests. ames XGBoost, one row (V2: one tensor per feature).",
        "",
        "| load | server | per-request log lines | req/s | p50 ms | p99 ms | server CPU ms/req |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for load in (*LOADS, "v2_batch"):
        for label in SERVERS:
            key = f"{label}.{load}"
            if key not in res.runs:
                continue
            lo, hi = res.spread(key)
            lines.append(
                f"| {load} | {label} | {result['logs'][label]} | {res.median(key):,.0f} [{lo:,.0f}–{hi:,.0f}] "
                f"| {res.median(key, 'p50_ms'):.2f} | {res.median(key, 'p99_ms'):.2f} "
                f"| {res.median(key, 'cpu_ms_per_request'):.3f} |"
            )
    lines += [
        "",
        "| figure (same run) | req/s ratio | CPU/request ratio (theirs ÷ ours) | goal |",
        "| --- | ---: | ---: | --- |",
    ]
    names = {"v1": "V1", "v2": "V2 REST", "grpc": "V2 gRPC"}
    goals = {"ours_over_floor_v1": "≥ 2.0", "ours_over_floor_grpc": "≥ 1.5", "ours_over_floor_v2": "≥ 3.5"}
    goals["ours_over_limit_v1"] = "≥ 0.5"
    for other in ("floor", "limit"):
        for proto, name in names.items():
            key = f"ours_over_{other}_{proto}"
            lines.append(
                f"| ours ÷ {other}, {name} one row (logs off) | {s[key]:.2f} "
                f"| {s[f'cpu_{other}_over_ours_{proto}']:.2f} | {goals.get(key, '')} |"
            )
    for proto, name in names.items():
        lines.append(f"| ours ÷ floor, {name} one row, logs on (both) | {s[f'logs_ours_over_floor_{proto}']:.2f} | | |")
    for proto, name in names.items():
        lines.append(
            f"| logs on ÷ off, {name} one row: ours / floor | {s[f'logs_on_over_off_ours_{proto}']:.2f} / "
            f"{s[f'logs_on_over_off_floor_{proto}']:.2f} | | |"
        )
    lines.append(
        f"| V2 {result['batch_rows']:,}-row batch, rows/s server-side (2 connections) | {s['batch_rows_per_s']:,.0f} "
        f"| | ≥ 150,000 |"
    )
    return lines


def speed_mode(seconds: float, rounds: int, out_dir: Path, command: str) -> dict[str, Any]:
    """Run :func:`measure` on a fresh ames bundle; writes section ``speed`` of benchmarks.md and
    ``benchmarks-speed.json``."""
    import tempfile

    from bench.sections import write_section
    from bench.soak import soak_bundle

    with tempfile.TemporaryDirectory(prefix="housing-speed-") as tmp:
        workdir = Path(tmp)
        began = time.perf_counter()
        result = measure(soak_bundle(workdir), workdir, seconds, rounds)
    res: Results = result["res"]
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": res.machine,
        "config": res.config,
        "logs": result["logs"],
        "runs": res.runs,
        "summary": result["summary"],
        "seconds": time.perf_counter() - began,
        "command": command,
    }
    (out_dir / "benchmarks-speed.json").write_text(json.dumps(data, indent=2, default=float))
    section = ["## Ours, the floor and the limit", "", *markdown(result, command)]
    write_section(out_dir / "benchmarks.md", "speed", section)
    return {**result["summary"], "median_rounds": statistics.median([len(v) for v in res.runs.values()])}
