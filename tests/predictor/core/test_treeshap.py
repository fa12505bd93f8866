"""TreeSHAP without the libraries agrees with XGBoost, with shap, and with the Shapley definition."""

from __future__ import annotations

import math
import shutil
from itertools import combinations

import numpy as np
import pytest

from bundle.manifest import load_manifest, write_bundle
from bundle.model_files import export_forest, load_forest
from predictor.core import treeshap
from predictor.core.fastpath import compile_forest
from predictor.core.loaded import load_bundle
from predictor.core.treeshap import TreeShap
from testkit.holdout import holdout

ATOL = 1e-5  # absolute, on the model's scale (log price for ames)


def _holdout_matrix(bundle):
    test, features = holdout(bundle.manifest.params["dataset"]["name"])
    return bundle.schema.encode_frame(test[features])


@pytest.mark.parametrize("fixture", ["ames_xgb", "boston_xgb"])
def test_xgboost_contributions_equal_pred_contribs_on_whole_holdout(fixture, request):
    import xgboost

    bundle = load_bundle(request.getfixturevalue(fixture))
    assert bundle.explainer is not None
    X = _holdout_matrix(bundle)
    if fixture == "boston_xgb":  # missing values take each split's default direction
        X = X.copy()
        X[::3, ::2] = np.nan
    contribs, bias = bundle.contributions(X)
    theirs = bundle.booster.predict(xgboost.DMatrix(X), pred_contribs=True).astype(np.float64)
    assert contribs.shape == (len(X), bundle.n_features) and len(X) > 50
    np.testing.assert_allclose(contribs, theirs[:, :-1], rtol=0, atol=ATOL)
    np.testing.assert_allclose(bias, theirs[:, -1], rtol=0, atol=ATOL)
    assert np.abs(contribs).max() > 0.01  # not trivially zero
    # additivity against our own (float32-accumulated, like XGBoost) prediction
    np.testing.assert_allclose(contribs.sum(axis=1) + bias, bundle.predict_model_scale(X), rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def boston_xy(boston_forest):
    from training.datasets import load_dataset

    bundle = load_bundle(boston_forest)
    ds = load_dataset("boston")
    return bundle.schema.encode_frame(ds.frame[ds.features]), ds.frame[ds.target].to_numpy(dtype=np.float64)


def _explainer_of(forest, tmp_path, tables: bool = True) -> TreeShap:
    """A fitted scikit-learn forest → forest.npz (the bundle writer) → packed trees → TreeShap."""
    export_forest(forest, tmp_path / "forest.npz")
    return TreeShap.from_ensemble(compile_forest(load_forest(tmp_path / "forest.npz")), tables=tables)


def test_forest_contributions_equal_shap_tree_explainer(boston_xy, tmp_path):
    import shap
    from sklearn.ensemble import RandomForestRegressor

    X, y = boston_xy
    forest = RandomForestRegressor(n_estimators=20, max_features=0.5, random_state=0).fit(X, y)  # deep trees
    ours = _explainer_of(forest, tmp_path)
    assert int(ours.depths.max()) > 10 and ours.tables is None  # too deep for block tables: Algorithm 2
    contribs, bias = ours.contributions(X)
    explainer = shap.TreeExplainer(forest, feature_perturbation="tree_path_dependent")
    theirs = explainer.shap_values(X)
    np.testing.assert_allclose(contribs, theirs, rtol=0, atol=ATOL)
    np.testing.assert_allclose(bias, float(np.ravel(explainer.expected_value)[0]), rtol=0, atol=ATOL)
    np.testing.assert_allclose(contribs.sum(axis=1) + bias, forest.predict(X), rtol=0, atol=1e-9)


def _tree_shapley(tree, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact Shapley values of one scikit-learn tree from the definition, every subset enumerated.

    The value of a coalition S: follow x at splits on features in S; elsewhere average both children
    by the training weight that went each way (the path-dependent expectation TreeSHAP computes).
    """
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    threshold, cover, value = tree.threshold, tree.weighted_n_node_samples, tree.value.reshape(-1)
    xf = x.astype(np.float32)

    def v(node: int, S: frozenset) -> float:
        if left[node] < 0:
            return float(value[node])
        f = feature[node]
        if f in S:
            return v(left[node] if xf[f] <= threshold[node] else right[node], S)
        return (cover[left[node]] * v(left[node], S) + cover[right[node]] * v(right[node], S)) / cover[node]

    used = sorted({int(f) for f in feature[left >= 0]})
    m = len(used)
    worth = {frozenset(S): v(0, frozenset(S)) for k in range(m + 1) for S in combinations(used, k)}
    phi = np.zeros(len(x))
    for i in used:
        others = [f for f in used if f != i]
        for k in range(m):
            weight = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
            for S in combinations(others, k):
                phi[i] += weight * (worth[frozenset(S) | {i}] - worth[frozenset(S)])
    return phi, worth[frozenset()]


def test_forest_contributions_equal_the_shapley_definition(boston_xy, tmp_path):
    from sklearn.ensemble import RandomForestRegressor

    X, y = boston_xy
    forest = RandomForestRegressor(n_estimators=4, max_depth=5, random_state=1).fit(X, y)
    ours = _explainer_of(forest, tmp_path)
    assert ours.tables is not None or not treeshap.has_c_extension()
    rows = X[[0, 7, 111, 250, 505]]
    contribs, bias = ours.contributions(rows)
    recursive = _explainer_of(forest, tmp_path, tables=False)
    np.testing.assert_allclose(recursive.contributions(rows)[0], contribs, rtol=0, atol=1e-12)
    for r, x in enumerate(rows):
        exact = [_tree_shapley(est.tree_, x) for est in forest.estimators_]
        expected_phi = np.mean([phi for phi, _ in exact], axis=0)
        expected_bias = float(np.mean([b for _, b in exact]))
        np.testing.assert_allclose(contribs[r], expected_phi, rtol=0, atol=1e-9)
        assert bias[r] == pytest.approx(expected_bias, abs=1e-9)


@pytest.mark.parametrize("block_bits", [0, 3, 12])
def test_block_tables_of_every_size_equal_the_recursive_algorithm(block_bits, boston_xy, tmp_path, monkeypatch):
    """0: one block per leaf; 3: blocks of a few splits below up to 3 ancestors' features; 12: whole subtrees.

    Depth-5 trees over 13 features split on a feature again below itself, inside and across blocks.
    """
    if not treeshap.has_c_extension():
        pytest.skip("C extension not built")
    from sklearn.ensemble import RandomForestRegressor

    X, y = boston_xy
    forest = RandomForestRegressor(n_estimators=6, max_depth=5, random_state=2).fit(X, y)
    monkeypatch.setattr(treeshap, "BLOCK_BITS", block_bits)
    ours = _explainer_of(forest, tmp_path)
    assert ours.tables is not None
    n_blocks = len(ours.tables[1]) // 8
    n_leaves = int((ours.nodes["left"] == np.arange(len(ours.nodes))).sum())
    assert (n_blocks == n_leaves) == (block_bits == 0)
    rows = np.asarray(X[::20], dtype=np.float64).copy()
    rows[::3, ::4] = np.nan
    recursive = _explainer_of(forest, tmp_path, tables=False)
    np.testing.assert_allclose(ours.contributions(rows)[0], recursive.contributions(rows)[0], rtol=0, atol=1e-12)


def test_forest_bundle_contributions_add_up_on_holdout(boston_forest):
    bundle = load_bundle(boston_forest)
    assert bundle.explainer is not None
    X = _holdout_matrix(bundle)
    contribs, bias = bundle.contributions(X)
    np.testing.assert_allclose(contribs.sum(axis=1) + bias, bundle.predict_model_scale(X), rtol=0, atol=1e-9)


def test_block_tables_equal_the_recursive_algorithm(ames_xgb):
    if not treeshap.has_c_extension():
        pytest.skip("C extension not built")
    bundle = load_bundle(ames_xgb)
    assert bundle.explainer._built == {}  # not at load: a start does not wait for the tables
    first = bundle.contributions(_holdout_matrix(bundle)[:1])[0]
    assert bundle.explainer._built["tables"] is not None  # depth-4 trees: the served path uses the tables
    X = _holdout_matrix(bundle).copy()
    X[::5, ::4] = np.nan
    recursive = TreeShap.from_ensemble(bundle.evaluator, tables=False)
    np.testing.assert_allclose(bundle.contributions(X)[0], recursive.contributions(X)[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(first, recursive.contributions(_holdout_matrix(bundle)[:1])[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("fixture", ["ames_xgb", "boston_forest"])
def test_python_fallback_equals_c_extension(fixture, request, monkeypatch):
    if not treeshap.has_c_extension():
        pytest.skip("C extension not built")
    bundle = load_bundle(request.getfixturevalue(fixture))
    X = _holdout_matrix(bundle)[:4].copy()
    X[0, :5] = np.nan
    c_contribs, c_bias = bundle.contributions(X)
    monkeypatch.setattr(treeshap, "_c", None)
    py_contribs, py_bias = bundle.contributions(X)
    np.testing.assert_allclose(py_contribs, c_contribs, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(py_bias, c_bias)


def test_forest_bundle_without_covers_still_serves_and_explains(boston_forest, tmp_path):
    """A forest.npz written before covers were recorded: verified, predicts, explains by node means."""
    old = tmp_path / "old-bundle"
    shutil.copytree(boston_forest, old)
    manifest = load_manifest(old)
    arrays = load_forest(old / "forest.npz")
    del arrays["cover"]
    with open(old / "forest.npz", "wb") as fh:
        np.savez(fh, **arrays)
    write_bundle(old, manifest)  # the digests of the file as it was
    bundle, current = load_bundle(old), load_bundle(boston_forest)
    assert bundle.explainer is None
    X = _holdout_matrix(bundle)[:10]
    np.testing.assert_array_equal(bundle.predict(X), current.predict(X))
    contribs, bias = bundle.contributions(X)
    np.testing.assert_allclose(contribs.sum(axis=1) + bias, bundle.predict_model_scale(X), rtol=0, atol=1e-9)


def test_covers_that_cannot_weigh_a_split_are_refused(boston_forest):
    ens = load_bundle(boston_forest).evaluator
    ens.cover = ens.cover.copy()
    ens.cover[3] = 0.0
    with pytest.raises(ValueError, match="1 node covers are not positive"):
        TreeShap.from_ensemble(ens)


def test_c_extension_refuses_malformed_arrays(boston_forest):
    if not treeshap.has_c_extension():
        pytest.skip("C extension not built")
    ts = load_bundle(boston_forest).explainer
    nodes = ts.nodes.copy()
    nodes["feat"][0] = ts.n_features  # a column the row does not have
    row = np.zeros((1, ts.n_features))
    with pytest.raises(ValueError, match="malformed"):
        treeshap._c.tree_shap(nodes, *ts._arrays[1:], row, row.copy(), ts.n_features, 1.0, True)
    with pytest.raises(ValueError, match="columns"):
        ts.contributions(np.zeros((1, ts.n_features + 1)))
