"""predictor.transport.v2_rest: the fast V2 JSON route reads and writes exactly what KServe's own route does.

Every request is held against KServe's path for the same body — FastAPI's ``json`` parse, pydantic
``InferenceRequest``, ``InferRequest.from_inference_request`` — and every answer against
``InferResponse.to_rest`` → ``InferenceResponse`` → ``jsonable_encoder``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse, RequestedOutput
from kserve.protocol.rest.v2_datamodels import InferenceRequest, InferenceResponse
from pydantic import ValidationError

from predictor.transport.rest_middleware import _classify
from predictor.transport.v2_rest import _direct, encode_infer_response, parse_infer_request

INFER = "/v2/models/housing/infer"


def kserve_request(doc: Any) -> InferRequest:
    """What KServe's route makes of a JSON body (raises pydantic's ValidationError or InvalidInput)."""
    return InferRequest.from_inference_request(InferenceRequest.model_validate(doc), "housing")


def kserve_json(response: InferResponse) -> Any:
    """The JSON KServe's route answers with, parsed."""
    rest, _ = response.to_rest()
    return json.loads(json.dumps(jsonable_encoder(InferenceResponse.model_validate(rest))))


def _body(**extra: Any) -> dict[str, Any]:
    inputs = [
        {"name": "RM", "shape": [2], "datatype": "FP64", "data": [6.5, 7.0]},
        {
            "name": "Zone",
            "shape": [2],
            "datatype": "BYTES",
            "data": ["RL", "RM"],
            "parameters": {"content_type": "str"},
        },
        {"name": "X", "shape": [1, 2], "datatype": "INT64", "data": [[1, 2]]},
    ]
    return {"id": "r1", "inputs": inputs, **extra}


@pytest.mark.parametrize(
    "doc",
    [
        _body(),
        _body(parameters={"a": 1, "b": "x", "c": True, "d": 1.5}),
        _body(parameters=None, outputs=None),
        _body(outputs=[]),
        _body(outputs=[{"name": "predictions"}, {"name": "other", "parameters": {"binary_data": True}}]),
        {"inputs": []},
        {"inputs": [{"name": "A", "shape": [0], "datatype": "FP16", "data": []}]},
        {"id": None, "inputs": [{"name": "A", "shape": [], "datatype": "fp64", "data": [1]}], "ignored": {"x": 1}},
    ],
)
def test_a_plain_body_becomes_the_request_kserve_makes_of_it(doc: dict[str, Any]) -> None:
    request = parse_infer_request(orjson.dumps(doc), "housing")
    assert _direct(doc, "housing") is not None  # the fast path took it
    assert request == kserve_request(doc)
    assert request.use_binary_outputs == kserve_request(doc).use_binary_outputs


@pytest.mark.parametrize(
    "doc",
    [
        _body(inputs=[{"name": "A", "shape": ["2"], "datatype": "FP64", "data": [1, 2]}]),  # coerced by pydantic
        _body(inputs=[{"name": "A", "shape": [2.0], "datatype": "FP64", "data": [1, 2]}]),
        _body(inputs=[{"name": "A", "shape": [True], "datatype": "FP64", "data": [1]}]),
    ],
)
def test_a_body_pydantic_coerces_is_left_to_pydantic(doc: dict[str, Any]) -> None:
    assert _direct(doc, "housing") is None
    assert parse_infer_request(orjson.dumps(doc), "housing") == kserve_request(doc)


def _message(body: bytes) -> str:
    with pytest.raises(RequestValidationError) as info:
        parse_infer_request(body, "housing")
    status, reason, message = _classify(info.value, INFER)
    assert (status, reason) == (400, "RequestValidationError")
    return message


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"inputs": "nope"}, "inputs: Input should be a valid list"),
        ({"id": 3, "inputs": []}, "id: Input should be a valid string"),
        ({}, "inputs: Field required"),
        ([1, 2], "body: Input should be an object"),
        ({"inputs": [5]}, "inputs.0: Input should be an object"),
        ({"inputs": [{"name": "A", "shape": [1], "data": [1]}]}, "inputs.0.datatype: Field required"),
        ({"inputs": [{"name": 5, "shape": [1], "datatype": "FP64", "data": [1]}]}, "inputs.0.name: Input should be"),
        ({"inputs": [{"name": "A", "shape": [1], "datatype": "FP64", "data": 1}]}, "inputs.0.data: Input should be"),
        ({"inputs": [], "parameters": [1]}, "parameters: Input should be a valid dictionary"),
        ({"inputs": [], "parameters": {"a": None}}, "parameters.a.float: Input should be a valid number"),
        ({"inputs": [], "outputs": [{}]}, "outputs.0.name: Field required"),
    ],
)
def test_a_body_kserve_refuses_is_a_400_naming_the_field(doc: Any, message: str) -> None:
    with pytest.raises(ValidationError):
        kserve_request(doc)
    assert _message(orjson.dumps(doc)).startswith(message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: not valid JSON at position 1 ("),
        (b'{"inputs": []} x', "body: not valid JSON at position 15 (unexpected content after document)"),
        (b'{"inputs": [NaN]}', "body: not valid JSON at position 12 ("),
        (b'{"inputs": "\xff"}', "body: not valid JSON (not UTF-8 text)"),
    ],
)
def test_a_body_that_is_not_json_says_where(body: bytes, message: str) -> None:
    got = _message(body)
    assert got.startswith(message)
    assert got.endswith("a body with binary tensor data needs the Inference-Header-Content-Length header")


def test_an_empty_body_is_a_missing_body() -> None:
    assert _message(b"") == "body: Field required"


def test_json_fp16_data_is_kserves_refusal() -> None:
    doc = {"inputs": [{"name": "A", "shape": [1], "datatype": "FP16", "data": [1.0]}]}
    with pytest.raises(InvalidInput, match="Sending FP16 data via JSON is not supported"):
        parse_infer_request(orjson.dumps(doc), "housing")


# -- property: whatever the body, the same request as KServe's or the same refusal ------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
tensors = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=4) | values,
        "shape": st.lists(st.integers(-1, 3) | values, max_size=3) | values,
        "datatype": st.sampled_from(["FP64", "BYTES", "FP16", "fp16", "INT64"]) | values,
        "data": st.lists(scalars, max_size=3) | values,
        "parameters": st.dictionaries(st.text(max_size=3), scalars, max_size=2) | values,
    },
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=4) | values,
        "inputs": st.lists(tensors | values, max_size=3) | values,
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=3) | values}), max_size=2) | values,
        "parameters": st.dictionaries(st.text(max_size=3), scalars, max_size=2) | values,
    },
)


well_formed = st.fixed_dictionaries(
    {
        "inputs": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.text(max_size=4),
                    "shape": st.lists(st.integers(-1, 3), max_size=2),
                    "datatype": st.sampled_from(["FP64", "BYTES", "FP16", "INT64", "BOOL"]),
                    "data": st.lists(scalars | st.lists(scalars, max_size=2), max_size=3),
                },
                optional={"parameters": st.dictionaries(st.text(max_size=3), scalars, max_size=2)},
            ),
            max_size=3,
        )
    },
    optional={"id": st.text(max_size=4), "parameters": st.dictionaries(st.text(max_size=3), scalars, max_size=2)},
)


@given(doc=well_formed | bodies | values)
@settings(max_examples=400, deadline=None)
def test_any_body_gets_what_kserve_makes_of_it_or_its_refusal(doc: Any) -> None:
    try:
        expected: Any = kserve_request(doc)
    except (ValidationError, InvalidInput) as exc:
        expected = type(exc)
    try:
        got: Any = parse_infer_request(orjson.dumps(doc), "housing")
    except RequestValidationError:
        got = ValidationError
    except InvalidInput:
        got = InvalidInput
    assert got == expected


# -- responses ---------------------------------------------------------------------------------------
def _response(data: Any = None, datatype: str = "FP64", **kwargs: Any) -> InferResponse:
    data = [215125.82054521109, 1e-7, 1e16] if data is None else data
    output = InferOutput(name="predictions", shape=[len(data)], datatype=datatype, data=data)
    return InferResponse(response_id="r1", model_name="housing", infer_outputs=[output], **kwargs)


@pytest.mark.parametrize(
    "response",
    [
        _response(),
        _response(model_version="v3", parameters={"out_of_range": "RM,TAX", "out_of_range_rows": 2}),
        _response(data=[1, 2, 3]),  # ints of an FP64 output: written as floats, as KServe does
        _response(data=np.array([1.5, 2.5])),
        _response(data=[1, 2], datatype="INT32"),
        _response(data=[0.1, 0.2], datatype="FP32"),
        _response(data=[True, False], datatype="BOOL"),
        _response(data=[]),
        _response(requested_outputs=[RequestedOutput("predictions", {})]),
        _response(requested_outputs=[RequestedOutput("predictions", {"binary_data": False})]),
    ],
)
def test_a_json_answer_is_the_json_kserve_writes(response: InferResponse) -> None:
    content = encode_infer_response(response)
    assert content is not None
    assert list(orjson.loads(content)) == list(kserve_json(_copy(response)))  # the same keys in the same order
    assert orjson.loads(content) == kserve_json(_copy(response))


def _copy(response: InferResponse) -> InferResponse:
    """``to_rest`` rewrites the outputs it encodes: encode a fresh copy."""
    out = response.outputs[0]
    data = out.data.copy() if isinstance(out.data, np.ndarray) else list(out.data)
    return InferResponse(
        response_id=response.id,
        model_name=response.model_name,
        infer_outputs=[InferOutput(out.name, list(out.shape), out.datatype, data)],
        model_version=response.model_version,
        parameters=response.parameters,
        use_binary_outputs=response._use_binary_outputs,
        requested_outputs=response._requested_outputs,
    )


def _misshapen() -> InferResponse:
    response = _response(data=[1.0, 2.0, 3.0, 4.0])
    response.outputs[0].shape = [3]
    return response


@pytest.mark.parametrize(
    "response",
    [
        _response(use_binary_outputs=True),
        _response(requested_outputs=[RequestedOutput("predictions", {"binary_data": True})]),
        _response(requested_outputs=[RequestedOutput("other", {})]),
        _response(data=["a", "b"], datatype="BYTES"),
        _response(data=[1.0, 2.0], datatype="FP16"),
        _misshapen(),
    ],
)
def test_anything_else_is_left_to_kserves_encoding(response: InferResponse) -> None:
    assert encode_infer_response(response) is None
