"""The evaluation rows: chosen by a hash of each row's content, so every version sees the same ones.

A row is held out when the 64-bit hash of its values (every column, pandas' fixed-key
``hash_pandas_object``) falls below ``test_size`` of the hash range. The seed plays no part: two
versions of the same dataset hold out the same rows, whatever their seeds, and a row added to the
dataset later does not move the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bundle.evaluation import write_evaluation
from training.datasets import data_digest

SELECTION = "hash of the row's content (every column) below test_size of the 64-bit range"


def hash_mask(frame: pd.DataFrame, test_size: float) -> np.ndarray:
    """True for the rows held out for evaluation."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    return hashes < np.uint64(int(test_size * 2.0**64) if test_size < 1 else 2**64 - 1)


def records(frame: pd.DataFrame) -> list[dict]:
    """Native Python values per row, NaN as None (what a JSON client sends)."""
    out = []
    for row in frame.to_dict("records"):
        out.append({k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()})
    return out


def write_rows(path: Path, test: pd.DataFrame, features: list[str], target: str) -> dict:
    """Write ``evaluation.json`` and return what ``bundle.json`` records about it."""
    write_evaluation(path, target, records(test[features]), test[target].tolist())
    return {"file": path.name, "rows": len(test), "digest": data_digest(test), "selection": SELECTION}
