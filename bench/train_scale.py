"""What ``housing train`` costs as the table grows (``housing bench --mode train-scale``).

Tables of 10k, 100k and 1M rows are drawn from ames' own joint distribution: whole ames rows
resampled with replacement (a smoothed bootstrap), every numeric column jittered by 5 % of its
standard deviation and clipped to its observed range (integers stay integers), the target scaled by
a log-normal factor (σ 0.05), so rows do not repeat and the hash split still holds out a fifth.
Each candidate then trains alone in a child process — ``housing train -d TABLE -t Sale_Price -c
NAME --no-register`` with the default 5-fold CV, ``nice``d — and its wall time, the training
step's own seconds (``timings.train``: the CV folds plus the final fit) and the child's peak RSS are
recorded.

Bounded for a shared machine: a candidate is not run at a size when its time at the previous size
(the training step scaled by the row ratio, × 1.3 for the random forest, whose trees deepen with
the rows; the rest of the run as it was) exceeds
``budget`` seconds, or its peak RSS scaled the same way exceeds half the memory available; a run
past ``2 × budget`` is stopped. Such cells say "skipped" / "stopped" with the projection.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SIZES = (10_000, 100_000, 1_000_000)
GROWTH = {"linear": 1.0, "random_forest": 1.3, "xgboost": 1.0}  # time per row, next size ÷ this one
JITTER = 0.05


@dataclass
class Cell:
    """One candidate at one table size."""

    rows: int
    candidate: str
    status: str  # "ok" | "skipped" | "stopped" | "failed"
    wall_s: float = float("nan")
    cv_s: float = float("nan")  # the 5 CV folds (fit + predict each)
    train_s: float = float("nan")  # timings.train: per-fold encoding, the CV folds and the final fit
    peak_rss_mb: float = float("nan")
    cv_rmse: float = float("nan")
    note: str = ""


def synthetic_ames(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` rows resampled from ames (see the module docstring) with its target ``Sale_Price``."""
    from training.datasets import load_dataset

    ds = load_dataset("ames")
    frame = ds.frame
    rng = np.random.default_rng(seed)
    out = frame.iloc[rng.integers(0, len(frame), rows)].reset_index(drop=True)
    for col in frame.columns:
        series = frame[col]
        if col == ds.target or not pd.api.types.is_numeric_dtype(series) or series.nunique() <= 2:
            continue
        std = float(series.std())
        if not std:
            continue
        jittered = (out[col] + rng.normal(0.0, JITTER * std, rows)).clip(series.min(), series.max())
        out[col] = jittered.round().astype(series.dtype) if pd.api.types.is_integer_dtype(series) else jittered
    target = frame[ds.target]
    out[ds.target] = (out[ds.target] * np.exp(rng.normal(0.0, JITTER, rows))).round().astype(target.dtype)
    return out


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def train_once(table: Path, candidate: str, workdir: Path, timeout: float) -> Cell:
    """``housing train`` of one candidate on ``table`` in a niced child; wall time, peak RSS, CV RMSE."""
    rows = len(pd.read_parquet(table, columns=["Sale_Price"]))
    cmd = ["nice", "-n", "10", sys.executable, "-m", "training", "-d", str(table), "-t", "Sale_Price", "--log-target"]
    cmd += ["-c", candidate, "--no-register", "--json", "--no-progress", "--bundle-root", str(workdir / "bundles")]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    began = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True, text=True
    )
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    out: list[str] = []
    readers = [threading.Thread(target=lambda s=s: out.append(s.read())) for s in (proc.stdout, proc.stderr)]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    timer.cancel()
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss / 1024  # KiB on Linux
    if proc.returncode < 0:
        return Cell(rows, candidate, "stopped", wall, peak_rss_mb=rss, note=f"killed after {timeout:.0f} s")
    text = "\n".join(out)
    line = next((ln for ln in text.splitlines() if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        return Cell(rows, candidate, "failed", wall, peak_rss_mb=rss, note=text.strip().splitlines()[-1][:200])
    summary = json.loads(line)
    row = next(r for r in summary["leaderboard"] if r["candidate"] == candidate)
    train = summary["timings"].get("train", float("nan"))
    return Cell(rows, candidate, "ok", wall, row["seconds"], train, rss, row["cv_rmse"])


def measure(sizes: tuple[int, ...], candidates: tuple[str, ...], budget: float, workdir: Path) -> list[Cell]:
    """Every candidate at every size, smallest first, skipping what the previous size projects past the bounds."""
    cells: list[Cell] = []
    last: dict[str, Cell] = {}
    memory = _available_mb() / 2
    for rows in sizes:
        table = workdir / f"ames-{rows}.parquet"
        for name in candidates:
            prev = last.get(name)
            if prev is not None:
                if prev.status != "ok":
                    cells.append(Cell(rows, name, "skipped", note=f"{prev.status} at {prev.rows:,} rows"))
                    continue
                ratio = rows / prev.rows
                # start-up, loading and writing the bundle stay; the training step grows with the rows
                wall = prev.wall_s - prev.train_s + prev.train_s * ratio * GROWTH[name]
                rss = prev.peak_rss_mb * ratio
                if wall > budget or rss > memory:
                    note = f"projected {wall:,.0f} s, {rss:,.0f} MB (bounds {budget:,.0f} s, {memory:,.0f} MB)"
                    cells.append(Cell(rows, name, "skipped", note=note))
                    last[name] = cells[-1]
                    continue
            if not table.exists():  # only for a size something runs at
                synthetic_ames(rows).to_parquet(table)
            cell = train_once(table, name, workdir, 2 * budget)
            print(json.dumps(asdict(cell)), file=sys.stderr, flush=True)
            cells.append(cell)
            last[name] = cell
        table.unlink(missing_ok=True)
    return cells


def markdown(cells: list[Cell], budget: float) -> list[str]:
    """The table for docs/benchmarks.md."""
    lines = [
        "| rows | candidate | wall s | 5-fold CV s | encode + CV + final fit s | peak RSS MB | CV RMSE (log) | note |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in cells:
        if c.status == "ok":
            lines.append(
                f"| {c.rows:,} | {c.candidate} | {c.wall_s:,.1f} | {c.cv_s:,.1f} | {c.train_s:,.1f} "
                f"| {c.peak_rss_mb:,.0f} | {c.cv_rmse:.4f} | |"
            )
        else:
            lines.append(f"| {c.rows:,} | {c.candidate} | | | | | | {c.status}: {c.note} |")
    lines += [
        "",
        f"Bounds: {budget:,.0f} s per candidate (projected from the size before), half the available memory.",
    ]
    return lines


def run(sizes: tuple[int, ...] = SIZES, candidates: tuple[str, ...] | None = None, budget: float = 900.0) -> list[Cell]:
    """Measure in a temporary directory and return the cells."""
    from training.candidates import CANDIDATES

    with tempfile.TemporaryDirectory(prefix="housing-train-scale-") as tmp:
        return measure(sizes, candidates or CANDIDATES, budget, Path(tmp))
