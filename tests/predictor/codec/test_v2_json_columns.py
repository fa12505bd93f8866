"""The C columnar decoder of V2 JSON bodies (``Decoder.v2_json``) gives the careful path's matrix, or declines.

The careful path is orjson → ``parse_infer_request`` → ``Decoder.v2``; for every body the C decoder
takes, the matrices must be equal; every body it declines goes that way (and gets its answer or its
error naming the field).
"""

from __future__ import annotations

import copy
import importlib
import json
import math

import numpy as np
import pytest

from predictor.client.v2_request import v2_body
from predictor.codec.decode import DecodedInferRequest, Decoder
from predictor.core.loaded import load_bundle
from predictor.transport.v2_rest import parse_infer_request
from testkit.holdout import holdout, records

pytestmark = pytest.mark.skipif(
    getattr(importlib.import_module("predictor.codec.decode"), "_c_v2_json_columns", None) is None,
    reason="C extension not built",
)


@pytest.fixture(scope="module")
def setup(ames_xgb):
    bundle = load_bundle(ames_xgb)
    test, _ = holdout("ames")
    rows = records(test[bundle.schema.names])
    return Decoder(bundle.schema, 100_000), bundle.schema, rows


def _careful(decoder: Decoder, body: bytes) -> np.ndarray:
    return decoder.v2(parse_infer_request(body, "housing"))


def _check_same(decoder: Decoder, body: bytes) -> DecodedInferRequest:
    fast = decoder.v2_json(body, "housing")
    assert fast is not None, "the plain body should be decoded in C"
    np.testing.assert_array_equal(decoder.v2(fast), _careful(decoder, body))
    return fast


def test_holdout_body_equals_the_careful_path(setup):
    decoder, schema, rows = setup
    body = json.dumps(v2_body(rows * 3, names=schema.names, request_id="r-1")).encode()
    fast = _check_same(decoder, body)
    assert fast.id == "r-1" and fast.matrix.shape == (3 * len(rows), len(schema.names))
    # compact JSON, keys in another order, no id, explicit nulls
    doc = v2_body(rows[:7], names=reversed(schema.names))
    doc.update(parameters=None, outputs=[])
    for t in doc["inputs"]:
        t["parameters"] = None
    fast = _check_same(decoder, json.dumps(doc, separators=(",", ":")).encode())
    assert fast.id is None


def test_numbers_and_unknown_categories_equal_the_careful_path(setup):
    decoder, schema, rows = setup
    rng = np.random.default_rng(0)
    doc = v2_body(rows[:50], names=schema.names)
    values = [0.1, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, 123456789012345, -1, 0, 2.5e10, 1 / 3]
    for t in doc["inputs"]:
        if t["datatype"] == "BYTES":
            t["data"][::3] = ["never-seen"] * len(t["data"][::3])  # unknown categories
        else:
            t["datatype"] = "FP64"
            t["data"] = [float(v) for v in rng.normal(0, 10.0 ** rng.integers(-5, 10), 50)]
            t["data"][: len(values)] = values
    _check_same(decoder, json.dumps(doc).encode())
    text = json.dumps(doc).replace("0.1,", "1E-1,").replace("2.5e10", "25000000000.0e0")
    _check_same(decoder, text.encode())


def _variants(doc):
    """(label, body) pairs the C decoder leaves to the careful path."""
    num = next(t for t in doc["inputs"] if t["datatype"] != "BYTES")
    cat = next(t for t in doc["inputs"] if t["datatype"] == "BYTES")

    def edit(fn):
        d = copy.deepcopy(doc)
        fn(
            d,
            next(t for t in d["inputs"] if t["name"] == num["name"]),
            next(t for t in d["inputs"] if t["name"] == cat["name"]),
        )
        return json.dumps(d).encode()

    yield (
        "escaped category",
        json.dumps(doc)
        .replace(
            f'"{cat["data"][0]}"',
            json.dumps(cat["data"][0]).replace(cat["data"][0][0], f"\\u{ord(cat['data'][0][0]):04x}", 1),
            1,
        )
        .encode(),
    )
    yield "non-ASCII category", edit(lambda d, n, c: c["data"].__setitem__(0, "Pavé"))
    yield "null number", edit(lambda d, n, c: n["data"].__setitem__(0, None))
    yield "bool number", edit(lambda d, n, c: n["data"].__setitem__(0, True))
    yield "string number", edit(lambda d, n, c: n["data"].__setitem__(0, "1"))
    yield "number category", edit(lambda d, n, c: c["data"].__setitem__(0, 1))
    yield "huge int", edit(lambda d, n, c: n["data"].__setitem__(0, 10**20))
    yield "overflow", json.dumps(doc).replace(f'"data": [{json.dumps(num["data"][0])}', '"data": [1e999', 1).encode()
    yield "missing feature", edit(lambda d, n, c: d["inputs"].remove(n))
    yield "repeated feature", edit(lambda d, n, c: d["inputs"].append(copy.deepcopy(n)))
    yield "unknown feature", edit(lambda d, n, c: d["inputs"].append({**copy.deepcopy(n), "name": "nope"}))
    yield "shape [n, 1]", edit(lambda d, n, c: n.__setitem__("shape", [n["shape"][0], 1]))
    yield "shape mismatch", edit(lambda d, n, c: n.__setitem__("shape", [n["shape"][0] + 1]))
    yield "short column", edit(lambda d, n, c: n["data"].pop())
    yield "float shape", json.dumps(doc).replace('"shape": [3]', '"shape": [3.0]', 1).encode()
    yield "wrong datatype", edit(lambda d, n, c: c.__setitem__("datatype", "FP64"))
    yield "BOOL datatype", edit(lambda d, n, c: n.__setitem__("datatype", "BOOL"))
    yield "tensor parameters", edit(lambda d, n, c: n.__setitem__("parameters", {"content_type": "np"}))
    yield "request parameters", edit(lambda d, n, c: d.__setitem__("parameters", {"content_type": "pd"}))
    yield "requested outputs", edit(lambda d, n, c: d.__setitem__("outputs", [{"name": "price"}]))
    yield "numeric id", edit(lambda d, n, c: d.__setitem__("id", 7))
    yield "extra key", edit(lambda d, n, c: d.__setitem__("model_name", "housing"))
    yield "data first", edit(lambda d, n, c: d["inputs"].__setitem__(0, dict(reversed(list(d["inputs"][0].items())))))
    yield "trailing text", json.dumps(doc).encode() + b" x"
    yield "not JSON", json.dumps(doc).encode()[:-3]


def test_anything_else_is_declined_and_the_careful_path_decides(setup):
    from fastapi.exceptions import RequestValidationError
    from kserve.errors import InvalidInput

    decoder, schema, rows = setup
    doc = v2_body(rows[:3], names=schema.names, request_id="r")
    for label, body in _variants(doc):
        assert decoder.v2_json(body, "housing") is None, label
        try:
            _careful(decoder, body)  # its answer or its error (the route's 400), never a crash
        except (InvalidInput, RequestValidationError, NotImplementedError):
            pass
    escaped = dict(_variants(doc))["escaped category"]
    np.testing.assert_array_equal(_careful(decoder, escaped), _careful(decoder, json.dumps(doc).encode()))


def test_batch_limit_is_left_to_the_careful_path(setup):
    _, schema, rows = setup
    small = Decoder(schema, 2)
    body = json.dumps(v2_body(rows[:3], names=schema.names)).encode()
    assert small.v2_json(body, "housing") is None
    assert math.isfinite(
        small.v2_json(json.dumps(v2_body(rows[:2], names=schema.names)).encode(), "housing").matrix.sum()
    )
