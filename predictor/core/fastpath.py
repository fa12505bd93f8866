"""Compiled evaluators: a bundle's model as flat arrays, evaluated without the libraries.

* XGBoost: the booster's JSON dump (``Booster.save_raw("json")``) parsed into one packed node
  array. XGBoost compares in float32 (``x < split_condition`` → left, NaN → ``default_left``)
  and adds ``base_score``; we do the same.
* Random forest: ``forest.npz`` (see ``bundle/model_files.py``): ``x`` cast to float32,
  ``x <= threshold`` → left, the mean of the leaves.
* Linear: ``intercept + X @ coef``.

Tree ensembles run in the small C extension ``predictor.core._fastpath`` when it was built
(``pip install -e .`` / ``python setup.py build_ext --inplace``) and in vectorised numpy otherwise;
both give the same numbers.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The C extension's interface version this module was written for (``_fastpath.c``: FASTPATH_ABI).
ABI = 4


def load_extension(name: str, abi: int, package: str = __package__) -> Any:
    """``<package>.<name>`` (a C extension of ``predictor.core`` by default) when it is built and of interface
    version ``abi``; else None (Python paths)."""
    try:
        module = importlib.import_module(f"{package}.{name}")
    except ImportError:  # pragma: no cover - depends on the build
        return None
    if getattr(module, "ABI", None) != abi:  # pragma: no cover - a stale build: rebuild with pip install -e .
        return None
    return module


_c = load_extension("_fastpath", ABI)

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

#: The C walk's layout (``_fastpath.c``: PNode, 16 bytes): each tree breadth-first so a split's right
#: child is ``left + 1``; ``(float)x <= thr`` goes left, NaN goes left iff ``dl``; leaves loop on themselves.
PNODE_DTYPE = np.dtype({"names": ["thr", "left", "feat", "dl"], "formats": ["<f4", "<i4", "<i4", "<i4"]})


#: Rows from which a batch is split over threads (below, thread start-up outweighs the gain).
THREAD_MIN_ROWS = 512


def eval_threads() -> int:
    """Threads for one large batch: ``HOUSING_EVAL_THREADS`` or min(2, CPUs)."""
    env = os.environ.get("HOUSING_EVAL_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"HOUSING_EVAL_THREADS: expected a positive integer, got {env!r}") from None
        if value < 1:
            raise ValueError(f"HOUSING_EVAL_THREADS: expected a positive integer, got {env!r}")
        return value
    return min(2, os.cpu_count() or 1)


def has_c_extension() -> bool:
    return _c is not None


@dataclass
class TreeEnsemble:
    """Packed trees: ``nodes`` (NODE_DTYPE), ``roots`` (int64), how to compare and combine.

    ``cover``: the training weight that reached each node (float64, node order; XGBoost's
    ``sum_hessian``, scikit-learn's ``weighted_n_node_samples``), or None when the model file has
    none; TreeSHAP (``predictor/core/treeshap.py``) needs it.
    """

    nodes: np.ndarray
    roots: np.ndarray
    n_features: int
    mode: int  # XGBOOST or SKLEARN
    scale: float  # 1.0 (sum) or 1/n_trees (mean)
    base: float
    cover: np.ndarray | None = None
    _packed: tuple[np.ndarray, ...] | None = field(default=None, init=False, repr=False, compare=False)
    _batch: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    threads: int = field(default_factory=eval_threads, repr=False, compare=False)

    def __post_init__(self) -> None:
        # numpy may drop the padding when concatenating structured arrays: restore the C layout
        if self.nodes.dtype != NODE_DTYPE or self.nodes.dtype.itemsize != NODE_DTYPE.itemsize:
            self.nodes = self.nodes.astype(NODE_DTYPE)
        self.nodes = np.ascontiguousarray(self.nodes)
        self.roots = np.ascontiguousarray(self.roots, dtype=np.int64)
        if self.cover is not None:
            self.cover = np.ascontiguousarray(self.cover, dtype=np.float64)
            if self.cover.shape != (len(self.nodes),):
                raise ValueError(f"cover: expected one value per node ({len(self.nodes)}), got {self.cover.shape}")
        if _c is not None and len(self.roots) and self.n_features > 0:
            self._packed = pack_trees(self.nodes, self.roots, self.mode)
            out = np.empty(1, dtype=np.float64)
            # validated once here (the arrays are read-only from now on), then trusted per call
            _c.eval_packed(
                *self._packed, np.zeros((1, self.n_features)), out, self.n_features, 0, 1.0, 0.0, False, True
            )
            self._batch = batch_nodes(self._packed[0], self.n_features)
            if self._batch is not None:
                _c.eval_batch(
                    self._batch, *self._packed[1:], np.zeros((1, self.n_features)), out, self.n_features,
                    0, 1.0, 0.0, False, 1, True,
                )  # fmt: skip

    def predict(self, X: np.ndarray, exp: bool = False) -> np.ndarray:
        """Model-scale predictions (``exp``: their exponential) for a float64 matrix (n_rows, n_features)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix with {self.n_features} columns, got shape {X.shape}")
        out = np.empty(X.shape[0], dtype=np.float64)
        if _c is not None and self._packed is not None:
            if X.shape[0] > 1 and self._batch is not None:  # the same sums, blocked and threaded
                threads = self.threads if X.shape[0] >= THREAD_MIN_ROWS else 1
                args = (X, out, self.n_features, self.mode, self.scale, self.base, exp, threads, False)
                _c.eval_batch(self._batch, *self._packed[1:], *args)
            else:
                _c.eval_packed(*self._packed, X, out, self.n_features, self.mode, self.scale, self.base, exp, False)
            return out
        out = self._predict_numpy(X)  # no C extension, or nothing to walk (no trees or no features)
        return np.exp(out, out=out) if exp else out

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


def breadth_first(nodes: np.ndarray, roots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The packed order of NODE_DTYPE trees: (node ids in packed order, packed roots, depths).

    Each tree is contiguous and breadth-first, a split's children adjacent (left, right); a tree's
    depth is the number of splits on its longest root-to-leaf path. Raises ValueError for a child
    out of range, shared or in a cycle.
    """
    left = nodes["left"].astype(np.int64)
    right = nodes["right"].astype(np.int64)
    split = nodes["feat"] >= 0
    n_trees = len(roots)
    # breadth-first over all trees at once: a level's nodes, ordered by (tree, position in the tree)
    frontier = np.asarray(roots, dtype=np.int64)
    tree = np.arange(n_trees, dtype=np.int64)
    levels, trees = [], []
    depths = np.zeros(n_trees, dtype=np.int64)
    level = visited = 0
    while len(frontier):
        visited += len(frontier)
        if (frontier < 0).any() or (frontier >= len(nodes)).any() or visited > len(nodes):
            raise ValueError("malformed trees: a child is out of range, shared or in a cycle")
        levels.append(frontier)
        trees.append(tree)
        depths[tree] = level
        inner = split[frontier]
        parents = frontier[inner]
        frontier = np.stack([left[parents], right[parents]], axis=1).reshape(-1)  # left, right adjacent
        tree = np.repeat(tree[inner], 2)
        level += 1
    order_a = np.concatenate(levels)
    order_a = order_a[np.argsort(np.concatenate(trees), kind="stable")]  # each tree contiguous, level by level
    if len(order_a) and np.bincount(order_a, minlength=len(nodes)).max() > 1:  # (np.unique imports numpy.ma)
        raise ValueError("malformed trees: a node is shared between parents")
    new_roots = np.searchsorted(np.sort(np.concatenate(trees)), np.arange(n_trees))
    return order_a, new_roots, depths


def pack_trees(nodes: np.ndarray, roots: np.ndarray, mode: int) -> tuple[np.ndarray, ...]:
    """NODE_DTYPE trees → (PNODE_DTYPE nodes, float64 leaves, int32 roots, int32 depths) for ``eval_packed``.

    Each tree is renumbered breadth-first (children adjacent, see :func:`breadth_first`). Thresholds
    become float32 ``T`` with ``f <= T`` ⇔ the original comparison for every float32 ``f``: XGBoost's
    ``f < thr`` (T: the largest float32 below thr), scikit-learn's ``f <= thr`` (T: the largest float32
    not above thr); NaN when no float32 qualifies (always right). Leaves: ``thr = +inf``, ``dl = 1``,
    ``left`` = themselves.
    """
    order_a, new_roots, depths = breadth_first(nodes, roots)
    inv = np.empty(len(nodes), dtype=np.int64)
    inv[order_a] = np.arange(len(order_a))
    src = nodes[order_a]
    is_leaf = src["feat"] < 0
    thr = src["thr"].astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        t32 = thr.astype(np.float32)
        if mode == XGBOOST:
            t32 = np.where(t32.astype(np.float64) >= thr, np.nextafter(t32, np.float32(-np.inf)), t32)
            none = ~(t32.astype(np.float64) < thr)
        else:
            t32 = np.where(t32.astype(np.float64) > thr, np.nextafter(t32, np.float32(-np.inf)), t32)
            none = ~(t32.astype(np.float64) <= thr)
    t32 = np.where(none, np.float32(np.nan), t32).astype(np.float32)
    packed = np.zeros(len(order_a), dtype=PNODE_DTYPE)
    own = np.arange(len(order_a), dtype=np.int64)
    child = inv[np.where(is_leaf, order_a, src["left"])]
    packed["thr"] = np.where(is_leaf, np.float32(np.inf), t32)
    packed["left"] = np.where(is_leaf, own, child)
    packed["feat"] = np.where(is_leaf, 0, src["feat"])
    packed["dl"] = np.where(is_leaf, 1, src["default_left"] if mode == XGBOOST else 0)
    leaves = np.ascontiguousarray(src["leaf"], dtype=np.float64)
    arrays = (
        packed,
        leaves,
        new_roots.astype(np.int32),
        depths.astype(np.int32),
    )
    for a in arrays:
        a.setflags(write=False)
    return arrays


def batch_nodes(packed: np.ndarray, n_features: int) -> np.ndarray | None:
    """``eval_batch``'s nodes: the packed nodes with ``feat`` + n_features where ``dl`` (NaN goes left).

    ``eval_batch`` reads those from a copy of the row with NaN → -inf, so ``x <= thr`` alone decides,
    which holds unless a NaN-left split has thr = NaN (no float32 goes left): None then (use eval_packed).
    """
    dl = packed["dl"] != 0
    if (dl & np.isnan(packed["thr"])).any() or 2 * n_features * _c.BATCH_BLOCK >= 2**31:
        return None
    out = packed.copy()
    out["feat"] = (packed["feat"] + np.where(dl, n_features, 0)) * _c.BATCH_BLOCK
    out.setflags(write=False)
    return out


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
    if not trees:
        return TreeEnsemble(np.zeros(0, dtype=NODE_DTYPE), np.zeros(0, dtype=np.int64), n_features, XGBOOST, 1.0, base)
    if np.concatenate([np.zeros(0, np.int64), *(tree.get("split_type", ()) for tree in trees)]).any():
        raise ValueError("categorical splits are not handled by the fast path")

    def column(key: str, dtype: Any) -> np.ndarray:
        # one conversion per column (the UBJSON reader's arrays are big-endian views; JSON gives lists)
        return np.concatenate([tree[key] for tree in trees]).astype(dtype)

    # all trees at once: node ids become offsets into one packed array
    sizes = np.asarray([len(tree["left_children"]) for tree in trees], dtype=np.int64)
    roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    offset = np.repeat(roots, sizes)
    left = column("left_children", np.int64)
    right = column("right_children", np.int64)
    cond = column("split_conditions", np.float64)
    leaf_mask = left < 0
    nodes = np.zeros(len(left), dtype=NODE_DTYPE)
    nodes["left"] = np.where(leaf_mask, -1, left + offset)
    nodes["right"] = np.where(leaf_mask, -1, right + offset)
    nodes["feat"] = np.where(leaf_mask, -1, column("split_indices", np.int64))
    nodes["default_left"] = column("default_left", np.uint8)
    # split conditions are float32 in XGBoost: keep that exact value
    cond32 = cond.astype(np.float32).astype(np.float64)
    nodes["thr"] = cond32
    nodes["leaf"] = np.where(leaf_mask, cond32, 0.0)
    cover = column("sum_hessian", np.float64) if all("sum_hessian" in tree for tree in trees) else None
    return TreeEnsemble(nodes, np.asarray(roots, dtype=np.int64), n_features, XGBOOST, 1.0, base, cover)


def compile_forest(arrays: dict[str, np.ndarray]) -> TreeEnsemble:
    """Pack ``forest.npz`` arrays (see bundle/model_files.py) into a TreeEnsemble."""
    feature = np.asarray(arrays["feature"], dtype=np.int64)
    nodes = np.zeros(len(feature), dtype=NODE_DTYPE)
    leaf_mask = feature < 0
    nodes["feat"] = np.where(leaf_mask, -1, feature)
    nodes["left"] = arrays["left"]
    nodes["right"] = arrays["right"]
    nodes["thr"] = arrays["threshold"]
    nodes["leaf"] = arrays["value"]  # node means: also used by the path attribution of cover-less bundles
    roots = np.asarray(arrays["roots"], dtype=np.int64)
    n_features = int(arrays["n_features"])
    cover = arrays.get("cover")  # absent in bundles written before TreeSHAP explanations
    return TreeEnsemble(nodes, roots, n_features, SKLEARN, 1.0 / max(len(roots), 1), 0.0, cover)


@dataclass
class LinearModel:
    intercept: float
    coef: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.intercept + np.asarray(X, dtype=np.float64) @ self.coef

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        return cls(float(data["intercept"]), np.asarray(data["coef"], dtype=np.float64))
