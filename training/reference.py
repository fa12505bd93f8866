"""Reference statistics for drift detection, written to the bundle's ``reference.json``.

Layout (all computed on the training split)::

    {
      "version": 1,
      "n_rows": int,
      "numeric": {
        name: {"edges": [e1, ..., ek], "proportions": [p0, ..., pk], "missing": fraction}
      },
      "categorical": {
        name: {"frequencies": {category: fraction, ...}, "missing": fraction}
      },
      "prediction": {"edges": [...], "proportions": [...], "mean": m, "std": s,
                     "quantiles": [q0..q10]}   # in price units
    }

``edges`` are the distinct interior deciles (10 % … 90 %) of the training values; bin ``i``
holds values ``v`` with ``edges[i-1] < v <= edges[i]`` (bin 0 is ``v <= e1``, the last bin
``v > ek``), i.e. ``i = numpy.searchsorted(edges, v, side="left")``; ``proportions`` has
``len(edges) + 1`` entries summing to 1. Categorical frequencies are over the training values
after missing-value filling (so they sum to 1); categories not listed are unseen.
The ``prediction`` entry bins the model's predictions on the training rows (encoded exactly
as the predictor would encode them) the same way, for a PSI on predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from predictor.schema import NUMERIC, FeatureSchema

INTERIOR_DECILES = np.linspace(0.1, 0.9, 9)


def binned(values: np.ndarray) -> dict[str, Any]:
    """Decile edges and the share of ``values`` in each bin (see module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"edges": [], "proportions": [1.0]}
    edges = np.unique(np.quantile(values, INTERIOR_DECILES))
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return {"edges": [float(e) for e in edges], "proportions": [float(c) for c in counts / values.size]}


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
