"""Compiled evaluators: a bundle's model as flat arrays, evaluated without the libraries.

* XGBoost: the booster's JSON dump (``Booster.save_raw("json")``) parsed into one packed node
  array. XGBoost compares in float32 (``x < split_condition`` → left, NaN → ``default_left``)
  and adds ``base_score``; we do the same.
* Random forest: ``forest.npz`` (see ``training/export.py``): ``x`` cast to float32,
  ``x <= threshold`` → left, the mean of the leaves.
* Linear: ``intercept + X @ coef``.

Tree ensembles run in the small C extension ``predictor._fastpath`` when it was built
(``pip install -e .`` / ``python setup.py build_ext --inplace``) and in vectorised numpy otherwise;
both give the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The C extension's interface version this module was written for (``_fastpath.c``: FASTPATH_ABI).
ABI = 2


def _load_extension() -> Any:
    try:
        from predictor import _fastpath
    except ImportError:  # pragma: no cover - depends on the build
        return None
    if getattr(_fastpath, "ABI", None) != ABI:  # pragma: no cover - a stale build: rebuild with pip install -e .
        return None
    return _fastpath


_c = _load_extension()

#: Packed node layout shared with ``_fastpath.c`` (32 bytes, naturally aligned).
NODE_DTYPE = np.dtype(
    {
        "names": ["left", "right", "feat", "default_left", "thr", "leaf"],
        "formats": ["<i4", "<i4", "<i4", "u1", "<f8", "<f8"],
        "offsets": [0, 4, 8, 12, 16, 24],
        "itemsize": 32,
    }
)
XGBOOST, SKLEARN = 0, 1


def has_c_extension() -> bool:
    return _c is not None


@dataclass
class TreeEnsemble:
    """Packed trees: ``nodes`` (NODE_DTYPE), ``roots`` (int64), how to compare and combine."""

    nodes: np.ndarray
    roots: np.ndarray
    n_features: int
    mode: int  # XGBOOST or SKLEARN
    scale: float  # 1.0 (sum) or 1/n_trees (mean)
    base: float

    def __post_init__(self) -> None:
        # numpy may drop the padding when concatenating structured arrays: restore the C layout
        if self.nodes.dtype != NODE_DTYPE or self.nodes.dtype.itemsize != NODE_DTYPE.itemsize:
            self.nodes = self.nodes.astype(NODE_DTYPE)
        self.nodes = np.ascontiguousarray(self.nodes)
        self.roots = np.ascontiguousarray(self.roots, dtype=np.int64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Model-scale predictions for a C-contiguous float64 matrix (n_rows, n_features)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix with {self.n_features} columns, got shape {X.shape}")
        out = np.empty(X.shape[0], dtype=np.float64)
        if _c is not None:
            _c.eval_trees(self.nodes, self.roots, X, out, self.n_features, self.mode, self.scale, self.base)
            return out
        return self._predict_numpy(X)

    def _predict_numpy(self, X: np.ndarray) -> np.ndarray:
        nodes = self.nodes
        feat, thr, leaf = nodes["feat"], nodes["thr"], nodes["leaf"]
        left, right, dleft = nodes["left"], nodes["right"], nodes["default_left"].astype(bool)
        xf = X.astype(np.float32).astype(np.float64)
        rows = np.arange(X.shape[0])
        xgb = self.mode == XGBOOST
        # XGBoost sums base_score and the leaves in float32; scikit-learn in float64
        total = np.full(X.shape[0], self.base, dtype=np.float32 if xgb else np.float64)
        for root in self.roots:
            node = np.full(X.shape[0], root, dtype=np.int64)
            active = feat[node] >= 0
            while active.any():
                idx = node[active]
                v = xf[rows[active], feat[idx]]
                if self.mode == XGBOOST:
                    go_left = np.where(np.isnan(v), dleft[idx], v < thr[idx])
                else:
                    go_left = v <= thr[idx]
                node[active] = np.where(go_left, left[idx], right[idx])
                active = feat[node] >= 0
            total += leaf[node].astype(total.dtype)
        if xgb:
            return total.astype(np.float64)
        return (total - self.base) * self.scale + self.base

    def leaf_paths(self, x: np.ndarray) -> list[list[int]]:
        """Node ids visited by one row in each tree (for path explanations)."""
        nodes = self.nodes
        xf = np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)
        paths = []
        for root in self.roots:
            node, path = int(root), [int(root)]
            while nodes["feat"][node] >= 0:
                n = nodes[node]
                v = xf[n["feat"]]
                if self.mode == XGBOOST:
                    go_left = bool(n["default_left"]) if np.isnan(v) else v < n["thr"]
                else:
                    go_left = v <= n["thr"]
                node = int(n["left"] if go_left else n["right"])
                path.append(node)
            paths.append(path)
        return paths


def _parse_base_score(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().strip("[]")
    return float(text.split(",")[0])


def compile_xgboost(booster: Any) -> TreeEnsemble:
    """Pack an ``xgboost.Booster`` (reg:squarederror, one output) into a TreeEnsemble."""
    return compile_xgboost_model(json.loads(booster.save_raw("json")))


def compile_xgboost_model(model: dict[str, Any]) -> TreeEnsemble:
    """Pack XGBoost's model document (JSON or UBJSON, ``{"learner": …}``) into a TreeEnsemble."""
    learner = model["learner"]
    objective = learner.get("objective", {}).get("name", "reg:squarederror")
    if objective not in ("reg:squarederror", "reg:linear", "reg:pseudohubererror", "reg:absoluteerror"):
        raise ValueError(f"objective {objective!r} has a non-identity link; the fast path does not handle it")
    gb = learner["gradient_booster"]
    if gb.get("name") not in ("gbtree", "dart") or "model" not in gb:
        raise ValueError(f"booster {gb.get('name')!r} is not a tree booster")
    if gb.get("name") == "dart":
        raise ValueError("dart boosters weight trees; not handled by the fast path")
    trees = gb["model"]["trees"]
    n_features = int(learner["learner_model_param"]["num_feature"])
    base = _parse_base_score(learner["learner_model_param"]["base_score"])
    parts, roots, offset = [], [], 0
    for tree in trees:
        if any(int(t) != 0 for t in tree.get("split_type", [])):
            raise ValueError("categorical splits are not handled by the fast path")
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        cond = np.asarray(tree["split_conditions"], dtype=np.float64)
        n = len(left)
        leaf_mask = left < 0
        packed = np.zeros(n, dtype=NODE_DTYPE)
        packed["left"] = np.where(leaf_mask, -1, left + offset)
        packed["right"] = np.where(leaf_mask, -1, right + offset)
        packed["feat"] = np.where(leaf_mask, -1, np.asarray(tree["split_indices"], dtype=np.int64))
        packed["default_left"] = np.asarray(tree["default_left"], dtype=np.uint8)
        # split conditions are float32 in XGBoost: keep that exact value
        packed["thr"] = cond.astype(np.float32).astype(np.float64)
        packed["leaf"] = np.where(leaf_mask, cond.astype(np.float32).astype(np.float64), 0.0)
        parts.append(packed)
        roots.append(offset)
        offset += n
    nodes = np.concatenate(parts) if parts else np.zeros(0, dtype=NODE_DTYPE)
    return TreeEnsemble(nodes, np.asarray(roots, dtype=np.int64), n_features, XGBOOST, 1.0, base)


def compile_forest(arrays: dict[str, np.ndarray]) -> TreeEnsemble:
    """Pack ``forest.npz`` arrays (see training/export.py) into a TreeEnsemble."""
    feature = np.asarray(arrays["feature"], dtype=np.int64)
    nodes = np.zeros(len(feature), dtype=NODE_DTYPE)
    leaf_mask = feature < 0
    nodes["feat"] = np.where(leaf_mask, -1, feature)
    nodes["left"] = arrays["left"]
    nodes["right"] = arrays["right"]
    nodes["thr"] = arrays["threshold"]
    nodes["leaf"] = arrays["value"]  # node means: also used for path explanations
    roots = np.asarray(arrays["roots"], dtype=np.int64)
    n_features = int(arrays["n_features"])
    return TreeEnsemble(nodes, roots, n_features, SKLEARN, 1.0 / max(len(roots), 1), 0.0)


@dataclass
class LinearModel:
    intercept: float
    coef: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.intercept + np.asarray(X, dtype=np.float64) @ self.coef

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        return cls(float(data["intercept"]), np.asarray(data["coef"], dtype=np.float64))
