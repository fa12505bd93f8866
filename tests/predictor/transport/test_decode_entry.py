"""The model's typed decode entry (``predictor.codec.entry.DecodeEntry``), and the transports reaching the
model's decoder through it only.

``HousingModel`` offers the entry (``decode_v2_json`` for a V2 JSON body's bytes, ``decode_grpc`` for a
``ModelInferRequest``); a ``kserve.Model`` that does not is left to KServe's decoding by both routes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput
from kserve.model import Model
from kserve.model_repository import ModelRepository
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from bundle.schema import CATEGORICAL
from predictor.client.v2_request import v2_body
from predictor.codec.decode import BatchTooLarge, DecodedInferRequest
from predictor.codec.entry import DecodeEntry, decode_entry
from predictor.codec.v2_binary import CheckedDataPlane
from predictor.transport import v2_rest
from predictor.transport.model import HousingModel
from testkit.holdout import holdout, records


@pytest.fixture(scope="module")
def rows(model: HousingModel) -> list[dict[str, Any]]:
    test, _ = holdout("ames")
    return records(test[model.bundle.schema.names])[:3]  # the fixture's model takes at most 3 rows


def _grpc_request(model: HousingModel, rows: list[dict[str, Any]]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="housing", id="g1")
    for f in model.bundle.schema.features:
        tensor = request.inputs.add(name=f.name, shape=[len(rows)])
        if f.kind == CATEGORICAL:
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.extend(str(r[f.name]).encode() for r in rows)
        else:
            tensor.datatype = "FP64"
            tensor.contents.fp64_contents.extend(float(r[f.name]) for r in rows)
    return request


def test_the_model_offers_the_entry_and_other_models_do_not(model: HousingModel) -> None:
    assert isinstance(model, DecodeEntry)
    assert decode_entry(model) is model
    assert decode_entry(model) is model  # the second time from the per-class answer
    assert decode_entry(Model("plain")) is None  # KServe's own kind of model: KServe decodes
    assert decode_entry(None) is None  # an unknown model name: the registry gives None


def test_decode_v2_json_gives_the_models_own_matrix(model: HousingModel, rows: list[dict[str, Any]]) -> None:
    body = json.dumps(v2_body(rows, names=model.bundle.schema.names, request_id="j1")).encode()
    decoded = model.decode_v2_json(body, "housing")
    assert type(decoded) is DecodedInferRequest and decoded.id == "j1" and decoded.body == body
    X, protocol = model.decode(decoded)
    assert protocol == "v2"
    np.testing.assert_array_equal(X, model.decode({"instances": rows})[0])
    # any other body: None, and the route parses it the careful way
    assert model.decode_v2_json(b'{"inputs": []}', "housing") is None


def test_decode_grpc_gives_the_models_own_matrix_and_refuses_too_many_tensors(
    model: HousingModel, rows: list[dict[str, Any]]
) -> None:
    decoded = model.decode_grpc(_grpc_request(model, rows))
    assert decoded is not None and decoded.from_grpc and decoded.message is not None
    np.testing.assert_array_equal(model.decode(decoded)[0], model.decode({"instances": rows})[0])
    flood = pb.ModelInferRequest(model_name="housing")
    for i in range(model.max_inputs + 1):
        flood.inputs.add(name=f"t{i}", datatype="FP64", shape=[1])
    with pytest.raises(InvalidInput, match=rf"inputs: {model.max_inputs + 1} tensors; the model takes at most"):
        model.decode_grpc(flood)


def test_an_unloaded_model_decodes_nothing_itself(ames_xgb, model: HousingModel, rows: list[dict[str, Any]]) -> None:
    unloaded = HousingModel("housing", ames_xgb)
    body = json.dumps(v2_body(rows, names=model.bundle.schema.names)).encode()
    assert unloaded.decode_v2_json(body, "housing") is None
    assert unloaded.decode_grpc(_grpc_request(model, rows)) is None


class CountingModel(HousingModel):
    """The real model, counting the calls of its decode entry."""

    calls = 0

    def decode_v2_json(self, body: bytes, model_name: str) -> DecodedInferRequest | None:
        CountingModel.calls += 1
        return super().decode_v2_json(body, model_name)


class PlainV2Model(Model):
    """A ``kserve.Model`` without the entry: answers the sum of its one tensor."""

    def __init__(self) -> None:
        super().__init__("plain")
        self.ready = True

    def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None) -> InferResponse:
        total = InferOutput("sum", [1], "FP64", [float(np.sum(payload.inputs[0].data))])
        return InferResponse(payload.id or "p", self.name, [total])


def test_the_v2_rest_route_decodes_through_the_entry(ames_xgb, rows: list[dict[str, Any]]) -> None:
    ours = CountingModel("housing", ames_xgb, max_batch_size=3)
    ours.load()
    registry = ModelRepository()
    registry.update(ours)
    registry.update(PlainV2Model())
    app = FastAPI()
    v2_rest.install(app, CheckedDataPlane(registry))
    with TestClient(app) as client:
        body = v2_body(rows, names=ours.bundle.schema.names, request_id="r1")
        answer = client.post("/v2/models/housing/infer", content=json.dumps(body))
        assert answer.status_code == 200, answer.text
        assert CountingModel.calls == 1
        prices = answer.json()["outputs"][0]["data"]
        np.testing.assert_allclose(prices, ours.predict({"instances": rows})["predictions"])
        plain = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1.5, 2.0]}]}
        answer = client.post("/v2/models/plain/infer", content=json.dumps(plain))
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [3.5] and CountingModel.calls == 1


def test_the_binary_body_check_takes_the_models_limits_from_its_entry(model: HousingModel) -> None:
    """``CheckedDataPlane`` holds a binary V2 body to the rows and tensors the model's entry says it takes
    (4 rows against the fixture's 3: 413 before KServe decodes); a model without the entry gets only the
    body's own checks, and KServe decodes the same body."""
    raw = b"\0" * (8 * 4)
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [4], "datatype": "FP64", "parameters": {"binary_data_size": len(raw)}}]}
    ).encode()
    headers = {INFERENCE_CONTENT_LENGTH_HEADER: str(len(header))}
    registry = ModelRepository()
    registry.update(model)
    registry.update(PlainV2Model())
    dataplane = CheckedDataPlane(registry)
    with pytest.raises(BatchTooLarge, match="batch of 4 rows exceeds the limit of 3"):
        dataplane.decode_inference_request(header + raw, headers, "housing")
    decoded = dataplane.decode_inference_request(header + raw, headers, "plain")
    assert decoded.inputs[0].shape == [4]
