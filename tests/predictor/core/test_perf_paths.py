"""The request path's shortcuts give the same answers and counts as the plain code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from predictor.core import fastpath
from predictor.core.loaded import load_bundle


def _stumps(thresholds: list[float], mode: int) -> fastpath.TreeEnsemble:
    """One stump per threshold on feature j % 2, plus a deeper lopsided tree."""
    nodes = []
    roots = []
    for k, thr in enumerate(thresholds):
        base = len(nodes)
        roots.append(base)
        nodes.append((base + 1, base + 2, k % 2, k % 2, thr, 0.0))
        nodes.append((-1, -1, -1, 0, 0.0, 1.0 + k))
        nodes.append((-1, -1, -1, 0, 0.0, -2.0 - k))
    base = len(nodes)
    roots.append(base)  # left leaf at depth 1, right subtree to depth 3
    nodes.append((base + 1, base + 2, 0, 1, 0.25, 0.0))
    nodes.append((-1, -1, -1, 0, 0.0, 0.5))
    nodes.append((base + 3, base + 4, 1, 0, -0.75, 0.0))
    nodes.append((-1, -1, -1, 0, 0.0, 0.125))
    nodes.append((base + 5, base + 6, 0, 1, 3.0, 0.0))
    nodes.append((-1, -1, -1, 0, 0.0, 0.0625))
    nodes.append((-1, -1, -1, 0, 0.0, 8.0))
    packed = np.zeros(len(nodes), dtype=fastpath.NODE_DTYPE)
    for name, column in zip(
        ("left", "right", "feat", "default_left", "thr", "leaf"), zip(*nodes, strict=True), strict=True
    ):
        packed[name] = column
    if mode == fastpath.XGBOOST:  # XGBoost's thresholds and leaves are float32 values
        packed["thr"] = packed["thr"].astype(np.float32).astype(np.float64)
        packed["leaf"] = packed["leaf"].astype(np.float32).astype(np.float64)
    scale = 1.0 if mode == fastpath.XGBOOST else 1.0 / len(roots)
    return fastpath.TreeEnsemble(packed, np.asarray(roots), 2, mode, scale, 0.5 if mode == fastpath.XGBOOST else 0.0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # float32 overflow at the extremes is the point
@pytest.mark.parametrize("mode", [fastpath.XGBOOST, fastpath.SKLEARN])
def test_packed_walk_matches_the_reference_at_threshold_edges(mode):
    if not fastpath.has_c_extension():
        pytest.skip("C extension not built")
    thresholds = [0.1, 1 / 3, 0.5, -2.75, 1e39, -1e39, 3.4028234663852886e38, 1e-46]
    ens = _stumps(thresholds, mode)
    assert ens._packed is not None
    values = [np.nan, np.inf, -np.inf, 0.0, -0.0, 3.0, 0.25, -0.75]
    for t in thresholds:
        f = np.float32(t) if abs(t) < 3.5e38 else np.float32(np.copysign(3.4028235e38, t))
        values += [float(f), float(np.nextafter(f, np.float32(np.inf))), float(np.nextafter(f, np.float32(-np.inf)))]
        values += [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)]
    v = np.asarray(values, dtype=np.float64)
    X = np.stack(np.meshgrid(v, v[::7]), axis=-1).reshape(-1, 2)
    expected = ens._predict_numpy(X)
    np.testing.assert_array_equal(ens.predict(X), expected)  # blocks of rows
    np.testing.assert_array_equal([ens.predict(X[i : i + 1])[0] for i in range(len(X))], expected)  # one row
    # the price in the same pass: libm's exp (math.exp), within an ulp of numpy's vectorised one
    np.testing.assert_array_equal(ens.predict(X, exp=True), [math.exp(v) for v in expected])
    np.testing.assert_allclose(ens.predict(X, exp=True), np.exp(expected), rtol=1e-15)


def test_v2_column_shortcuts_agree_with_the_careful_path(ames_xgb, monkeypatch):
    """C column fills (numbers, categories) give the Python path's matrix, or its error."""
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest

    from predictor.codec import decode as codec

    bundle = load_bundle(ames_xgb)
    decoder = codec.Decoder(bundle.schema, 1000)
    num = next(f for f in bundle.schema.features if f.kind == "numeric")
    cat = next(f for f in bundle.schema.features if f.kind != "numeric")
    seen = next(iter(cat.categories))

    def request(num_values, cat_values):
        inputs = []
        for f in bundle.schema.features:
            if f is num:
                inputs.append(InferInput(f.name, [len(num_values)], "FP64", num_values))
            elif f is cat:
                inputs.append(InferInput(f.name, [len(cat_values)], "BYTES", cat_values))
            elif f.kind == "numeric":
                inputs.append(InferInput(f.name, [3], "FP64", [1.0, 2.0, 3.0]))
            else:
                inputs.append(InferInput(f.name, [3], "BYTES", [next(iter(f.categories))] * 3))
        return InferRequest(model_name="m", infer_inputs=inputs)

    def decode(req):
        try:
            return decoder.v2(req)
        except InvalidInput as exc:
            return str(exc)

    cases = [
        ([1, 2.5, 10**30], [seen, "never-seen", seen.encode()]),
        ([1, True, 3.0], [seen, seen, seen]),
        ([1.0, float("nan"), 3.0], [seen, seen, seen]),
        ([1.0, None, 3.0], [seen, None, seen]),
        ([1.0, "2", 3.0], [b"\xff\xfe", seen, 7]),
        ([10**400, 2, 3], [seen, seen, seen]),
    ]
    fast = [decode(request(*c)) for c in cases]
    monkeypatch.setattr(codec, "_c_fill_numeric", None)
    monkeypatch.setattr(codec, "_c_fill_categories", None)
    slow = [decode(request(*c)) for c in cases]
    for a, b in zip(fast, slow, strict=True):
        if isinstance(b, str):
            assert a == b
        else:
            np.testing.assert_array_equal(a, b)
    assert not isinstance(fast[0], str)
