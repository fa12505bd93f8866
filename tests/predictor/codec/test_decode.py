"""Request decoding and validation, in-process (the server tests cover the same over HTTP/gRPC)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from bundle.schema import CATEGORICAL
from predictor.codec.decode import BatchTooLarge
from testkit.holdout import BOSTON_ROW as SEED_BOSTON


def _err(fn, *args) -> str:
    with pytest.raises(InvalidInput) as info:
        fn(*args)
    return str(info.value)


def test_seed_flat_object_is_one_instance_with_sensible_price(boston):
    bundle, dec = boston
    X = dec.v1(SEED_BOSTON)
    assert X.shape == (1, 13)
    price = bundle.predict(X)[0]
    assert 20.0 < price < 35.0
    assert dec.v1({"instances": [SEED_BOSTON, list(SEED_BOSTON.values())]}).shape == (2, 13)
    assert dec.v1(b'{"instances": [[0.00632, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 396.9, 4.98]]}').shape


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({k: v for k, v in SEED_BOSTON.items() if k != "RM"}, "RM: required feature is missing"),
        ({**SEED_BOSTON, "EXTRA": 1}, "EXTRA: unknown feature"),
        ({**SEED_BOSTON, "RM": "six"}, "RM: must be a number"),
        ({**SEED_BOSTON, "RM": True}, "RM: must be a number, got a boolean"),
        ({**SEED_BOSTON, "RM": None}, "RM: must not be null"),
        ({**SEED_BOSTON, "RM": float("nan")}, "RM: must be a finite number"),
        ({**SEED_BOSTON, "RM": float("inf")}, "RM: must be a finite number"),
        ({**SEED_BOSTON, "RM": 10**400}, "RM: number is out of the float64 range"),
        ({"instances": [SEED_BOSTON, {**SEED_BOSTON, "TAX": [1]}]}, "instances[1].TAX: must be a number"),
        ({"instances": []}, "instances: must not be empty"),
        ({"instances": {"a": 1}}, "instances: must be a list"),
        ({"instances": [1.5]}, "instance: must be an object"),
        ({"instances": [[1, 2, 3]]}, "instance: has 3 values, expected 13"),
        ([SEED_BOSTON], "body: must be a JSON object"),
        (b"{not json", "body: not valid JSON"),
    ],
)
def test_v1_client_mistakes_name_field_and_reason(boston, payload, expected):
    _, dec = boston
    assert expected in _err(dec.v1, payload)


def test_batch_limit(boston):
    _, dec = boston
    with pytest.raises(BatchTooLarge, match="exceeds the limit of 100"):
        dec.v1({"instances": [SEED_BOSTON] * 101})
    assert dec.v1({"instances": [SEED_BOSTON] * 100}).shape == (100, 13)


def _columns(payload: dict, n: int = 1) -> InferRequest:
    inputs = []
    for name, value in payload.items():
        dt = "BYTES" if isinstance(value, str) else "FP64"
        inputs.append(InferInput(name=name, shape=[n], datatype=dt, data=[value] * n))
    return InferRequest(model_name="housing", infer_inputs=inputs, request_id="r1")


def test_v2_columns_and_matrix_agree_with_v1(boston):
    _, dec = boston
    X1 = dec.v1(SEED_BOSTON)
    assert np.array_equal(dec.v2(_columns(SEED_BOSTON, 3)), np.repeat(X1, 3, axis=0))
    matrix = InferRequest(
        model_name="housing",
        infer_inputs=[InferInput("input-0", [2, 13], "FP64", data=[list(SEED_BOSTON.values())] * 2)],
    )
    assert np.array_equal(dec.v2(matrix), np.repeat(X1, 2, axis=0))


class _RenamingInput(InferInput):
    """An InferInput whose properties are not its stored fields: the one-row path must read the properties."""

    @property
    def name(self) -> str:
        return self._name.removeprefix("x-")


def test_v2_one_row_reads_what_the_tensors_say(ames):
    bundle, dec = ames
    row = {}
    for f in bundle.schema.features:
        row[f.name] = next(iter(f.categories)) if f.kind == CATEGORICAL else float(f.quantiles[5] if f.quantiles else 0)
    expected = dec.v1(row)
    one = _columns(row, 1)
    assert np.array_equal(dec.v2(one), expected)  # the one-row path
    assert np.array_equal(dec.v2(_columns(row, 2))[:1], expected)  # the column path
    grpc_like = [  # gRPC BYTES arrive as bytes
        InferInput(i.name, i.shape, i.datatype, [v.encode() if isinstance(v, str) else v for v in i.data])
        for i in one.inputs
    ]
    assert np.array_equal(dec.v2(InferRequest("housing", grpc_like)), expected)
    renamed = [_RenamingInput("x-" + i.name, i.shape, i.datatype, i.data) for i in one.inputs]
    assert np.array_equal(dec.v2(InferRequest("housing", renamed)), expected)
    numeric = next(f.name for f in bundle.schema.features if f.kind != CATEGORICAL)
    wrong = [InferInput(i.name, [1], "BYTES" if i.name == numeric else i.datatype, i.data) for i in one.inputs]
    assert f"{numeric}: numeric feature must be sent as" in _err(dec.v2, InferRequest("housing", wrong))


def test_v2_categoricals_as_bytes(ames):
    bundle, dec = ames
    row = {}
    for f in bundle.schema.features:
        row[f.name] = next(iter(f.categories)) if f.kind == CATEGORICAL else float(f.quantiles[5] if f.quantiles else 0)
    X = dec.v2(_columns(row, 2))
    assert X.shape == (2, len(row))
    assert np.array_equal(X[0], dec.v1(row)[0])
    # a categorical sent as a number, a 2-D tensor for a schema with categoricals
    cat = next(f.name for f in bundle.schema.features if f.kind == CATEGORICAL)
    assert f"{cat}: categorical feature must be sent as BYTES" in _err(dec.v2, _columns({**row, cat: 1.0}, 1))
    matrix = InferRequest("housing", [InferInput("x", [1, len(row)], "FP64", data=[0.0] * len(row))])
    assert f"feature {cat!r} is categorical" in _err(dec.v2, matrix)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ([], "inputs: must contain"),
        ([InferInput("RM", [1], "BYTES", data=["x"])], "RM: numeric feature must be sent as"),
        ([InferInput("RM", [2], "FP64", data=[1.0])], "RM: shape [2] does not match the 1 values"),
        ([InferInput("RM", [1, 2], "FP64", data=[1.0, 2.0])], "RM: shape [1, 2] must be [n] or [n, 1]"),
        ([InferInput("RM", [1], "FP64", data=["1.5"])], "RM: must be a number"),
        ([InferInput("RM", [1], "FP64", data=[None])], "RM: must not be null"),
        ([InferInput("NOPE", [1], "FP64", data=[1.0]), InferInput("RM", [1], "FP64", data=[1.0])], "NOPE: unknown"),
        ([InferInput("x", [1, 12], "FP64", data=[1.0] * 12)], "expected [n, 13]"),
        ([InferInput("x", [1, 13], "FP64", data=[1.0] * 12 + [float("nan")])], "x[0].LSTAT: must be a finite"),
        ([InferInput("x", [1, 13], "BYTES", data=["a"] * 13)], "x: 2-D input must be numeric"),
        ([InferInput("x", [101, 13], "FP64", data=[1.0] * 1313)], "exceeds the limit of 100"),
    ],
)
def test_v2_client_mistakes(boston, inputs, expected):
    _, dec = boston
    assert expected in _err(dec.v2, InferRequest("housing", inputs))


def test_v2_missing_feature_tensor(boston):
    _, dec = boston
    payload = {k: v for k, v in SEED_BOSTON.items() if k != "NOX"}
    assert "NOX: required feature is missing" in _err(dec.v2, _columns(payload))


VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_c_decoder_agrees_with_the_schema_contract(ames, boston, data):
    """The C decoder of one V1 object gives the schema's numbers, and declines whatever the schema refuses."""
    from bundle.schema import MISSING, InputError, coerce
    from predictor.codec import decode as codec

    if codec._c_decode_mapping is None:
        pytest.skip("the C extension is not built")
    for bundle, dec in (ames, boston):
        features = bundle.schema.features
        row = {}
        for f in features:
            kind = data.draw(st.sampled_from(["valid", "other", "absent"]))
            if kind == "valid":
                row[f.name] = (
                    data.draw(st.sampled_from([*f.categories, "never-seen"]))
                    if f.kind == CATEGORICAL
                    else data.draw(st.floats(-1e6, 1e6))
                )
            elif kind == "other":
                row[f.name] = data.draw(VALUES)
        out = np.full(len(features), -123.0)
        accepted = codec._c_decode_mapping(row, dec.names, dec.kinds, dec.tables, dec.unknowns, dec.defaults, out)
        try:
            expected = [coerce(f, row.get(f.name, MISSING)) for f in features]
        except InputError:
            expected = None
        if accepted:  # the C path answered: it must be the contract's answer
            assert expected is not None, row
            np.testing.assert_array_equal(out, np.asarray(expected, dtype=np.float64))
        elif expected is not None:  # it declined a valid row: the Python path must still decode it
            np.testing.assert_array_equal(dec.v1(row)[0], np.asarray(expected, dtype=np.float64))
