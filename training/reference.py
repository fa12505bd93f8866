"""Reference statistics for drift detection, written to the bundle's ``reference.json``.

The layout is the contract in :mod:`bundle.reference`; this module computes it from the
training split with pandas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bundle.reference import binned
from bundle.schema import NUMERIC, FeatureSchema


def reference_stats(train: pd.DataFrame, schema: FeatureSchema, fill: dict[str, Any], predictions: np.ndarray) -> dict:
    """Everything the predictor needs to compute PSI-style drift against training."""
    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    for feat in schema.features:
        col = train[feat.name]
        missing = float(col.isna().mean()) if len(col) else 0.0
        if feat.kind == NUMERIC:
            numeric[feat.name] = {**binned(col.astype("float64").to_numpy()), "missing": missing}
        else:
            filled = col.astype(object).where(col.notna(), fill[feat.name]).map(str)
            freq = filled.value_counts(normalize=True, sort=True)
            categorical[feat.name] = {"frequencies": {str(k): float(v) for k, v in freq.items()}, "missing": missing}
    pred = np.asarray(predictions, dtype=np.float64)
    prediction = {
        **binned(pred),
        "mean": float(pred.mean()),
        "std": float(pred.std()),
        "quantiles": [float(q) for q in np.quantile(pred, np.linspace(0, 1, 11))],
    }
    return {
        "version": 1,
        "n_rows": len(train),
        "numeric": numeric,
        "categorical": categorical,
        "prediction": prediction,
    }
