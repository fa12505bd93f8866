"""Each model kind's file — writer, reader, reference evaluator; no pickle anywhere.

Writers take the fitted library objects duck-typed, so this module imports neither
scikit-learn nor xgboost. Formats:

``model.ubj`` (xgboost)
    ``Booster.save_model`` in XGBoost's native UBJSON. The objective is ``reg:squarederror`` on
    the (transformed) target; ``base_score`` lives inside the model. Load with
    ``xgboost.Booster(model_file=...)`` and predict on a float matrix in schema order.

``forest.npz`` (random_forest)
    A fitted scikit-learn ``RandomForestRegressor`` flattened into plain numpy arrays
    (``np.load(path)`` works without ``allow_pickle``). All trees' nodes are concatenated;
    node ids are global:

    ============  =========  =============================================================
    array         dtype      meaning
    ============  =========  =============================================================
    ``feature``   int32      column (schema order) tested at the node; ``-2`` for a leaf
    ``threshold`` float64    split threshold (``-2.0`` for a leaf)
    ``left``      int32      global id of the left child (``-1`` for a leaf)
    ``right``     int32      global id of the right child (``-1`` for a leaf)
    ``value``     float64    node mean of the target (the prediction at a leaf)
    ``cover``     float64    training weight that reached the node (``weighted_n_node_samples``:
                             bootstrap draws × sample weights); TreeSHAP's node weights.
                             Optional: bundles written before it have none (readers must cope)
    ``roots``     int64      global id of each tree's root node (``len == n_trees``)
    ``n_trees``   int64      scalar, number of trees
    ``n_features`` int64     scalar, width of the input row
    ============  =========  =============================================================

    Prediction for a row ``x``: first cast ``x`` to float32 and back to float64 (scikit-learn
    evaluates trees on float32 inputs); for each tree start at ``roots[t]`` and, while
    ``feature[node] >= 0``, go to ``left[node]`` if ``x[feature[node]] <= threshold[node]``
    else ``right[node]``; the prediction is the mean over trees of ``value[leaf]``.
    :func:`predict_forest` is the reference implementation.

``linear.json`` (linear)
    ``{"intercept": float, "coef": [float per feature in schema order]}`` on the raw encoded
    layout: a StandardScaler in front of the regularised regressor is folded into the
    coefficients, so ``prediction = intercept + x @ coef``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LEAF = -2


def export_forest(forest: Any, path: Path) -> dict[str, Any]:
    """Write a fitted RandomForestRegressor (single output) as ``forest.npz``."""
    features, thresholds, lefts, rights, values, covers, roots = [], [], [], [], [], [], []
    offset = 0
    for est in forest.estimators_:
        tree = est.tree_
        n = tree.node_count
        left = tree.children_left.astype(np.int64)
        right = tree.children_right.astype(np.int64)
        leaf = left < 0
        roots.append(offset)
        features.append(np.where(leaf, LEAF, tree.feature).astype(np.int32))
        thresholds.append(np.where(leaf, float(LEAF), tree.threshold).astype(np.float64))
        lefts.append(np.where(leaf, -1, left + offset).astype(np.int32))
        rights.append(np.where(leaf, -1, right + offset).astype(np.int32))
        values.append(tree.value.reshape(n, -1)[:, 0].astype(np.float64))
        covers.append(np.asarray(tree.weighted_n_node_samples, dtype=np.float64))
        offset += n
    arrays = {
        "feature": np.concatenate(features),
        "threshold": np.concatenate(thresholds),
        "left": np.concatenate(lefts),
        "right": np.concatenate(rights),
        "value": np.concatenate(values),
        "cover": np.concatenate(covers),
        "roots": np.asarray(roots, dtype=np.int64),
        "n_trees": np.asarray(len(roots), dtype=np.int64),
        "n_features": np.asarray(forest.n_features_in_, dtype=np.int64),
    }
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return {"n_trees": len(roots), "n_nodes": offset}


def load_forest(path: Path | bytes) -> dict[str, np.ndarray]:
    """Read ``forest.npz`` (no pickle), from its path or its (verified) bytes."""
    import io

    with np.load(io.BytesIO(path) if isinstance(path, bytes) else path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def predict_forest(forest: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Pure-numpy evaluation of a flattened forest (vectorised over rows)."""
    X = np.asarray(X, dtype=np.float64).astype(np.float32).astype(np.float64)
    feature, threshold = forest["feature"], forest["threshold"]
    left, right, value = forest["left"], forest["right"], forest["value"]
    rows = np.arange(X.shape[0])
    total = np.zeros(X.shape[0], dtype=np.float64)
    for root in forest["roots"]:
        node = np.full(X.shape[0], root, dtype=np.int64)
        active = feature[node] >= 0
        while active.any():
            idx = node[active]
            go_left = X[rows[active], feature[idx]] <= threshold[idx]
            node[active] = np.where(go_left, left[idx], right[idx])
            active = feature[node] >= 0
        total += value[node]
    return total / len(forest["roots"])


def fold_linear(pipeline: Any) -> tuple[float, np.ndarray]:
    """Fold an optional StandardScaler into the final linear model's coef/intercept."""
    steps = getattr(pipeline, "steps", [(None, pipeline)])
    model = steps[-1][1]
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(model.intercept_).reshape(-1)[0])
    for _, step in reversed(steps[:-1]):  # StandardScaler(s): x' = (x - mean) / scale
        mean = getattr(step, "mean_", None)
        scale = getattr(step, "scale_", None)
        mean = np.zeros_like(coef) if mean is None else np.asarray(mean, dtype=np.float64)
        scale = np.ones_like(coef) if scale is None else np.asarray(scale, dtype=np.float64)
        coef = coef / scale
        intercept = intercept - float(np.dot(coef, mean))
    return intercept, coef


def export_linear(pipeline: Any, path: Path) -> dict[str, Any]:
    """Write ``linear.json`` with the scaler folded in."""
    intercept, coef = fold_linear(pipeline)
    path.write_text(json.dumps({"intercept": intercept, "coef": [float(c) for c in coef]}))
    return {"n_features": len(coef)}


def load_linear(path: Path | bytes) -> dict[str, Any]:
    """Read ``linear.json``: ``{"intercept": float, "coef": [float, ...]}``, from its path or its bytes."""
    return json.loads(path if isinstance(path, bytes) else Path(path).read_text())


def predict_linear(path: Path, X: np.ndarray) -> np.ndarray:
    """Reference evaluation of ``linear.json``."""
    data = load_linear(path)
    return float(data["intercept"]) + np.asarray(X, dtype=np.float64) @ np.asarray(data["coef"], dtype=np.float64)


def export_xgboost(model: Any, path: Path) -> dict[str, Any]:
    """Write ``model.ubj`` (native UBJSON) from an XGBRegressor or Booster."""
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    booster.feature_names = None
    booster.save_model(str(path))
    config = json.loads(booster.save_config())
    learner = config.get("learner", {})
    return {
        "objective": learner.get("objective", {}).get("name"),
        "base_score": learner.get("learner_model_param", {}).get("base_score"),
        "num_boosted_rounds": booster.num_boosted_rounds(),
        "n_features": booster.num_features(),
    }


def load_xgboost(path: Path | bytes) -> dict[str, Any]:
    """Read ``model.ubj`` (its path or its bytes) into XGBoost's JSON model document without importing xgboost.

    Raises :class:`bundle.ubjson.UBJSONError` when the file is not UBJSON (e.g. a legacy binary).
    """
    from bundle import ubjson

    return ubjson.loads(path if isinstance(path, bytes) else Path(path).read_bytes())
