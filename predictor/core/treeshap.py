"""Per-feature contributions of tree ensembles without the libraries: path-dependent TreeSHAP.

Lundberg, Erion & Lee (2018), Algorithm 2 — what XGBoost's ``predict(pred_contribs=True)`` and
shap's ``TreeExplainer`` (``feature_perturbation="tree_path_dependent"``) compute: the Shapley values
of each tree's prediction where a feature left out of a coalition follows both branches, weighted by
the training weight (cover) that went each way. Per row, ``bias + contributions.sum() == prediction``
(on the model's scale), and ``bias`` — the covers' expected value of the ensemble — is the same for
every row.

It runs over the evaluator's packed trees (``fastpath.pack_trees``: the same split rule as
prediction) plus one cover per node, in the C extension ``predictor.core._treeshap`` when it was built,
and in plain Python otherwise (the same numbers, far slower: a fallback for machines without a
compiler). For shallow trees (XGBoost's depth 4) the C extension does the algorithm ahead of time
for blocks of each tree — subtrees of a few splits, or single leaves — once per pattern of the
splits a row can take (``block_tables``), and a row then costs a few comparisons and one table row
of additions per block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predictor.core.fastpath import PNODE_DTYPE, TreeEnsemble, breadth_first, load_extension, pack_trees

#: The C extension's interface version this module was written for (``_treeshap.c``: TREESHAP_ABI).
ABI = 3
#: Block tables (``_treeshap.c``: block_tables) are built when no leaf's path has more distinct features
#: than this and they hold at most TABLE_BUDGET values (8 bytes each); deeper ensembles run Algorithm 2.
MAX_TABLE_FEATURES = 12
TABLE_BUDGET = 4_000_000
#: A subtree is one block when its table row is chosen by at most this many bits (its ancestors'
#: distinct features plus its own splits): 2^6 rows. Depth-4 trees: four blocks of five bits.
BLOCK_BITS = 6


_c = load_extension("_treeshap", ABI)


def has_c_extension() -> bool:
    return _c is not None


@dataclass(frozen=True)
class TreeShap:
    """An ensemble's packed trees with their covers, ready to explain rows."""

    nodes: np.ndarray  # PNODE_DTYPE, packed order
    leaves: np.ndarray  # float64 per packed node
    covers: np.ndarray  # float64 per packed node, all > 0
    roots: np.ndarray  # int32 per tree
    depths: np.ndarray  # int32 per tree
    n_features: int
    scale: float
    bias: float
    want_tables: bool = False  # build the block tables (on first use: they cost a start ~70 ms)
    _built: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def tables(self) -> tuple[bytes, ...] | None:
        """block_tables' (steps, blocks, feats, table) when wanted and the trees are shallow enough; else None.

        Built by the first explanation (or this property), not at load: readiness does not wait for them.
        No lock (the explainer is pickled into REST workers): two first explanations at once would
        both build the same tables, and one would be kept.
        """
        if "tables" not in self._built:
            built = None
            if _c is not None and self.want_tables and len(self.roots):
                built = _c.block_tables(*self._arrays, self.n_features, MAX_TABLE_FEATURES, BLOCK_BITS, TABLE_BUDGET)
            self._built["tables"] = built
        return self._built["tables"]

    @classmethod
    def from_ensemble(cls, ens: TreeEnsemble, tables: bool = True) -> TreeShap:
        """Pack ``ens`` with its covers; ValueError when it has none or they cannot weigh a split.

        ``tables``: precompute the block tables when the trees are shallow enough (C extension only).
        """
        if ens.cover is None:
            raise ValueError("the model file records no node covers (training weight per node)")
        if not len(ens.roots):
            empty = np.zeros(0, dtype=np.float64)
            none = np.zeros(0, dtype=np.int32)
            return cls(np.zeros(0, dtype=PNODE_DTYPE), empty, empty, none, none, ens.n_features, ens.scale, ens.base)
        order, _, _ = breadth_first(ens.nodes, ens.roots)
        nodes, leaves, roots, depths = ens._packed or pack_trees(ens.nodes, ens.roots, ens.mode)
        covers = np.ascontiguousarray(ens.cover[order], dtype=np.float64)
        bad = ~(np.isfinite(covers) & (covers > 0))
        if bad.any():
            raise ValueError(f"{int(bad.sum())} node covers are not positive finite numbers")
        covers.setflags(write=False)
        # a tree's expected value: its leaves weighted by cover (XGBoost's node mean at the root)
        own = np.arange(len(nodes))
        is_leaf = nodes["left"] == own
        tree_of = np.searchsorted(roots, own, side="right") - 1
        expected = np.bincount(tree_of[is_leaf], (leaves * covers)[is_leaf], minlength=len(roots)) / covers[roots]
        bias = ens.base + ens.scale * float(expected.sum())
        explainer = cls(nodes, leaves, covers, roots, depths, ens.n_features, ens.scale, bias, want_tables=tables)
        if _c is not None:  # validated once here (the arrays are read-only), then trusted per call
            row = np.zeros((1, ens.n_features))
            _c.tree_shap(*explainer._arrays, row, np.empty_like(row), ens.n_features, ens.scale, True)
        return explainer

    @property
    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.nodes, self.leaves, self.covers, self.roots, self.depths

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature SHAP values (n, F) and the bias (n,) on the model's scale for a float64 matrix."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix with {self.n_features} columns, got shape {X.shape}")
        out = np.zeros(X.shape, dtype=np.float64)
        if len(self.roots) and X.shape[0]:
            if _c is not None and self.tables is not None:
                _c.tree_shap_blocks(*self.tables, X, out, self.n_features, self.scale)
            elif _c is not None:
                _c.tree_shap(*self._arrays, X, out, self.n_features, self.scale, False)
            else:
                for i, x in enumerate(X):
                    out[i] = self._row_python(x)
        return out, np.full(X.shape[0], self.bias)

    # -- the same algorithm in Python (no compiler at install time) ---------------------------
    def _row_python(self, x: np.ndarray) -> np.ndarray:
        left = self.nodes["left"].tolist()
        feat = self.nodes["feat"].tolist()
        thr = self.nodes["thr"].astype(np.float64).tolist()  # float32 values, exact in float64
        dl = self.nodes["dl"].tolist()
        leaves, covers = self.leaves.tolist(), self.covers.tolist()
        xf = np.asarray(x, dtype=np.float32).astype(np.float64).tolist()
        phi = [0.0] * self.n_features

        def recurse(node: int, path: list[list[float]], zero: float, one: float, feature: int) -> None:
            path = [step[:] for step in path]
            _extend(path, zero, one, feature)
            if left[node] == node:  # a leaf
                n = len(path) - 1
                for i in range(1, n + 1):
                    f, z, o, _ = path[i]
                    phi[int(f)] += _unwound_sum(path, i) * (o - z) * leaves[node]
                return
            v = xf[feat[node]]
            goes_left = v <= thr[node] or (math.isnan(v) and dl[node] == 1)
            hot = left[node] if goes_left else left[node] + 1
            cold = left[node] + 1 if goes_left else left[node]
            in_zero = in_one = 1.0
            k = next((i for i in range(1, len(path)) if path[i][0] == feat[node]), None)
            if k is not None:  # split on this feature before: undo that step, redo it here
                in_zero, in_one = path[k][1], path[k][2]
                _unwind(path, k)
            recurse(hot, path, in_zero * covers[hot] / covers[node], in_one, feat[node])
            recurse(cold, path, in_zero * covers[cold] / covers[node], 0.0, feat[node])

        for root in self.roots.tolist():
            recurse(root, [], 1.0, 1.0, -1)
        return np.asarray(phi) * self.scale


# A path step: [feature, zero fraction, one fraction, permutation weight] (see _treeshap.c).
def _extend(path: list[list[float]], zero: float, one: float, feature: int) -> None:
    n = len(path)
    path.append([feature, zero, one, 1.0 if n == 0 else 0.0])
    for i in range(n - 1, -1, -1):
        path[i + 1][3] += one * path[i][3] * (i + 1) / (n + 1)
        path[i][3] = zero * path[i][3] * (n - i) / (n + 1)


def _unwind(path: list[list[float]], k: int) -> None:
    n = len(path) - 1
    _, zero, one, _ = path[k]
    nxt = path[n][3]
    for i in range(n - 1, -1, -1):
        if one != 0.0:
            kept = path[i][3]
            path[i][3] = nxt * (n + 1) / ((i + 1) * one)
            nxt = kept - path[i][3] * zero * (n - i) / (n + 1)
        else:
            path[i][3] = path[i][3] * (n + 1) / (zero * (n - i))
    for i in range(k, n):
        path[i][:3] = path[i + 1][:3]
    path.pop()


def _unwound_sum(path: list[list[float]], k: int) -> float:
    n = len(path) - 1
    _, zero, one, _ = path[k]
    nxt, total = path[n][3], 0.0
    for i in range(n - 1, -1, -1):
        if one != 0.0:
            w = nxt * (n + 1) / ((i + 1) * one)
            total += w
            nxt = path[i][3] - w * zero * (n - i) / (n + 1)
        else:
            total += path[i][3] * (n + 1) / (zero * (n - i))
    return total
