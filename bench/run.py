"""One benchmark run: ours vs the KServe floor and the peers, in-process figures, start-up, training.

The peers: Seldon MLServer (a sklearn pipeline of the bundle), KServe's own xgbserver and
sklearnserver (the same booster / the same random forest, fed already-encoded numeric rows) and
MLflow's scoring server (the bundle's registered pyfunc model). Every comparison is a ratio of
figures taken in the same run, with the servers measured in interleaved rounds so a noisy
neighbour hits all of them alike. Results go to
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

from bench import kserve_runtimes, loadgen, mlflow_serve, servers
from bench.sections import keep_sections
from common.config import DEFAULT_MODEL_NAME
from training.api import TrainConfig, TrainResult

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
    with_kserve_runtimes: bool = True  # KServe's xgbserver and sklearnserver (their own venv)
    with_mlflow: bool = True  # MLflow's scoring server on the pyfunc model
    with_images: bool = True  # both images' sizes, start → Ready in the serving image (podman, root)

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
            with_images=False,
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
    peers: dict[str, Any] = field(default_factory=dict)  # what each peer served, or why it was skipped
    images: dict[str, Any] = field(default_factory=dict)  # bench.images.ImageResult.to_dict(), or why not

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
    from predictor.client.v2_request import v2_body

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
def ames_config(cfg: BenchConfig, workdir: Path, candidates: tuple[str, ...], **more: Any) -> TrainConfig:
    """The benchmark's ames training: no registration, bundles under ``workdir``, fast in a smoke run."""
    return TrainConfig(
        dataset="ames",
        register=False,
        bundle_root=str(workdir / "bundles"),
        fast=cfg.smoke,
        progress=False,
        candidates=candidates,
        **more,
    )


def train_phase(cfg: BenchConfig, workdir: Path, res: Results) -> TrainResult:
    """Train ames (3 candidates, 5-fold CV) ``train_repetitions`` times; returns the last result."""
    from training.api import run_training

    result: TrainResult | None = None
    for i in range(cfg.train_repetitions):
        console.log(f"training ames ({i + 1}/{cfg.train_repetitions})")
        start = time.perf_counter()
        result = run_training(
            ames_config(cfg, workdir, ("xgboost",) if cfg.smoke else ("linear", "random_forest", "xgboost"))
        )
        res.training_s.append(time.perf_counter() - start)
        res.training_metrics = result.manifest.metrics
    assert result is not None and result.bundle_dir is not None
    return result


#: KServe runtime → the bundle flavor it serves, and the label of our predictor serving that flavor
KSERVE_RUNTIMES = {"xgbserver": "xgboost", "sklearnserver": "random_forest"}
OURS_FOR = {"xgboost": "ours-xgboost", "random_forest": "ours-forest"}


def flavor_results(cfg: BenchConfig, workdir: Path, main: TrainResult) -> dict[str, TrainResult]:
    """A trained result per flavor a KServe runtime serves: the benchmark's own when it has that flavor."""
    from training.api import run_training

    out: dict[str, TrainResult] = {}
    for flavor in KSERVE_RUNTIMES.values():
        if main.manifest.flavor == flavor:
            out[flavor] = main
            continue
        console.log(f"training an ames {flavor} for its KServe runtime")
        # one candidate: CV only scores it; the refit on all training rows is the model
        out[flavor] = run_training(ames_config(cfg, workdir, (flavor,), cv_folds=2))
    return out


def ours_label(main: TrainResult, flavor: str) -> str:
    """Which of our servers serves ``flavor``: ``ours`` (the benchmark's bundle) or a second one."""
    return "ours" if main.manifest.flavor == flavor else OURS_FOR[flavor]


def encoded_rows(bundle_dir: Path, rows: list[dict[str, Any]]) -> list[list[float]]:
    """Raw rows encoded by the bundle's schema: the numeric matrix the model sees (what the KServe runtimes get)."""
    import numpy as np

    from bundle.manifest import load_manifest
    from bundle.schema import FeatureSchema

    schema = FeatureSchema.from_dict(load_manifest(bundle_dir).schema)
    X = np.empty((len(rows), len(schema.features)), dtype=np.float64)
    for i, row in enumerate(rows):
        schema.encode_mapping(row, X[i])
    return X.tolist()


def v2_tensor(X: list[list[float]]) -> dict[str, Any]:
    """A V2 infer body with one FP64 tensor of shape (rows, features)."""
    data = [v for row in X for v in row]
    return {
        "id": "bench",
        "inputs": [{"name": "input-0", "shape": [len(X), len(X[0])], "datatype": "FP64", "data": data}],
    }


def inprocess_phase(bundle_dir: Path, rows: list[dict[str, Any]], batch: list[dict[str, Any]], res: Results) -> None:
    """Single-row and batch prediction inside this process, plus the naive pandas Pipeline."""
    import pandas as pd

    from bench.naive import naive_pipeline
    from predictor.codec.decode import Decoder
    from predictor.core.loaded import load_bundle

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
    explain = per_call(lambda: loaded.contributions(decoder.v1(one)))
    big = {"instances": batch}
    batch_s = per_call(lambda: loaded.predict(decoder.v1(big)), min_time=1.0)
    pipe = naive_pipeline(bundle_dir)
    frame1 = pd.DataFrame([rows[0]])
    naive = per_call(lambda: pipe.predict(frame1))
    res.inprocess = {
        "single_row_us": single * 1e6,
        "explain_single_row_us": explain * 1e6,
        "batch_rows": len(batch),
        "batch_rows_per_s": len(batch) / batch_s,
        "naive_pipeline_single_row_us": naive * 1e6,
        "fast_path_compiled": _compiled(),
    }
    console.log(
        f"in-process: single row {single * 1e6:.1f} µs, explain {explain * 1e6:.1f} µs, "
        f"naive pipeline {naive * 1e6:.0f} µs"
    )


def _compiled() -> bool:
    try:
        from predictor.core.fastpath import has_c_extension

        return bool(has_c_extension())
    except ImportError:
        return False


def startup_phase(bundle_dir: Path, cfg: BenchConfig, workdir: Path, res: Results) -> None:
    """Process start to model ready and RSS after a warm-up, ``start_repetitions`` times."""
    from bench.startup import measure_starts

    started = measure_starts(bundle_dir, workdir, cfg.start_repetitions, cfg.warmup_requests)
    res.startup_s = started.start_s
    res.startup = started.to_dict()


def images_phase(bundle_dir: Path, cfg: BenchConfig, res: Results) -> None:
    """Both images' sizes, and ``start_repetitions`` predictor starts in the serving image (bench.images)."""
    from bench import images

    why_not = images.available() if cfg.with_images else "not asked for (--smoke)"
    if why_not:
        res.images = {"skipped": why_not}
        console.log(f"images: skipped: {why_not}")
        return
    built = images.build()
    images.measure_starts(built, bundle_dir, cfg.start_repetitions)
    res.images = built.to_dict()


@dataclass
class Peer:
    """A KServe runtime ready to start: what it serves, and which of our servers serves the same model."""

    runtime: str
    bundle_dir: Path
    model_dir: Path
    ours: str  # label of our predictor serving the same bundle


def peers_phase(main: TrainResult, cfg: BenchConfig, workdir: Path, res: Results) -> list[Peer]:
    """Build (or reuse) the KServe runtimes' venv and write their model dirs; a smoke run skips what fails."""
    if not cfg.with_kserve_runtimes:
        return []
    try:
        began = time.perf_counter()
        kserve_runtimes.ensure_venv()
        res.peers["venv"] = {"path": str(kserve_runtimes.VENV), "ready_s": time.perf_counter() - began}
        res.peers["venv"].update(kserve_runtimes.build_info())
    except kserve_runtimes.PeerUnavailable as exc:
        if not cfg.smoke:
            raise RuntimeError(f"{exc} (housing bench --no-kserve-runtimes leaves them out)") from exc
        console.log(f"[yellow]skipping KServe xgbserver and sklearnserver: {exc}")
        res.peers.update({r: {"skipped": str(exc)} for r in KSERVE_RUNTIMES})
        return []
    by_flavor = flavor_results(cfg, workdir, main)
    peers = []
    for runtime, flavor in KSERVE_RUNTIMES.items():
        result = by_flavor[flavor]
        assert result.bundle_dir is not None
        dest = workdir / runtime
        if runtime == "xgbserver":
            model_dir = kserve_runtimes.xgboost_model_dir(result.bundle_dir, dest)
        else:
            model_dir = kserve_runtimes.sklearn_model_dir(result.estimator, dest)
        peers.append(Peer(runtime, result.bundle_dir, model_dir, ours_label(main, flavor)))
        res.peers[runtime] = {
            "flavor": flavor,
            "bundle": result.manifest.model_version,
            "compared_with": peers[-1].ours,
            # the estimator is pickled as training fitted it: its n_jobs also drives sklearn's predict
            "n_jobs": getattr(result.estimator, "n_jobs", None) if runtime == "sklearnserver" else None,
        }
    return peers


@dataclass
class Check:
    """A request every server must answer with 200 and the expected price before anything is timed."""

    label: str
    path: str
    body: bytes
    price: float
    model_scale: bool = False  # the answer is on the model's scale (log price): KServe's runtimes


def load_phase(
    main: TrainResult, rows: list[dict[str, Any]], peers: list[Peer], cfg: BenchConfig, workdir: Path, res: Results
) -> None:
    """Interleaved load rounds against ours, the floor and the peers."""
    name = DEFAULT_MODEL_NAME
    bundle_dir = main.bundle_dir
    assert bundle_dir is not None
    running = [servers.start_ours(bundle_dir, name, workdir), servers.start_floor(name, workdir)]
    try:
        running.append(servers.start_limit(name, workdir))  # the bare uvicorn / grpc.aio stack (bench.limit)
        # the same predictor with two REST worker processes (one /metrics summed over them)
        running.append(servers.start_ours(bundle_dir, name, workdir, ["--workers", "2"], label=WORKERS_LABEL))
        if cfg.with_mlserver:
            running.append(servers.start_mlserver(bundle_dir, name, workdir))
        if cfg.with_mlflow:
            running.append(servers.start_mlflow(bundle_dir, name, workdir, rows[:5]))
        for peer in peers:
            if peer.ours != "ours":
                running.append(servers.start_ours(peer.bundle_dir, name, workdir, label=peer.ours))
            running.append(servers.start_kserve_runtime(peer.runtime, peer.model_dir, name, workdir))
        by_label = {s.label: s for s in running}
        for server in running:
            servers.wait_ready(server)
        res.config["logs"] = {s.label: s.logs for s in running}
        _measure(main, rows, peers, by_label, cfg, res)
    finally:
        for server in running:
            server.stop()


def _measure(
    main: TrainResult,
    rows: list[dict[str, Any]],
    peers: list[Peer],
    by_label: dict[str, servers.Server],
    cfg: BenchConfig,
    res: Results,
) -> None:
    """Check every server's answer, then the warm-up and the interleaved rounds."""
    name = DEFAULT_MODEL_NAME
    v1 = f"/v1/models/{name}:predict"
    v2 = f"/v2/models/{name}/infer"
    one_v2 = v2_columns(rows[:1])
    bodies = {
        "v1_1row": v1_body(rows[0]),
        "v2_1row": json.dumps(one_v2).encode(),
        "v2_1row_pd": json.dumps(v2_columns(rows[:1], content_type=True)).encode(),
        "v2_batch": json.dumps(v2_columns(rows[: cfg.batch_rows])).encode(),
    }
    grpc_body = grpc_request(name, one_v2)
    price = _prices(main.bundle_dir, rows[:1])[0]
    checks = [Check("ours", v1, bodies["v1_1row"], price), Check("ours", v2, bodies["v2_1row"], price)]
    checks.append(Check("floor", v1, bodies["v1_1row"], 0.0))
    plan: list[tuple[str, Callable[[float], loadgen.LoadResult]]] = []

    def rest(
        label: str, path: str, body: bytes, conns: int = cfg.connections, timeout: float = 2.0
    ) -> Callable[[float], loadgen.LoadResult]:
        url = f"{by_label[label].http_url}{path}"
        return lambda secs: loadgen.run_wrk(url, body, secs, connections=conns, timeout=timeout)

    checks.append(Check(WORKERS_LABEL, v1, bodies["v1_1row"], price))
    plan.append((f"{WORKERS_LABEL}.v1_1row", rest(WORKERS_LABEL, v1, bodies["v1_1row"])))
    for label in ("ours", "floor", "limit"):
        plan.append((f"{label}.v1_1row", rest(label, v1, bodies["v1_1row"])))
        plan.append((f"{label}.v2_1row", rest(label, v2, bodies["v2_1row"])))
        target = by_label[label].grpc_target
        plan.append(
            (f"{label}.grpc_1row", lambda secs, t=target: loadgen.run_grpc(t, grpc_body, secs, cfg.connections))
        )
    # a 10k-row request takes a few hundred ms: run batches 3x longer for enough samples
    batch_run = rest("ours", v2, bodies["v2_batch"], 2, timeout=30)  # wrk's 2 s would count slow answers as errors
    plan.append(("ours.v2_batch", lambda secs: batch_run(3 * secs)))

    def slow(run: Callable[[float], loadgen.LoadResult]) -> Callable[[float], loadgen.LoadResult]:
        return lambda secs: run(max(secs, 3.0))  # a few req/s: a 1-s smoke window may see no answer

    if "mlserver" in by_label:
        checks.append(Check("mlserver", v2, bodies["v2_1row_pd"], price))
        plan.append(("mlserver.v2_1row", slow(rest("mlserver", v2, bodies["v2_1row_pd"]))))
    if "mlflow" in by_label:
        invocations = mlflow_serve.body(rows[:1])
        checks.append(Check("mlflow", "/invocations", invocations, price))
        plan.append(("mlflow.invocations_1row", slow(rest("mlflow", "/invocations", invocations))))
    for peer in peers:
        X = encoded_rows(peer.bundle_dir, rows[:1])
        peer_price = _prices(peer.bundle_dir, rows[:1])[0]
        peer_v1, peer_v2 = json.dumps({"instances": X}).encode(), json.dumps(v2_tensor(X)).encode()
        checks += [
            Check(peer.runtime, v1, peer_v1, peer_price, True),
            Check(peer.runtime, v2, peer_v2, peer_price, True),
        ]
        if peer.ours != "ours":
            checks.append(Check(peer.ours, v1, bodies["v1_1row"], peer_price))
            plan.append((f"{peer.ours}.v1_1row", rest(peer.ours, v1, bodies["v1_1row"])))
            plan.append((f"{peer.ours}.v2_1row", rest(peer.ours, v2, bodies["v2_1row"])))
        plan.append((f"{peer.runtime}.v1_1row", rest(peer.runtime, v1, peer_v1)))
        plan.append((f"{peer.runtime}.v2_1row", rest(peer.runtime, v2, peer_v2)))
    transform = main.manifest.target.get("transform", "none")
    for check in checks:
        _check_answer(by_label[check.label], check, transform)
    httpx.post(f"{by_label['ours'].http_url}{v2}", content=bodies["v2_batch"], timeout=60).raise_for_status()
    plan = [(key, _with_cpu(by_label[key.split(".")[0]], run)) for key, run in plan]
    for _key, run in plan:  # warm-up, discarded
        run(cfg.warmup_seconds)
    for rep in range(cfg.repetitions):
        for key, run in plan:
            result = run(cfg.seconds)
            res.add(key, result)
            console.log(f"round {rep + 1}/{cfg.repetitions} {key}: {result.rps:.0f} req/s p50 {result.p50_ms:.2f} ms")


def _with_cpu(
    server: servers.Server, run: Callable[[float], loadgen.LoadResult]
) -> Callable[[float], loadgen.LoadResult]:
    """``run`` that also records the server's CPU per request: robust where wall-clock rates are not (shared cores)."""

    def measured(secs: float) -> loadgen.LoadResult:
        before = server.cpu_seconds()
        result = run(secs)
        if result.requests:
            result.cpu_ms_per_request = 1000 * (server.cpu_seconds() - before) / result.requests
        return result

    return measured


def _prices(bundle_dir: Path | None, rows: list[dict[str, Any]]) -> list[float]:
    """Our in-process prices for ``rows`` (what every server must answer)."""
    import numpy as np

    from predictor.core.loaded import load_bundle

    assert bundle_dir is not None
    return load_bundle(bundle_dir).predict(np.asarray(encoded_rows(bundle_dir, rows))).tolist()


def _check_answer(server: servers.Server, check: Check, transform: str) -> None:
    """The server answers ``check.body`` with 200 and our price (to 1e-5: xgboost casts to float32)."""
    import math

    response = httpx.post(
        f"{server.http_url}{check.path}", content=check.body, headers={"content-type": "application/json"}, timeout=60
    )
    if response.status_code != 200:
        raise RuntimeError(f"{check.label} answered {response.status_code} to {check.path}: {response.text[:300]}")
    reply = response.json()
    value = reply["outputs"][0]["data"][0] if "outputs" in reply else reply["predictions"][0]
    value = next(iter(value.values())) if isinstance(value, dict) else float(value)  # MLflow: {target: price}
    if check.model_scale and transform == "log":
        value = math.exp(value)
    if not math.isclose(value, check.price, rel_tol=1e-5, abs_tol=1e-9):
        raise RuntimeError(f"{check.label} {check.path} answered {value}, expected {check.price}")


# -- report ---------------------------------------------------------------------------------
def summarise(res: Results, cfg: BenchConfig) -> dict[str, Any]:
    """Ratios and goals computed from the medians of the run."""

    def ratio(key: str, over: str, metric: str = "rps") -> float:  # a ratio of medians; nan when nothing was answered
        below = res.median(over, metric)
        return res.median(key, metric) / below if below else float("nan")

    m = res.median
    batch_rows = cfg.batch_rows
    ours_batch_rows = m("ours.v2_batch") * batch_rows
    ratios = {
        "ours_over_floor_v1": ratio("ours.v1_1row", "floor.v1_1row"),
        "ours_over_floor_v2": ratio("ours.v2_1row", "floor.v2_1row"),
        "ours_over_floor_grpc": ratio("ours.grpc_1row", "floor.grpc_1row"),
        "ours_over_mlserver_v2": ratio("ours.v2_1row", "mlserver.v2_1row") if cfg.with_mlserver else float("nan"),
        "batch_over_inprocess": ours_batch_rows / res.inprocess["batch_rows_per_s"],
        "workers2_over_workers1_v1": ratio(f"{WORKERS_LABEL}.v1_1row", "ours.v1_1row"),
        "ours_over_limit_v1": ratio("ours.v1_1row", "limit.v1_1row"),
        "ours_over_limit_v2": ratio("ours.v2_1row", "limit.v2_1row"),
        "ours_over_limit_grpc": ratio("ours.grpc_1row", "limit.grpc_1row"),
    }
    goals = {
        "ours_over_floor_v1 >= 0.7": ratios["ours_over_floor_v1"] >= 0.7,
        "ours_over_mlserver_v2 >= 20": ratios["ours_over_mlserver_v2"] >= 20,
        "batch_over_inprocess >= 0.5": ratios["batch_over_inprocess"] >= 0.5,
        "single_row_us <= 50": res.inprocess["single_row_us"] <= 50,
        "explain_single_row_us <= 200": res.inprocess["explain_single_row_us"] <= 200,
        "startup_s <= 1": statistics.median(res.startup_s) <= 1,
        **(
            {
                "image_startup_s <= 1": res.images["median"]["start_s"] <= 1,
                "serving_image_mb <= 500": res.images["sizes"]["serving"] <= 500e6,
            }
            if "median" in res.images
            else {}
        ),
        "rss_warm_mib <= 150": res.startup["median"]["rss_warm_mib"] <= 150,
        "training_s <= 90": statistics.median(res.training_s) <= 90,
        "workers2_over_workers1_v1 >= 1.6": ratios["workers2_over_workers1_v1"] >= 1.6,
    }
    for runtime in KSERVE_RUNTIMES:
        ours = res.peers.get(runtime, {}).get("compared_with")
        if ours is None or f"{runtime}.v1_1row" not in res.runs:
            continue
        for load in ("v1_1row", "v2_1row"):
            protocol = load.split("_")[0]
            ratios[f"ours_over_{runtime}_{protocol}"] = ratio(f"{ours}.{load}", f"{runtime}.{load}")
            ratios[f"p99_ours_over_{runtime}_{protocol}"] = ratio(f"{ours}.{load}", f"{runtime}.{load}", "p99_ms")
            ratios[f"cpu_{runtime}_over_ours_{protocol}"] = ratio(
                f"{runtime}.{load}", f"{ours}.{load}", "cpu_ms_per_request"
            )
        goals[f"ours_over_{runtime}_v1 >= 3"] = ratios[f"ours_over_{runtime}_v1"] >= 3
        goals[f"p99_ours_over_{runtime}_v1 < 1"] = ratios[f"p99_ours_over_{runtime}_v1"] < 1
    if "mlflow.invocations_1row" in res.runs:
        ratios["ours_over_mlflow"] = ratio("ours.v1_1row", "mlflow.invocations_1row")
        ratios["p99_ours_over_mlflow"] = ratio("ours.v1_1row", "mlflow.invocations_1row", "p99_ms")
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
        "peers": res.peers,
        "images": res.images,
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
        "warm-up excluded; medians with [min–max]. Server CPU ms/req: user + system CPU of the server's processes "
        "over a run ÷ its requests, steadier than req/s when the cores are shared. Raw figures: `benchmarks.json`. "
        "Reproduce: `make bench`.",
        "",
        "| load | server | per-request log lines | req/s | p50 ms | p95 ms | p99 ms | server CPU ms/req |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    logs = res.config.get("logs", {})
    for key in sorted(res.runs):
        label, load = key.split(".", 1)
        lo, hi = res.spread(key)
        lines.append(
            f"| {load} | {label} | {logs.get(label, 'the server default')} "
            f"| {res.median(key):,.0f} [{lo:,.0f}–{hi:,.0f}] | {res.median(key, 'p50_ms'):.2f} "
            f"| {res.median(key, 'p95_ms'):.2f} | {res.median(key, 'p99_ms'):.2f} "
            f"| {res.median(key, 'cpu_ms_per_request'):.2f} |"
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
        f"| ours ÷ limit (bare uvicorn ASGI app), V1 one row | {summary['ratios']['ours_over_limit_v1']:.2f} | ≥ 0.5 |",
        f"| ours ÷ limit (bare uvicorn ASGI app), V2 one row | {summary['ratios']['ours_over_limit_v2']:.2f} | |",
        f"| ours ÷ limit (bare grpc.aio servicer), V2 gRPC one row "
        f"| {summary['ratios']['ours_over_limit_grpc']:.2f} | |",
        f"| ours ÷ MLServer, V2 one row | {summary['ratios']['ours_over_mlserver_v2']:.1f} | ≥ 20 |",
        f"| ours `--workers 2` ÷ ours `--workers 1`, V1 one row ({res.machine['cores']} cores) "
        f"| {summary['ratios']['workers2_over_workers1_v1']:.2f} | ≥ 1.6 |",
        f"| V2 {cfg.batch_rows:,}-row batch, rows/s | {summary['batch_rows_per_s']:,.0f} | |",
        f"| in-process rows/s ({inp['batch_rows']:,} rows) | {inp['batch_rows_per_s']:,.0f} | |",
        f"| batch ÷ in-process rows/s | {summary['ratios']['batch_over_inprocess']:.2f} | ≥ 0.5 |",
        f"| in-process single row (µs) | {inp['single_row_us']:.1f} | ≤ 50 |",
        f"| in-process explain, single row: V1 object → TreeSHAP contributions (µs) "
        f"| {inp['explain_single_row_us']:.1f} | ≤ 200 |",
        f"| naive sklearn Pipeline over pandas, single row (µs) | {inp['naive_pipeline_single_row_us']:,.0f} | |",
        f"| process start to ready (s), median: this virtualenv | {statistics.median(res.startup_s):.2f} | ≤ 1 |",
        *_image_figures(res),
        f"| RSS after {cfg.warmup_requests} requests (MiB), median | {startup['rss_warm_mib']:.0f} | ≤ 150 |",
        f"| training ames, 3 candidates × 5-fold CV (s), median | {statistics.median(res.training_s):.1f} | ≤ 90 |",
        *_peer_figures(res, summary["ratios"]),
        "",
        *_peer_notes(res),
    ]
    if cfg.smoke:
        lines.insert(2, "**Smoke run** (seconds-long, small batch): figures are not meaningful.\n")
    md_path = cfg.out_dir / "benchmarks.md"
    md_path.write_text(keep_sections(md_path, "\n".join(lines)))
    return json_path, md_path


#: our predictor started with ``--workers 2`` in the same rounds as the one-worker ``ours``
WORKERS_LABEL = "ours-workers2"

PEER_NAMES = {"xgbserver": "KServe xgbserver", "sklearnserver": "KServe sklearnserver"}


def _image_figures(res: Results) -> list[str]:
    """The figures-table rows of the images: sizes, start → Ready in the serving image."""
    img = res.images
    if "sizes" not in img:
        return [f"| images (podman) | skipped: {img.get('skipped', 'not measured')} | |"]
    rows = []
    if "median" in img:
        med = img["median"]
        rows.append(
            f"| process start to ready (s), median: serving image, read-only, uid 10001 "
            f"({len(img['start_s'])} starts; {med['cpu_s']:.2f} CPU s) | {med['start_s']:.2f} | ≤ 1 |"
        )
    rows += [
        f"| serving image (podman), MB | {img['sizes']['serving'] / 1e6:.0f} | ≤ 500 |",
        f"| training image (podman), MB | {img['sizes']['training'] / 1e6:.0f} | |",
    ]
    return rows


def _peer_figures(res: Results, ratios: dict[str, float]) -> list[str]:
    """The figures-table rows of the peers: ours ÷ peer req/s (and p99) on one row."""
    lines = []
    for runtime, peer in PEER_NAMES.items():
        ours = res.peers.get(runtime, {}).get("compared_with")
        if f"ours_over_{runtime}_v1" not in ratios:
            continue
        lines += [
            f"| {ours} ÷ {peer}, V1 one row | {ratios[f'ours_over_{runtime}_v1']:.1f} | ≥ 3 |",
            f"| {ours} ÷ {peer}, V2 one row | {ratios[f'ours_over_{runtime}_v2']:.1f} | |",
            f"| p99 {ours} ÷ p99 {peer}, V1 one row | {ratios[f'p99_ours_over_{runtime}_v1']:.2f} | < 1 |",
            f"| {peer} CPU ÷ {ours} CPU per request, V1 one row | {ratios[f'cpu_{runtime}_over_ours_v1']:.1f} | |",
        ]
    if "ours_over_mlflow" in ratios:
        lines += [
            f"| ours (V1) ÷ MLflow scoring server, one row | {ratios['ours_over_mlflow']:.1f} | |",
            f"| p99 ours (V1) ÷ p99 MLflow scoring server, one row | {ratios['p99_ours_over_mlflow']:.2f} | |",
        ]
    return lines


def _peer_notes(res: Results) -> list[str]:
    """What the peers served and how, under the tables (and which were skipped, why)."""
    skipped = [f"{r} skipped: {p['skipped']}" for r, p in res.peers.items() if "skipped" in p]
    venv = res.peers.get("venv", {})
    built = f" (built in {venv['seconds']:.0f} s, {venv['bytes'] / 2**20:,.0f} MiB)" if "seconds" in venv else ""
    return [
        f"Peers. **{PEER_NAMES['xgbserver']}** and **{PEER_NAMES['sklearnserver']}** "
        f"({kserve_runtimes.KSERVE_VERSION}, from the KServe Go module's `python/` tree, own venv{built}) serve "
        "the same booster (`model.ubj`) and the same fitted random forest (`model.joblib`) as ours (`ours` / "
        "`ours-forest`, whichever serves that flavor; the forest pickled as training fitted it, `n_jobs` "
        f"{res.peers.get('sklearnserver', {}).get('n_jobs')}); they receive rows **already encoded** by the bundle's "
        "schema (a numeric matrix) and answer on the model's log scale, so they skip the feature encoding, the "
        "input checks and the exponential that ours does: the comparison favours them. **MLflow scoring server** "
        "(`mlflow models serve --env-manager local`, one worker) serves the bundle's pyfunc model, as training "
        "registers it, with one raw row in `dataframe_split` JSON. **MLServer** serves a sklearn pipeline of the "
        "bundle over pandas. Every server's answer was checked against our in-process price before timing.",
        *(["", *skipped] if skipped else []),
    ]


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run every phase and write the report; returns the summary."""
    res = Results(machine=machine_description(), config={k: str(v) for k, v in cfg.__dict__.items()})
    with tempfile.TemporaryDirectory(prefix="housing-bench-") as tmp:
        workdir = Path(tmp)
        main = train_phase(cfg, workdir, res)
        bundle_dir = main.bundle_dir
        assert bundle_dir is not None
        rows = holdout_rows(bundle_dir, max(cfg.batch_rows, 1))
        inprocess_phase(bundle_dir, rows, rows[: cfg.batch_rows], res)
        startup_phase(bundle_dir, cfg, workdir, res)
        images_phase(bundle_dir, cfg, res)
        peers = peers_phase(main, cfg, workdir, res)
        load_phase(main, rows, peers, cfg, workdir, res)
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
