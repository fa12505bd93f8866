"""``housing demo``: the main job on the embedded default, end to end on one machine.

1. train ames twice (the first version becomes champion, the second the challenger),
2. serve the champion (``python -m predictor --storage_uri models:/housing@champion``),
3. send a V1 and a V2 request and print the answers,
4. run a canary (``housing rollout run``): the offline quality gate scores both versions on the
   same evaluation rows first, then the challenger takes 10 → 50 → 100 % of live traffic, gated
   on Prometheus, and is promoted or rolled back by itself. The router also sends the champion's
   requests to the challenger (``--shadow 1``), so the mean-shift gate compares the two answers to
   the same rows; the flags (:data:`common.config.DEMO_CANARY`) come from the power curve in rollout/README.md.

Every step is the same code a user runs by hand; nothing here is demo-only logic.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

from common.config import ALIAS_CHAMPION, load_settings
from common.config import DEMO_CANARY as CANARY
from common.net import free_port, wait_http

console = Console()


def _sample_row(dataset: str, target: str) -> dict[str, Any]:
    """One raw row of the dataset, target removed, JSON-ready (what a client would send)."""
    from training.datasets import load_dataset

    frame = load_dataset(dataset).frame.drop(columns=[target])
    return json.loads(frame.iloc[[7]].to_json(orient="records"))[0]


def _v2_body(row: dict[str, Any]) -> dict[str, Any]:
    inputs = []
    for name, value in row.items():
        if isinstance(value, str):
            datatype = "BYTES"
        elif isinstance(value, bool):
            datatype = "BOOL"
        elif isinstance(value, int):
            datatype = "INT64"
        else:
            datatype = "FP64"
        inputs.append({"name": name, "shape": [1], "datatype": datatype, "data": [value]})
    return {"id": "demo-v2", "inputs": inputs}


def _serve_and_predict(model_name: str, row: dict[str, Any], log_dir: Path) -> None:
    http, grpc = free_port(), free_port()
    uri = f"models:/{model_name}@{ALIAS_CHAMPION}"
    argv = [sys.executable, "-m", "predictor", "--model_name", model_name, "--storage_uri", uri]
    argv += ["--http_port", str(http), "--grpc_port", str(grpc)]
    console.print(f"[bold]serve[/] python -m predictor --storage_uri {uri} (http :{http}, grpc :{grpc})")
    log = log_dir / "demo-predictor.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http}"
    try:
        try:
            waited = wait_http(f"{base}/v2/models/{model_name}/ready", 120, proc, "the predictor")
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; see {log}") from None
        console.print(f"  ready in {waited:.1f} s")
        v1 = httpx.post(f"{base}/v1/models/{model_name}:predict", json={"instances": [row]}, timeout=10)
        console.print(f"[bold]V1[/] POST /v1/models/{model_name}:predict → {v1.status_code} {v1.text}")
        v2 = httpx.post(f"{base}/v2/models/{model_name}/infer", json=_v2_body(row), timeout=10)
        outputs = v2.json().get("outputs", v2.json())
        console.print(f"[bold]V2[/] POST /v2/models/{model_name}/infer → {v2.status_code} outputs={outputs}")
        meta = httpx.get(f"{base}/v2/models/{model_name}", timeout=10).json()
        console.print(f"  metadata: {len(meta.get('inputs', []))} inputs, outputs {meta.get('outputs')}")
        if v1.status_code != 200 or v2.status_code != 200:
            raise RuntimeError("a prediction request failed")
    finally:
        proc.terminate()
        proc.wait(20)


def demo(
    dataset: str = typer.Option("ames", "--dataset", "-d", help="ames or boston."),
    fast: bool = typer.Option(False, "--fast", help="Small models (seconds) instead of the full configuration."),
    interval: float = typer.Option(CANARY["interval"], help="Seconds per canary look (a step looks up to 3 times)."),
) -> None:
    """Train → serve → V1/V2 predictions → a canary step, all on this machine (no cluster).

    State goes to HOUSING_HOME (default ./.housing): MLflow sqlite registry, bundles, rollout logs.
    Needs Prometheus (Debian's prometheus package) for the canary gates; `make demo` installs it.
    """
    from training.api import TrainConfig, run_training
    from training.cli import print_summary

    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]housing demo[/] (embedded: MLflow + bundles under " + str(settings.home) + ")")
    if not shutil.which("prometheus"):
        console.print("[red]error:[/] prometheus not found; install it with `bash scripts/tools/debian.sh`")
        raise typer.Exit(2)

    console.rule("1. train the champion")
    first = run_training(TrainConfig(dataset=dataset, fast=fast))
    print_summary(first)  # leaderboard, holdout metrics, where the bundle went, MLflow version
    console.rule("2. train a challenger (another seed)")
    second = run_training(TrainConfig(dataset=dataset, fast=fast, seed=7))
    print_summary(second)

    console.rule("3. serve the champion and predict (V1, V2)")
    row = _sample_row(dataset, first.manifest.target["name"])
    _serve_and_predict(settings.model_name, row, settings.home)

    console.rule(f"4. canary: challenger {' → '.join(CANARY['steps'].split(','))} %, gated on Prometheus")
    flags = {**CANARY, "interval": interval}
    cmd = [sys.executable, "-m", "housing", "rollout", "run"]
    for name, value in flags.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    console.print("$ housing " + " ".join(cmd[3:]))
    code = subprocess.run(cmd, env=os.environ.copy()).returncode
    if code not in (0, 3, 4, 6):  # promoted, rolled back, refused by the quality gate, not enough evidence: finished
        console.print(f"[red]the rollout failed with exit code {code}[/]")
        raise typer.Exit(code)
    console.rule("done")
    console.print(
        "Next: `housing serve` (champion on :8080), `housing rollout --help`, `make test`; "
        "the event log of the canary is under " + str(settings.home / "rollouts")
    )
