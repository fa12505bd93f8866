"""The blocked, threaded batch evaluator (``_fastpath.eval_batch``) gives the one-row walk's numbers exactly.

Batch sizes straddle the row block, the interleaved walks and the thread threshold; the rows are the
holdout set, perturbed, with missing values (XGBoost's default directions) and random values.
"""

from __future__ import annotations

import numpy as np
import pytest

from predictor.core import fastpath
from predictor.core.loaded import load_bundle
from testkit.holdout import holdout

pytestmark = pytest.mark.skipif(not fastpath.has_c_extension(), reason="C extension not built")


def _sizes() -> list[int]:
    block, threshold = fastpath._c.BATCH_BLOCK, fastpath.THREAD_MIN_ROWS
    return sorted({1, 2, 15, 16, 17, block - 1, block, block + 1, threshold - 1, threshold, threshold + 1, 10_000})


def _rows(bundle, n: int, seed: int = 0) -> np.ndarray:
    """``n`` encoded rows: the holdout, perturbed copies, NaNs in numeric columns, random values."""
    rng = np.random.default_rng(seed)
    test, features = holdout(bundle.manifest.params["dataset"]["name"])
    base = bundle.schema.encode_frame(test[bundle.schema.names])
    X = base[rng.integers(0, len(base), n)].copy()
    numeric = [j for j, f in enumerate(bundle.schema.features) if f.kind == "numeric"]
    X[:, numeric] *= rng.uniform(0.5, 1.5, (n, len(numeric)))
    X[rng.random(X.shape) < 0.05] = np.nan  # missing: XGBoost's default direction, right for the forest
    wild = rng.random(n) < 0.1
    X[wild] = rng.normal(0.0, 1e3, (int(wild.sum()), X.shape[1]))
    return X


def _one_row_each(ens: fastpath.TreeEnsemble, X: np.ndarray, exp: bool = False) -> np.ndarray:
    return np.array([ens.predict(X[i : i + 1], exp=exp)[0] for i in range(len(X))])


@pytest.mark.parametrize("fixture", ["ames_xgb", "boston_forest"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batches_equal_the_one_row_walk_exactly(fixture, threads, request):
    bundle = load_bundle(request.getfixturevalue(fixture))
    ens = bundle.evaluator
    assert ens._batch is not None  # the batch kernel is what runs here
    ens.threads = threads
    X = _rows(bundle, 10_000)
    expected = _one_row_each(ens, X)
    # exp=True against the one-row walk's own exp (libm in C), not numpy's: on AVX-512 CPUs numpy's
    # SIMD exp differs from libm by one ulp on some values, which says nothing about the batch kernel
    expected_exp = _one_row_each(ens, X[-max(_sizes()) :], exp=True)
    for n in _sizes():
        np.testing.assert_array_equal(ens.predict(X[:n]), expected[:n], err_msg=f"{n} rows")
        np.testing.assert_array_equal(ens.predict(X[-n:], exp=True), expected_exp[-n:], err_msg=f"{n} rows")


def test_batches_agree_with_xgboost(ames_xgb):
    import xgboost

    bundle = load_bundle(ames_xgb)
    X = _rows(bundle, 10_000, seed=1)
    for n in _sizes():
        ref = bundle.booster.predict(xgboost.DMatrix(X[:n]))
        np.testing.assert_allclose(bundle.predict_model_scale(X[:n]), ref, rtol=1e-6, atol=1e-6, err_msg=f"{n} rows")


def test_batches_agree_with_the_forest_reference(boston_forest):
    from bundle.model_files import load_forest, predict_forest

    bundle = load_bundle(boston_forest)
    X = _rows(bundle, 10_000, seed=2)
    X = np.nan_to_num(X, nan=0.0)  # scikit-learn's reference walk has no missing values
    forest = load_forest(boston_forest / "forest.npz")
    for n in _sizes():
        np.testing.assert_allclose(bundle.predict_model_scale(X[:n]), predict_forest(forest, X[:n]), rtol=1e-12)


def test_nan_left_split_that_no_value_passes_falls_back_to_the_packed_walk():
    """``x < -inf`` holds for no float32, but NaN still goes left: the NaN → -inf copy cannot say that."""
    nodes = np.zeros(3, dtype=fastpath.NODE_DTYPE)
    nodes[0] = (1, 2, 0, 1, -np.inf, 0.0)
    nodes[1] = (-1, -1, -1, 0, 0.0, 1.0)
    nodes[2] = (-1, -1, -1, 0, 0.0, -1.0)
    ens = fastpath.TreeEnsemble(nodes, np.array([0]), 1, fastpath.XGBOOST, 1.0, 0.0)
    assert ens._batch is None
    X = np.array([[np.nan], [-np.inf], [0.0], [-3e38]] * 300)
    np.testing.assert_array_equal(ens.predict(X), np.tile([1.0, -1.0, -1.0, -1.0], 300))


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("HOUSING_EVAL_THREADS", "3")
    assert fastpath.eval_threads() == 3
    monkeypatch.setenv("HOUSING_EVAL_THREADS", "zero")
    with pytest.raises(ValueError, match="HOUSING_EVAL_THREADS"):
        fastpath.eval_threads()
    monkeypatch.delenv("HOUSING_EVAL_THREADS")
    assert 1 <= fastpath.eval_threads() <= 2


def test_missing_values_learned_default_left_agree_with_xgboost():
    """A model trained with missing values sends NaN left at some splits (the bundles' never do)."""
    import xgboost

    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 6))
    y = X[:, 0] - 2 * X[:, 1] + rng.normal(0.0, 0.1, 3000)
    X[rng.random(X.shape) < 0.2] = np.nan
    y[np.isnan(X[:, 0])] += 5.0  # missing matters: where NaN goes is learned
    booster = xgboost.train({"max_depth": 5, "eta": 0.3, "nthread": 1}, xgboost.DMatrix(X, y), 60)
    ens = fastpath.compile_xgboost(booster)
    dl = ens._packed[0]["dl"] == 1
    assert (dl & np.isfinite(ens._packed[0]["thr"])).any()  # NaN-left splits
    assert ens._batch is not None
    expected = _one_row_each(ens, X)
    for n in _sizes():
        Xn = np.resize(X, (n, X.shape[1]))
        np.testing.assert_array_equal(ens.predict(Xn), np.resize(expected, n), err_msg=f"{n} rows")
        ref = booster.predict(xgboost.DMatrix(Xn))
        np.testing.assert_allclose(ens.predict(Xn), ref, rtol=1e-6, atol=1e-6, err_msg=f"{n} rows")
