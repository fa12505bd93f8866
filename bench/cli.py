"""``housing bench``: the benchmark run (ours vs the KServe floor, KServe's runtimes, MLflow and MLServer)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from bench.loadgen import wrk_available

MODES = ("compare", "start", "soak", "payload", "fuzz", "train-scale", "speed")


def bench(
    mode: str = typer.Option(
        "compare",
        "--mode",
        help="compare: ours vs the floor and the peers; start: --start-runs predictor starts (start → Ready, RSS "
        "after --warmup-requests); soak: 80 % of the maximum for --soak-seconds with good and bad requests; fuzz: "
        "--fuzz-requests generated from the V2 OpenAPI description; payload: one-row V1/V2 throughput with the payload "
        "log off and on (--repetitions rounds of --seconds); train-scale: `housing train` of each candidate on "
        "10k/100k/1M-row tables sampled from ames (wall time, peak RSS; --train-budget bounds each); speed: ours "
        "vs the KServe floor and the bare-stack limit, one-row V1/V2/gRPC with the per-request logs off and on, "
        "and the 10k-row V2 batch (--repetitions rounds of --seconds; a section of docs/benchmarks.md and "
        "docs/benchmarks-speed.json).",
    ),
    smoke: bool = typer.Option(False, "--smoke", help="A seconds-long run that only proves the harness works."),
    soak_seconds: float = typer.Option(600.0, "--soak-seconds", help="--mode soak: how long the load is held."),
    fuzz_requests: int = typer.Option(5000, "--fuzz-requests", help="--mode fuzz: how many requests to generate."),
    start_runs: int = typer.Option(7, "--start-runs", help="Predictor starts timed (medians; compare mode too)."),
    warmup_requests: int = typer.Option(300, "--warmup-requests", help="Requests before a started predictor's RSS."),
    seconds: float = typer.Option(5.0, help="Length of each load run."),
    repetitions: int = typer.Option(3, help="Interleaved rounds; medians and spread are reported."),
    connections: int = typer.Option(8, help="Concurrent keep-alive connections of the load generator."),
    out: Path = typer.Option(None, help="Where benchmarks.md/.json go (default docs/, smoke: a temp dir)."),
    mlserver: bool = typer.Option(True, help="Include Seldon MLServer (installs its own virtualenv on first use)."),
    images: bool = typer.Option(
        True,
        help="Build both images with podman (cached) and time the predictor's start in the serving image, run "
        "read-only as uid 10001 (needs root and podman; skipped with the reason otherwise; --smoke skips it).",
    ),
    kserve_runtimes: bool = typer.Option(
        True,
        help="Include KServe's xgbserver and sklearnserver (build their own virtualenv on first use, "
        "from the KServe Go module; --smoke skips them when that fails).",
    ),
    mlflow: bool = typer.Option(True, help="Include MLflow's scoring server (mlflow models serve)."),
    train_budget: float = typer.Option(
        900.0, "--train-budget", help="--mode train-scale: seconds a candidate may take at one size (projected)."
    ),
) -> None:
    """Measure the predictor against the KServe floor and the peers, in-process, start-up and training.

    Examples:

      housing bench                  # full run, writes docs/benchmarks.md and docs/benchmarks.json

      housing bench --smoke          # quick check that every phase still runs

      housing bench --mode start     # 7 predictor starts: start → Ready, RSS after 300 requests; a section

      housing bench --mode soak      # 10 minutes at 80 % of the maximum; a section of docs/benchmarks.md

      housing bench --mode payload   # what the payload log costs: V1/V2 one-row req/s off vs on; a section

      housing bench --mode fuzz      # 5,000 schemathesis requests against the V2 REST API

      housing bench --mode train-scale   # training's cost at 10k, 100k, 1M rows; a section
      housing bench --mode speed     # ours ÷ floor and ÷ limit (bare uvicorn / grpc.aio), logs off and on
    """
    if mode not in MODES:
        raise typer.BadParameter(f"--mode: one of {', '.join(MODES)}, got {mode!r}")
    if mode == "fuzz":
        from bench.modes import fuzz_mode

        result = fuzz_mode(fuzz_requests, out or Path("docs"))
        typer.echo(json.dumps(result, indent=2, default=float))
        raise typer.Exit(1 if result["server_errors"] else 0)
    if mode == "train-scale":
        from bench.modes import train_scale_mode

        lines = train_scale_mode(smoke, train_budget, out or Path("docs"))
        typer.echo("\n".join(lines))
        raise typer.Exit(0)
    if mode == "start":
        from bench.modes import start_mode

        result = start_mode(1 if smoke else start_runs, 10 if smoke else warmup_requests, out or Path("docs"))
        typer.echo(json.dumps(result["median"], indent=2))
        raise typer.Exit(0)
    if not wrk_available():  # every mode below drives wrk
        typer.echo("error: wrk not found; install it (Debian: apt-get install wrk)", err=True)
        raise typer.Exit(2)
    if mode == "speed":
        from bench.speed import speed_mode

        command = f"housing bench --mode speed --seconds {seconds:g} --repetitions {repetitions}"
        result = speed_mode(1.0 if smoke else seconds, 1 if smoke else repetitions, out or Path("docs"), command)
        typer.echo(json.dumps(result, indent=2, default=float))
        raise typer.Exit(0)
    if mode == "payload":
        from bench.modes import payload_mode

        result = payload_mode(2.0 if smoke else seconds, 1 if smoke else max(repetitions, 5), out or Path("docs"))
        typer.echo(json.dumps(result["ratio"], indent=2))
        raise typer.Exit(0)
    if mode == "soak":
        from bench.modes import soak_mode

        result = soak_mode(20.0 if smoke else soak_seconds, out or Path("docs"))
        typer.echo(json.dumps(result, indent=2, default=float))
        raise typer.Exit(0 if result["unexpected"] == 0 and result["rss_growth"] <= 0.05 else 1)
    from bench.run import BenchConfig, run

    if smoke:
        cfg = BenchConfig.smoke_config(out or Path(tempfile.mkdtemp(prefix="housing-bench-")))
    else:
        cfg = BenchConfig(seconds=seconds, repetitions=repetitions, connections=connections)
        cfg.start_repetitions, cfg.warmup_requests = start_runs, warmup_requests
        if out:
            cfg.out_dir = out
    cfg.with_mlserver = mlserver
    cfg.with_kserve_runtimes = kserve_runtimes
    cfg.with_mlflow = mlflow
    cfg.with_images = images and not smoke
    summary = run(cfg)
    typer.echo(json.dumps(summary, indent=2, default=float))
