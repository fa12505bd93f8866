"""Rows of a dataset to send: the raw holdout rows, split exactly like training does, or the first rows."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

#: The classic Boston example request (the dataset's first row; training/datasets.py): a valid row
#: of every Boston bundle, the one the tests send when any row will do. Read it, never change it.
BOSTON_ROW: dict[str, float | int] = {
    "CRIM": 0.00632, "ZN": 18.0, "INDUS": 2.31, "CHAS": 0, "NOX": 0.538, "RM": 6.575, "AGE": 65.2,
    "DIS": 4.09, "RAD": 1, "TAX": 296, "PTRATIO": 15.3, "B": 396.9, "LSTAT": 4.98,
}  # fmt: skip


def holdout(dataset: str) -> tuple[pd.DataFrame, list[str]]:
    from training.api import TrainConfig
    from training.datasets import load_dataset
    from training.pipeline import split_frame

    ds = load_dataset(dataset)
    _, test, _ = split_frame(ds, TrainConfig(dataset=dataset, fast=True))
    return test, ds.features


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-like instances: native Python scalars, missing values as None."""
    out = []
    for row in frame.to_dict("records"):
        out.append({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return out


def sample_records(dataset: str, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` holdout rows of ``dataset`` drawn with ``seed`` (the same rows on every run), as :func:`records`."""
    frame, features = holdout(dataset)
    return records(frame[features].sample(n, random_state=seed))


def boston_rows(n: int = 200) -> list[dict]:
    from training.datasets import load_dataset

    ds = load_dataset("boston")
    frame = ds.frame.drop(columns=[ds.target]).head(n)
    return json.loads(frame.to_json(orient="records"))
