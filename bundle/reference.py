"""``reference.json``: the training distribution a bundle carries for drift, and the one PSI.

Layout (all computed on the training split; written by :mod:`training.reference`)::

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

INTERIOR_DECILES = np.linspace(0.1, 0.9, 9)
#: Shares below this are raised to it before the PSI's logarithm (an empty bin is not infinite).
PSI_EPS = 1e-4


def binned(values: np.ndarray) -> dict[str, Any]:
    """Decile edges and the share of ``values`` in each bin (see module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"edges": [], "proportions": [1.0]}
    edges = np.unique(np.quantile(values, INTERIOR_DECILES))
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return {"edges": [float(e) for e in edges], "proportions": [float(c) for c in counts / values.size]}


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = PSI_EPS) -> float:
    """Population stability index between two proportion vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=np.float64), eps, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), eps, None)
    return float(np.sum((a - e) * np.log(a / e)))
