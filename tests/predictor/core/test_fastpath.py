"""The fast path agrees with the libraries on the whole holdout set (≤ 1e-5 relative, prices)."""

from __future__ import annotations

import numpy as np
import pytest

from predictor.codec.decode import Decoder
from predictor.core import fastpath
from predictor.core.loaded import load_bundle
from testkit.holdout import holdout, records

RTOL = 1e-5


def _library_predict(bundle, X):
    """Model-scale predictions through the library / reference implementation."""
    from bundle.model_files import load_forest, predict_forest

    if bundle.flavor == "xgboost":
        import xgboost

        return bundle.booster.predict(xgboost.DMatrix(np.asarray(X, dtype=np.float64)))
    if bundle.flavor == "random_forest":
        return predict_forest(load_forest(bundle.directory / bundle.manifest.model_file), X)
    return bundle.evaluator.predict(X)


def _served_prices(bundle_dir):
    """Raw holdout rows → V1 decoder → compiled evaluator → prices; and the reference path."""
    bundle = load_bundle(bundle_dir)
    dataset = bundle.manifest.params["dataset"]["name"]
    test, features = holdout(dataset)
    decoder = Decoder(bundle.schema, 1_000_000)
    X = decoder.v1({"instances": records(test[features])})
    X_ref = bundle.schema.encode_frame(test[features])  # the training pipeline's encoding
    np.testing.assert_array_equal(X, X_ref)
    return bundle, X, bundle.predict(X), bundle.to_price(_library_predict(bundle, X_ref).astype(np.float64))


@pytest.mark.parametrize("fixture", ["ames_xgb", "boston_xgb", "boston_forest", "ames_linear"])
def test_fast_path_agrees_with_library_on_holdout(fixture, request):
    bundle, X, fast, ref = _served_prices(request.getfixturevalue(fixture))
    assert len(fast) == len(ref) > 50
    rel = np.abs(fast - ref) / np.abs(ref)
    assert rel.max() <= RTOL, f"{bundle.flavor}: max relative difference {rel.max():.2e}"
    # single rows give the same numbers as the batch
    for i in range(0, len(X), max(1, len(X) // 20)):
        assert bundle.predict(X[i : i + 1])[0] == pytest.approx(fast[i], rel=1e-12)


def test_sklearn_forest_semantics_match_training_reference(boston_forest):
    from bundle.model_files import load_forest, predict_forest

    bundle = load_bundle(boston_forest)
    rng = np.random.default_rng(0)
    X = bundle.schema.encode_frame(holdout("boston")[0][bundle.schema.names])
    X = np.vstack([X, X * rng.uniform(0.8, 1.2, X.shape)])
    ref = predict_forest(load_forest(boston_forest / "forest.npz"), X)
    np.testing.assert_allclose(bundle.predict_model_scale(X), ref, rtol=1e-12)


@pytest.mark.parametrize("fixture", ["ames_xgb", "boston_forest"])
def test_numpy_fallback_equals_c_extension(fixture, request):
    if not fastpath.has_c_extension():
        pytest.skip("C extension not built")
    bundle = load_bundle(request.getfixturevalue(fixture))
    test, features = holdout(bundle.manifest.params["dataset"]["name"])
    X = bundle.schema.encode_frame(test[features])[:200]
    X[0, 0] = np.nan  # XGBoost's default direction
    ens = bundle.evaluator
    np.testing.assert_allclose(ens._predict_numpy(X), ens.predict(X), rtol=1e-12)


def test_xgboost_missing_values_follow_default_direction(boston_xgb):
    import xgboost

    bundle = load_bundle(boston_xgb)
    X = bundle.schema.encode_frame(holdout("boston")[0][bundle.schema.names])[:50].copy()
    X[::2, :3] = np.nan
    ref = bundle.booster.predict(xgboost.DMatrix(X))
    np.testing.assert_allclose(bundle.predict_model_scale(X), ref, rtol=1e-6)


@pytest.mark.parametrize("fixture", ["ames_xgb", "boston_forest", "ames_linear"])
def test_contributions_sum_to_model_scale_prediction(fixture, request):
    bundle = load_bundle(request.getfixturevalue(fixture))
    test, features = holdout(bundle.manifest.params["dataset"]["name"])
    X = bundle.schema.encode_frame(test[features])[:20]
    contribs, bias = bundle.contributions(X)
    assert contribs.shape == X.shape
    np.testing.assert_allclose(contribs.sum(axis=1) + bias, bundle.predict_model_scale(X), rtol=1e-5, atol=1e-5)


def test_ubjson_reader_compiles_the_same_trees_as_xgboost(ames_xgb):
    import xgboost

    from bundle import ubjson

    path = ames_xgb / "model.ubj"
    ours = fastpath.compile_xgboost_model(ubjson.loads(path.read_bytes()))
    theirs = fastpath.compile_xgboost(xgboost.Booster(model_file=str(path)))
    assert ours.base == pytest.approx(theirs.base, rel=1e-7)
    np.testing.assert_array_equal(ours.roots, theirs.roots)
    for name in ("left", "right", "feat", "default_left", "thr", "leaf"):
        np.testing.assert_array_equal(ours.nodes[name], theirs.nodes[name])


@pytest.mark.parametrize("blob", [b"", b"{", b"[$d#i\x05\x00", b"{i\x03abcZ", b"\xff", b"[#U\x02ii"])
def test_ubjson_reader_rejects_garbage(blob):
    from bundle import ubjson

    with pytest.raises(ubjson.UBJSONError):
        ubjson.loads(blob)


def test_without_the_c_extension_everything_agrees(ames_xgb, monkeypatch):
    """The numpy/Python fallbacks (no compiler at install time) give the same answers."""
    from predictor.codec import decode as codec
    from predictor.core import ranges

    bundle = load_bundle(ames_xgb)
    test, features = holdout("ames")
    rows = records(test[features])
    decoder = Decoder(bundle.schema, 1_000_000)
    check = ranges.RangeCheck(bundle.schema)
    X_c = decoder.v1({"instances": rows})
    prices_c = bundle.predict(X_c)
    mask_c = check.out_of_range(X_c)
    monkeypatch.setattr(codec, "_c_decode_mapping", None)
    monkeypatch.setattr(ranges, "_c_out_of_range", None)
    monkeypatch.setattr(fastpath, "_c", None)
    X_py = decoder.v1({"instances": rows})
    np.testing.assert_array_equal(X_py, X_c)
    np.testing.assert_allclose(bundle.predict(X_py), prices_c, rtol=1e-12)
    mask_py = check.out_of_range(X_py)
    assert (mask_c is None) == (mask_py is None)
    if mask_c is not None:
        np.testing.assert_array_equal(mask_py, mask_c)
