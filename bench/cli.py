"""``housing bench``: the benchmark run (ours vs the KServe floor vs MLServer)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from bench.loadgen import wrk_available


def bench(
    smoke: bool = typer.Option(False, "--smoke", help="A seconds-long run that only proves the harness works."),
    seconds: float = typer.Option(5.0, help="Length of each load run."),
    repetitions: int = typer.Option(3, help="Interleaved rounds; medians and spread are reported."),
    connections: int = typer.Option(8, help="Concurrent keep-alive connections of the load generator."),
    out: Path = typer.Option(None, help="Where benchmarks.md/.json go (default docs/, smoke: a temp dir)."),
    mlserver: bool = typer.Option(True, help="Include Seldon MLServer (installs its own virtualenv on first use)."),
) -> None:
    """Measure the predictor against the KServe floor and MLServer, in-process, start-up and training.

    Examples:

      housing bench                  # full run, writes docs/benchmarks.md and docs/benchmarks.json

      housing bench --smoke          # quick check that every phase still runs
    """
    from bench.run import BenchConfig, run

    if not wrk_available():
        typer.echo("error: wrk not found; install it (Debian: apt-get install wrk)", err=True)
        raise typer.Exit(2)
    if smoke:
        cfg = BenchConfig.smoke_config(out or Path(tempfile.mkdtemp(prefix="housing-bench-")))
    else:
        cfg = BenchConfig(seconds=seconds, repetitions=repetitions, connections=connections)
        if out:
            cfg.out_dir = out
    cfg.with_mlserver = mlserver
    summary = run(cfg)
    typer.echo(json.dumps(summary, indent=2, default=float))
