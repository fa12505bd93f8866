"""The raw holdout rows of a dataset, split exactly like training does."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


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
