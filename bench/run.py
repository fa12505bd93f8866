"""One benchmark run: ours vs the KServe floor vs MLServer, in-process figures, start-up, training.

Every comparison is a ratio of figures taken in the same run, with the servers measured in
interleaved rounds so a noisy neighbour hits all of them alike. Results go to
``docs/benchmarks.json`` (raw figures, machine description) and ``docs/benchmarks.md`` (table).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bench import loadgen, servers
from bench.sections import keep_sections
from housing.config import DEFAULT_MODEL_NAME

console = Console(stderr=True)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class BenchConfig:
    """How long and how often to measure."""

    seconds: float = 5.0  # per load run
    repetitions: int = 3  # interleaved rounds
    connections: int = 8
    warmup_seconds: float = 2.0
    batch_rows: int = 10_000
    train_repetitions: int = 3
    start_repetitions: int = 5
    warmup_requests: int = 300  # before the RSS of a started predictor is read
    smoke: bool = False
    out_dir: Path = REPO / "docs"
    with_mlserver: bool = True

    @classmethod
    def smoke_config(cls, out_dir: Path) -> BenchConfig:
        """A seconds-long run that exercises every code path (CI keeps the harness alive)."""
        return cls(
            seconds=1.0,
            repetitions=1,
            connections=2,
            warmup_seconds=0.5,
            batch_rows=500,
            train_repetitions=1,
            start_repetitions=1,
            warmup_requests=30,
            smoke=True,
            out_dir=out_dir,
        )


@dataclass
class Results:
    """Raw figures collected during the run."""

    machine: dict[str, Any]
    config: dict[str, Any]
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    inprocess: dict[str, Any] = field(default_factory=dict)
    startup_s: list[float] = field(default_factory=list)
    startup: dict[str, Any] = field(default_factory=dict)  # bench.startup.StartResult.to_dict()
    training_s: list[float] = field(default_factory=list)
    training_metrics: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, result: loadgen.LoadResult) -> None:
        self.runs.setdefault(key, []).append(result.to_dict())

    def median(self, key: str, metric: str = "rps") -> float:
        values = [r[metric] for r in self.runs.get(key, [])]
        return statistics.median(values) if values else float("nan")

    def spread(self, key: str, metric: str = "rps") -> tuple[float, float]:
        values = [r[metric] for r in self.runs.get(key, [])]
        return (min(values), max(values)) if values else (float("nan"), float("nan"))


def machine_description() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_at_start": load,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- requests -------------------------------------------------------------------------------
def v1_body(row: dict[str, Any]) -> bytes:
    """A V1 predict body with one instance."""
    return json.dumps({"instances": [row]}).encode()


def v2_columns(rows: list[dict[str, Any]], content_type: bool = False) -> dict[str, Any]:
    """A V2 infer body with one tensor per feature (MLServer's pandas convention)."""
    from predictor.v2_request import v2_body

    return v2_body(rows, names=rows[0], request_id="bench", parameters={"content_type": "pd"} if content_type else None)


def grpc_request(model_name: str, body: dict[str, Any]) -> bytes:
    """The same V2 request as a serialized gRPC ModelInferRequest."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=model_name, id="bench")
    for inp in body["inputs"]:
        tensor = request.inputs.add(name=inp["name"], datatype=inp["datatype"], shape=inp["shape"])
        if inp["datatype"] == "BYTES":
            tensor.contents.bytes_contents.extend(v.encode() for v in inp["data"])
        elif inp["datatype"] == "INT64":
            tensor.contents.int64_contents.extend(inp["data"])
        else:
            tensor.contents.fp64_contents.extend(inp["data"])
    return request.SerializeToString()


def holdout_rows(bundle_dir: Path, n: int) -> list[dict[str, Any]]:
    """``n`` raw ames rows (features only, JSON-ready), cycling through the dataset."""
    from bundle.manifest import MANIFEST
    from training.datasets import load_dataset

    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    names = [f["name"] for f in manifest["schema"]["features"]]
    frame = load_dataset("ames").frame[names]
    records = json.loads(frame.to_json(orient="records"))
    return [records[i % len(records)] for i in range(n)]


# -- phases ---------------------------------------------------------------------------------
def train_phase(cfg: BenchConfig, workdir: Path, res: Results) -> Path:
    """Train ames (3 candidates, 5-fold CV) ``train_repetitions`` times; returns the last bundle."""
    from training.api import TrainConfig, run_training

    bundle_dir: Path | None = None
    for i in range(cfg.train_repetitions):
        console.log(f"training ames ({i + 1}/{cfg.train_repetitions})")
        start = time.perf_counter()
        result = run_training(
            TrainConfig(
                dataset="ames",
                register=False,
                bundle_root=str(workdir / "bundles"),
                fast=cfg.smoke,
                progress=False,
                candidates=("xgboost",) if cfg.smoke else ("linear", "random_forest", "xgboost"),
            )
        )
        res.training_s.append(time.perf_counter() - start)
        res.training_metrics = result.manifest.metrics
        bundle_dir = result.bundle_dir
    assert bundle_dir is not None
    return bundle_dir


def inprocess_phase(bundle_dir: Path, rows: list[dict[str, Any]], batch: list[dict[str, Any]], res: Results) -> None:
    """Single-row and batch prediction inside this process, plus the naive pandas Pipeline."""
    import pandas as pd

    from bench.naive import naive_pipeline
    from predictor.codec import Decoder
    from predictor.loaded import load_bundle

    loaded = load_bundle(bundle_dir)
    decoder = Decoder(loaded.schema, max_batch_size=max(len(batch), 1))
    one = {"instances": [rows[0]]}

    def per_call(fn: Callable[[], Any], min_time: float = 0.3) -> float:
        fn()
        samples = []
        for _ in range(7):
            n, start = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time / 7:
                    break
            samples.append(elapsed / n)
        return statistics.median(samples)

    single = per_call(lambda: loaded.predict(decoder.v1(one)))
    big = {"instances": batch}
    batch_s = per_call(lambda: loaded.predict(decoder.v1(big)), min_time=1.0)
    pipe = naive_pipeline(bundle_dir)
    frame1 = pd.DataFrame([rows[0]])
    naive = per_call(lambda: pipe.predict(frame1))
    res.inprocess = {
        "single_row_us": single * 1e6,
        "batch_rows": len(batch),
        "batch_rows_per_s": len(batch) / batch_s,
        "naive_pipeline_single_row_us": naive * 1e6,
        "fast_path_compiled": _compiled(),
    }
    console.log(f"in-process: single row {single * 1e6:.1f} µs, naive pipeline {naive * 1e6:.0f} µs")


def _compiled() -> bool:
    try:
        from predictor.fastpath import has_c_extension

        return bool(has_c_extension())
    except ImportError:
        return False


def startup_phase(bundle_dir: Path, cfg: BenchConfig, workdir: Path, res: Results) -> None:
    """Process start to model ready and RSS after a warm-up, ``start_repetitions`` times."""
    from bench.startup import measure_starts

    started = measure_starts(bundle_dir, workdir, cfg.start_repetitions, cfg.warmup_requests)
    res.startup_s = started.start_s
    res.startup = started.to_dict()


def load_phase(bundle_dir: Path, rows: list[dict[str, Any]], cfg: BenchConfig, workdir: Path, res: Results) -> None:
    """Interleaved load rounds against ours, the floor and MLServer."""
    name = DEFAULT_MODEL_NAME
    running = [servers.start_ours(bundle_dir, name, workdir), servers.start_floor(name, workdir)]
    if cfg.with_mlserver:
        running.append(servers.start_mlserver(bundle_dir, name, workdir))
    by_label = {s.label: s for s in running}
    try:
        for server in running:
            servers.wait_ready(server)
        one_v2 = v2_columns(rows[:1])
        batch_v2 = v2_columns(rows[: cfg.batch_rows])
        bodies = {
            "v1_1row": v1_body(rows[0]),
            "v2_1row": json.dumps(one_v2).encode(),
            "v2_1row_pd": json.dumps(v2_columns(rows[:1], content_type=True)).encode(),
            "v2_batch": json.dumps(batch_v2).encode(),
        }
        grpc_body = grpc_request(name, one_v2)
        _check_answers(by_label, bodies)
        plan: list[tuple[str, str, Callable[[float], loadgen.LoadResult]]] = []

        def rest(label: str, path: str, body: bytes, conns: int) -> Callable[[float], loadgen.LoadResult]:
            url = f"{by_label[label].base}{path}"
            return lambda secs: loadgen.run_wrk(url, body, secs, connections=conns)

        v1 = f"/v1/models/{name}:predict"
        v2 = f"/v2/models/{name}/infer"
        for label in ("ours", "floor"):
            plan.append((f"{label}.v1_1row", label, rest(label, v1, bodies["v1_1row"], cfg.connections)))
            plan.append((f"{label}.v2_1row", label, rest(label, v2, bodies["v2_1row"], cfg.connections)))
            target = by_label[label].grpc_target
            plan.append(
                (
                    f"{label}.grpc_1row",
                    label,
                    lambda secs, t=target: loadgen.run_grpc(t, grpc_body, secs, cfg.connections),
                )
            )
        # a 10k-row request takes a few hundred ms: run batches 3x longer for enough samples
        batch_run = rest("ours", v2, bodies["v2_batch"], 2)
        plan.append(("ours.v2_batch", "ours", lambda secs: batch_run(3 * secs)))
        if cfg.with_mlserver:
            plan.append(("mlserver.v2_1row", "mlserver", rest("mlserver", v2, bodies["v2_1row_pd"], cfg.connections)))
        for _key, _, run in plan:  # warm-up, discarded
            run(cfg.warmup_seconds)
        for rep in range(cfg.repetitions):
            for key, _, run in plan:
                result = run(cfg.seconds)
                res.add(key, result)
                console.log(
                    f"round {rep + 1}/{cfg.repetitions} {key}: {result.rps:.0f} req/s p50 {result.p50_ms:.2f} ms"
                )
    finally:
        for server in running:
            server.stop()


def _check_answers(by_label: dict[str, servers.Server], bodies: dict[str, bytes]) -> None:
    """Every server must answer the exact bodies with 200 before we time anything."""
    name = DEFAULT_MODEL_NAME
    checks = [("ours", f"/v1/models/{name}:predict", "v1_1row"), ("ours", f"/v2/models/{name}/infer", "v2_1row")]
    checks += [("ours", f"/v2/models/{name}/infer", "v2_batch"), ("floor", f"/v1/models/{name}:predict", "v1_1row")]
    if "mlserver" in by_label:
        checks.append(("mlserver", f"/v2/models/{name}/infer", "v2_1row_pd"))
    for label, path, key in checks:
        response = httpx.post(
            f"{by_label[label].base}{path}",
            content=bodies[key],
            headers={"content-type": "application/json"},
            timeout=60,
        )
        if response.status_code != 200:
            raise RuntimeError(f"{label} answered {response.status_code} to {key}: {response.text[:300]}")


# -- report ---------------------------------------------------------------------------------
def summarise(res: Results, cfg: BenchConfig) -> dict[str, Any]:
    """Ratios and goals computed from the medians of the run."""
    m = res.median
    batch_rows = cfg.batch_rows
    ours_batch_rows = m("ours.v2_batch") * batch_rows
    ratios = {
        "ours_over_floor_v1": m("ours.v1_1row") / m("floor.v1_1row"),
        "ours_over_floor_v2": m("ours.v2_1row") / m("floor.v2_1row"),
        "ours_over_floor_grpc": m("ours.grpc_1row") / m("floor.grpc_1row"),
        "ours_over_mlserver_v2": m("ours.v2_1row") / m("mlserver.v2_1row") if cfg.with_mlserver else float("nan"),
        "batch_over_inprocess": ours_batch_rows / res.inprocess["batch_rows_per_s"],
    }
    goals = {
        "ours_over_floor_v1 >= 0.7": ratios["ours_over_floor_v1"] >= 0.7,
        "ours_over_mlserver_v2 >= 20": ratios["ours_over_mlserver_v2"] >= 20,
        "batch_over_inprocess >= 0.5": ratios["batch_over_inprocess"] >= 0.5,
        "single_row_us <= 50": res.inprocess["single_row_us"] <= 50,
        "startup_s <= 1": statistics.median(res.startup_s) <= 1,
        "rss_warm_mib <= 150": res.startup["median"]["rss_warm_mib"] <= 150,
        "training_s <= 90": statistics.median(res.training_s) <= 90,
    }
    return {"ratios": ratios, "goals": goals, "batch_rows_per_s": ours_batch_rows}


def write_report(res: Results, cfg: BenchConfig) -> tuple[Path, Path]:
    """Write the JSON with every raw figure and the Markdown table."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(res, cfg)
    data = {
        "machine": res.machine,
        "config": res.config,
        "runs": res.runs,
        "inprocess": res.inprocess,
        "startup_s": res.startup_s,
        "startup": res.startup,
        "training_s": res.training_s,
        "training_metrics": res.training_metrics,
        "summary": summary,
    }
    json_path = cfg.out_dir / "benchmarks.json"
    json_path.write_text(json.dumps(data, indent=2, default=float))
    lines = [
        "# Benchmarks",
        "",
        f"Measured {res.machine['date']} on {res.machine['cores']} cores ({res.machine['cpu']}), "
        f"Python {res.machine['python']}; load average at start {res.machine['loadavg_at_start'][0]:.2f}. "
        f"{cfg.repetitions} interleaved rounds of {cfg.seconds:g} s per load, {cfg.connections} connections, "
        "warm-up excluded; medians with [min–max]. Raw figures: `benchmarks.json`. Reproduce: `make bench`.",
        "",
        "| load | server | req/s | p50 ms | p95 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for key in sorted(res.runs):
        label, load = key.split(".", 1)
        lo, hi = res.spread(key)
        lines.append(
            f"| {load} | {label} | {res.median(key):,.0f} [{lo:,.0f}–{hi:,.0f}] | {res.median(key, 'p50_ms'):.2f} "
            f"| {res.median(key, 'p95_ms'):.2f} | {res.median(key, 'p99_ms'):.2f} |"
        )
    inp = res.inprocess
    startup = res.startup["median"]
    lines += [
        "",
        "| figure | value | goal |",
        "| --- | ---: | --- |",
        f"| ours ÷ floor, V1 one row | {summary['ratios']['ours_over_floor_v1']:.2f} | ≥ 0.7 |",
        f"| ours ÷ floor, V2 one row | {summary['ratios']['ours_over_floor_v2']:.2f} | |",
        f"| ours ÷ floor, V2 gRPC one row | {summary['ratios']['ours_over_floor_grpc']:.2f} | |",
        f"| ours ÷ MLServer, V2 one row | {summary['ratios']['ours_over_mlserver_v2']:.1f} | ≥ 20 |",
        f"| V2 {cfg.batch_rows:,}-row batch, rows/s | {summary['batch_rows_per_s']:,.0f} | |",
        f"| in-process rows/s ({inp['batch_rows']:,} rows) | {inp['batch_rows_per_s']:,.0f} | |",
        f"| batch ÷ in-process rows/s | {summary['ratios']['batch_over_inprocess']:.2f} | ≥ 0.5 |",
        f"| in-process single row (µs) | {inp['single_row_us']:.1f} | ≤ 50 |",
        f"| naive sklearn Pipeline over pandas, single row (µs) | {inp['naive_pipeline_single_row_us']:,.0f} | |",
        f"| process start to ready (s), median | {statistics.median(res.startup_s):.2f} | ≤ 1 |",
        f"| RSS after {cfg.warmup_requests} requests (MiB), median | {startup['rss_warm_mib']:.0f} | ≤ 150 |",
        f"| training ames, 3 candidates × 5-fold CV (s), median | {statistics.median(res.training_s):.1f} | ≤ 90 |",
    ]
    if cfg.smoke:
        lines.insert(2, "**Smoke run** (seconds-long, small batch): figures are not meaningful.\n")
    md_path = cfg.out_dir / "benchmarks.md"
    md_path.write_text(keep_sections(md_path, "\n".join(lines)))
    return json_path, md_path


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run every phase and write the report; returns the summary."""
    res = Results(machine=machine_description(), config={k: str(v) for k, v in cfg.__dict__.items()})
    with tempfile.TemporaryDirectory(prefix="housing-bench-") as tmp:
        workdir = Path(tmp)
        bundle_dir = train_phase(cfg, workdir, res)
        rows = holdout_rows(bundle_dir, max(cfg.batch_rows, 1))
        inprocess_phase(bundle_dir, rows, rows[: cfg.batch_rows], res)
        startup_phase(bundle_dir, cfg, workdir, res)
        load_phase(bundle_dir, rows, cfg, workdir, res)
    json_path, md_path = write_report(res, cfg)
    console.log(f"wrote {md_path} and {json_path}")
    return summarise(res, cfg)


def main() -> None:  # pragma: no cover - thin CLI wrapper
    """``python -m bench.run [--smoke]``."""
    smoke = "--smoke" in sys.argv
    cfg = BenchConfig.smoke_config(Path(tempfile.mkdtemp())) if smoke else BenchConfig()
    summary = run(cfg)
    print(json.dumps(summary, indent=2, default=float))


if __name__ == "__main__":
    main()
