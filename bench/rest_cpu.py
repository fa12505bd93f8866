"""REST throughput and server CPU per request, ours vs the KServe floor: ``python -m bench.rest_cpu``.

    python -m bench.rest_cpu --bundle DIR [--rounds 5] [--seconds 5] [--batch-rows 10000] [--loads v2_1row,...]

Starts ``python -m predictor`` on the bundle and the constant-model floor (:mod:`bench.floor`),
then runs the loads in interleaved rounds with wrk (:func:`bench.loadgen.run_wrk`): one-row V1,
one-row V2 JSON (both servers) and a V2 columnar batch (ours). Besides req/s it reads each
server's user+system CPU time from ``/proc/<pid>/stat`` around every run: on a machine shared
with other jobs, CPU-milliseconds per request (and the rows/s that CPU time allows) moves far
less than wall-clock throughput. Prints medians and the ratios of the same run; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import loadgen, servers
from bench.run import holdout_rows, v1_body, v2_columns
from common.config import DEFAULT_MODEL_NAME


def measure(pid: int, run: Callable[[], loadgen.LoadResult]) -> dict[str, float]:
    """One load run: req/s, p50, and server CPU-ms per request."""
    before = servers.cpu_seconds(pid)
    result = run()
    used = servers.cpu_seconds(pid) - before
    ok = max(result.requests - result.errors, 1)
    return {"rps": result.rps, "p50_ms": result.p50_ms, "cpu_ms": used / ok * 1e3, "requests": result.requests}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="bundle directory (ames: numbers and categories)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--loads", default="v1_1row,v2_1row,v2_batch")
    parser.add_argument("--json", help="also write every run's figures here")
    args = parser.parse_args(argv)

    bundle_dir = Path(args.bundle)
    name = DEFAULT_MODEL_NAME
    rows = holdout_rows(bundle_dir, args.batch_rows)
    bodies = {
        "v1_1row": v1_body(rows[0]),
        "v2_1row": json.dumps(v2_columns(rows[:1])).encode(),
        "v2_batch": json.dumps(v2_columns(rows)).encode(),
    }
    paths = {"v1_1row": f"/v1/models/{name}:predict", "v2_1row": f"/v2/models/{name}/infer"}
    paths["v2_batch"] = paths["v2_1row"]
    loads = [x.strip() for x in args.loads.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="housing-restcpu-") as tmp:
        running = [servers.start_ours(bundle_dir, name, Path(tmp)), servers.start_floor(name, Path(tmp))]
        try:
            for server in running:
                servers.wait_ready(server)
            plan: list[tuple[str, int, Callable[[], loadgen.LoadResult]]] = []
            for load in loads:
                for server in running:
                    if load == "v2_batch" and server.label == "floor":
                        continue
                    url = server.http_url + paths[load]
                    conns, secs = (2, 3 * args.seconds) if load == "v2_batch" else (args.connections, args.seconds)
                    plan.append(
                        (
                            f"{server.label}.{load}",
                            server.proc.pid,
                            lambda u=url, b=bodies[load], c=conns, s=secs: loadgen.run_wrk(
                                u, b, s, connections=c, timeout=30
                            ),
                        )
                    )
            for _, pid, run in plan:  # warm-up, discarded
                measure(pid, run)
            runs: dict[str, list[dict[str, float]]] = {}
            for rnd in range(args.rounds):
                for key, pid, run in plan:
                    fig = measure(pid, run)
                    runs.setdefault(key, []).append(fig)
                    print(
                        f"round {rnd + 1} {key}: {fig['rps']:.0f} req/s, {fig['cpu_ms']:.3f} CPU-ms/request", flush=True
                    )
        finally:
            for server in running:
                server.stop()
    report(runs, args.batch_rows, os.getloadavg()[0])
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))


def report(runs: dict[str, list[dict[str, float]]], batch_rows: int, load: float) -> None:
    """Medians per load, and ours ÷ floor from the same run."""

    def med(key: str, metric: str) -> float:
        values = [r[metric] for r in runs.get(key, [])]
        return statistics.median(values) if values else float("nan")

    print(f"\nmedians of {len(next(iter(runs.values())))} rounds (load average now {load:.1f})")
    for key in runs:
        rps, p50, cpu = med(key, "rps"), med(key, "p50_ms"), med(key, "cpu_ms")
        print(f"  {key:<16} {rps:9.0f} req/s  p50 {p50:7.2f} ms  {cpu:8.3f} CPU-ms/req")
    for load in ("v1_1row", "v2_1row"):
        if f"ours.{load}" in runs and f"floor.{load}" in runs:
            rps = med(f"ours.{load}", "rps") / med(f"floor.{load}", "rps")
            cpu = med(f"floor.{load}", "cpu_ms") / med(f"ours.{load}", "cpu_ms")
            print(f"  ours ÷ floor {load}: {rps:.2f} by req/s, {cpu:.2f} by CPU per request")
    if "ours.v2_batch" in runs:
        rows_wall = med("ours.v2_batch", "rps") * batch_rows
        rows_cpu = batch_rows / (med("ours.v2_batch", "cpu_ms") / 1e3)
        print(f"  V2 {batch_rows:,}-row batch: {rows_wall:,.0f} rows/s wall, {rows_cpu:,.0f} rows per CPU-second")


if __name__ == "__main__":
    main()
