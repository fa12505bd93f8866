"""In-process predictor figures: single-row and 10k-row prediction, single-row explain (medians).

    python bench/predictor_bench.py [--bundle DIR] [--dataset ames] [--rows 10000] [--repeats 7]

Without ``--bundle`` it trains a fast ames XGBoost bundle into a temporary directory first.
Prints medians; asserts nothing (the figures we hold ourselves to: single row ≤ 50 µs, explain of
one row ≤ 200 µs).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def per_call(fn: Callable[[], Any], repeats: int, min_time: float = 0.2) -> float:
    """Median over ``repeats`` runs of the mean seconds per call (each run lasts ≥ min_time)."""
    fn()
    samples = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return statistics.median(samples)


def holdout_rows(dataset: str) -> tuple[Any, list[str], list[dict[str, Any]]]:
    from training.api import TrainConfig
    from training.datasets import load_dataset
    from training.pipeline import split_frame

    ds = load_dataset(dataset)
    _, test, _ = split_frame(ds, TrainConfig(dataset=dataset, fast=True))
    frame = ds.frame[ds.features]
    rows = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    return test, ds.features, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help="bundle directory (default: train a fast one)")
    parser.add_argument("--dataset", default="ames")
    parser.add_argument("--flavor", default="xgboost")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    import asyncio

    import xgboost
    from kserve.protocol.infer_type import InferInput, InferRequest

    from predictor.client.v2_request import v2_body
    from predictor.codec.decode import Decoder
    from predictor.core.fastpath import has_c_extension
    from predictor.core.loaded import load_bundle
    from predictor.transport.model import HousingModel

    bundle_dir = args.bundle
    if not bundle_dir:
        from training.api import TrainConfig, run_training

        root = tempfile.mkdtemp(prefix="predictor-bench-")
        cfg = TrainConfig(args.dataset, fast=True, register=False, bundle_root=root, candidates=(args.flavor,))
        cfg.progress = False
        bundle_dir = str(run_training(cfg).bundle_dir)
    bundle = load_bundle(bundle_dir)
    dataset = bundle.manifest.params.get("dataset", {}).get("name", args.dataset)
    _, features, rows = holdout_rows(dataset)
    decoder = Decoder(bundle.schema, max_batch_size=max(args.rows, 1))
    one = {"instances": [rows[0]]}
    big_rows = [rows[i % len(rows)] for i in range(args.rows)]
    big = {"instances": big_rows}
    X1 = decoder.v1(one)
    Xbig = decoder.v1(big)

    def v2_request(instances: list[dict[str, Any]]) -> InferRequest:
        body = v2_body(instances, names=bundle.schema.names)
        inputs = [InferInput(t["name"], t["shape"], t["datatype"], data=t["data"]) for t in body["inputs"]]
        return InferRequest(model_name="housing", infer_inputs=inputs)

    v2_one, v2_big = v2_request([rows[0]]), v2_request(big_rows)
    model = HousingModel("housing", bundle_dir, max_batch_size=max(args.rows, 1))
    model.load()

    r = args.repeats
    figures: list[tuple[str, float, str]] = []

    def add(label: str, seconds: float, unit: str = "µs") -> None:
        figures.append((label, seconds, unit))

    add("single row: V1 object → price (decode + compiled eval)", per_call(lambda: bundle.predict(decoder.v1(one)), r))
    add("single row: compiled eval only (encoded row)", per_call(lambda: bundle.predict(X1), r))
    add("single row: V2 tensors → price", per_call(lambda: bundle.predict(decoder.v2(v2_one)), r))
    loop = asyncio.new_event_loop()
    add(
        "single row: HousingModel.__call__ (KServe model path, metrics)",
        per_call(lambda: loop.run_until_complete(model(one, headers={})), r),
    )
    add("single row: explain, encoded row (TreeSHAP contributions)", per_call(lambda: bundle.contributions(X1), r))
    add(
        "single row: HousingModel.explain (V1 object → contributions)",
        per_call(lambda: model.explain(one), r),
    )
    if bundle.flavor == "xgboost":
        booster = bundle.booster
        add(
            "single row: booster pred_contribs (reference)",
            per_call(lambda: booster.predict(xgboost.DMatrix(X1), pred_contribs=True), r),
        )
        add("single row: booster.inplace_predict (reference)", per_call(lambda: booster.inplace_predict(X1), r))
        add(
            "single row: booster.predict(DMatrix) (reference)",
            per_call(lambda: booster.predict(xgboost.DMatrix(X1)), r),
        )
    batch_v1 = per_call(lambda: bundle.predict(decoder.v1(big)), r, min_time=0.5)
    batch_v2 = per_call(lambda: bundle.predict(decoder.v2(v2_big)), r, min_time=0.5)
    batch_eval = per_call(lambda: bundle.predict(Xbig), r, min_time=0.5)

    print(f"bundle: {bundle_dir} ({bundle.flavor}, {bundle.n_features} features, {dataset})")
    print(f"compiled C extension: {has_c_extension()}; medians of {r} repetitions")
    for label, seconds, _ in figures:
        print(f"  {label:<62} {seconds * 1e6:9.1f} µs")
    n = args.rows
    print(f"  {n:,}-row batch: V1 objects → prices {batch_v1 * 1e3:9.2f} ms  ({n / batch_v1:,.0f} rows/s)")
    print(f"  {n:,}-row batch: V2 tensors → prices {batch_v2 * 1e3:9.2f} ms  ({n / batch_v2:,.0f} rows/s)")
    print(f"  {n:,}-row batch: compiled eval only  {batch_eval * 1e3:9.2f} ms  ({n / batch_eval:,.0f} rows/s)")
    if bundle.flavor == "xgboost":
        inplace = per_call(lambda: bundle.booster.inplace_predict(Xbig), r, min_time=0.5)
        print(f"  {n:,}-row batch: booster.inplace_predict {inplace * 1e3:8.2f} ms  ({n / inplace:,.0f} rows/s)")
    loop.close()


if __name__ == "__main__":
    main()
