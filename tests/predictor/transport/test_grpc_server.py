"""predictor.transport.grpc_server: our gRPC server answers every ModelInfer exactly as KServe's own does.

Two real ``grpc.aio`` servers on loopback serve the same ``HousingModel`` (ames bundle) through the
same data plane: ours (:class:`GuardedGRPCServer`: our interceptors and :class:`CheckedServicer`, whose
plain requests are decoded straight from the protobuf) and KServe's ``GRPCServer`` (its servicer and
interceptors, ``InferRequest.from_grpc`` for every request). Each request, good or bad, gets the same
status code, the same message and the same response from both; the model's metrics and KServe's
latency histograms count a request on ours as they count it on KServe's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from kserve.model_repository import ModelRepository
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from prometheus_client import REGISTRY

from bundle.schema import CATEGORICAL, NUMERIC
from common.net import free_port
from common.series import PREDICTIONS
from predictor.codec.v2_binary import CheckedDataPlane
from predictor.codec.v2_grpc import decode_grpc
from predictor.guard.policy import Guard, GuardConfig
from predictor.transport.grpc_server import CallGuard, GuardedGRPCServer
from predictor.transport.model import HousingModel


class Servers:
    """Both servers on one event loop in a thread; ``call`` sends a request to one: (code, message, response)."""

    def __init__(self, model: HousingModel) -> None:
        registry = ModelRepository()
        registry.update(model)
        dataplane = CheckedDataPlane(registry)
        extension = ModelRepositoryExtension(registry)
        self.ports = {"ours": free_port(), "kserve": free_port()}
        kwargs = {"grpc_max_send_message_length": 2**23, "grpc_max_receive_message_length": 2**23}
        self.servers = {
            "ours": GuardedGRPCServer(
                self.ports["ours"],
                dataplane,
                extension,
                kwargs,
                calls=CallGuard(Guard(GuardConfig()), count_error=lambda protocol, reason: None),
            ),
            "kserve": GRPCServer(self.ports["kserve"], dataplane, extension, kwargs),
        }
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks = [asyncio.run_coroutine_threadsafe(s.start(2), self.loop) for s in self.servers.values()]
        self.channels = {k: grpc.insecure_channel(f"127.0.0.1:{p}") for k, p in self.ports.items()}
        for channel in self.channels.values():
            grpc.channel_ready_future(channel).result(timeout=30)
        self.stubs = {k: pb_grpc.GRPCInferenceServiceStub(c) for k, c in self.channels.items()}

    def call(self, which: str, request: pb.ModelInferRequest) -> tuple[Any, str, Any]:
        try:
            response = self.stubs[which].ModelInfer(request, timeout=30)
        except grpc.RpcError as exc:
            return exc.code(), exc.details(), None
        if not request.id:
            response.id = ""  # made up by the server: a random uuid
        return grpc.StatusCode.OK, "", response

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        for server in self.servers.values():
            asyncio.run_coroutine_threadsafe(server._server.stop(0), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def servers(model: HousingModel) -> Iterator[Servers]:
    both = Servers(model)
    yield both
    both.close()


def _tensor(request: pb.ModelInferRequest, name: str, datatype: str, values: list[Any], shape: list[int] | None = None):
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape or [len(values)])
    if datatype == "BYTES":
        tensor.contents.bytes_contents.extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
    elif datatype == "INT64":
        tensor.contents.int64_contents.extend(values)
    elif datatype == "FP32":
        tensor.contents.fp32_contents.extend(values)
    elif datatype == "BOOL":
        tensor.contents.bool_contents.extend(values)
    else:
        tensor.contents.fp64_contents.extend(values)
    return tensor


def _request(model: HousingModel, rows: list[dict[str, Any]], request_id: str = "r1", **overrides: Any):
    """One tensor per feature of ``rows`` (BYTES for categoricals, FP64 else);
    ``overrides``: name → (datatype, values), datatype None leaves the tensor out."""
    request = pb.ModelInferRequest(model_name="housing", id=request_id)
    for feature in model.bundle.schema.features:
        if feature.name in overrides:
            datatype, values = overrides[feature.name]
            if datatype is None:
                continue  # left out
        else:
            datatype = "BYTES" if feature.kind == CATEGORICAL else "FP64"
            values = [row[feature.name] for row in rows]
        _tensor(request, feature.name, datatype, values)
    return request


@pytest.fixture(scope="module")
def row(model: HousingModel) -> dict[str, Any]:
    return {
        f.name: (
            next(iter(f.categories))
            if f.kind == CATEGORICAL
            else float((f.min + f.max) / 2)
            if f.min is not None
            else 1.0
        )
        for f in model.bundle.schema.features
    }


def _cases(model: HousingModel, row: dict[str, Any]) -> list[tuple[str, pb.ModelInferRequest]]:
    features = model.bundle.schema.features
    numeric = next(f for f in features if f.kind == NUMERIC and f.max is not None)
    categorical = next(f for f in features if f.kind == CATEGORICAL)
    optional = next((f for f in features if not f.required and f.default is not None), None)
    required = next(f for f in features if f.required)
    cases = [
        ("one row", _request(model, [row])),
        ("one row, no id", _request(model, [row], request_id="")),
        ("three rows", _request(model, [row, row, row])),
        ("out of range: flagged", _request(model, [{**row, numeric.name: numeric.max * 1e6}])),
        ("INT64 numeric", _request(model, [row], **{numeric.name: ("INT64", [int(numeric.max)])})),
        ("FP32 numeric", _request(model, [row], **{numeric.name: ("FP32", [1.5])})),
        ("unknown category", _request(model, [row], **{categorical.name: ("BYTES", [b"no-such-category"])})),
        ("category not UTF-8", _request(model, [row], **{categorical.name: ("BYTES", [b"\xff\xfe"])})),
        ("numeric sent as BYTES", _request(model, [row], **{numeric.name: ("BYTES", [b"12"])})),
        ("categorical sent as FP64", _request(model, [row], **{categorical.name: ("FP64", [1.0])})),
        ("NaN", _request(model, [row], **{numeric.name: ("FP64", [float("nan")])})),
        ("required feature missing", _request(model, [row], **{required.name: (None, [])})),
        ("above --max_batch_size", _request(model, [row] * 4)),
        ("rows differ", _request(model, [row, row], **{numeric.name: ("FP64", [1.0])})),
        ("empty tensors", _request(model, [], request_id="e")),
        ("no inputs", pb.ModelInferRequest(model_name="housing", id="n")),
        ("unknown model", pb.ModelInferRequest(model_name="other", id="u")),
    ]
    if optional is not None:
        cases.append(("optional feature left out", _request(model, [row], **{optional.name: (None, [])})))
    unknown = _request(model, [row])
    _tensor(unknown, "no_such_feature", "FP64", [1.0])
    cases.append(("unknown tensor", unknown))
    duplicate = _request(model, [row])
    _tensor(duplicate, numeric.name, "FP64", [1.0])
    cases.append(("tensor twice", duplicate))
    wrong_shape = _request(model, [row])
    wrong_shape.inputs[0].shape[:] = [1, 1]
    cases.append(("shape [1, 1]", wrong_shape))
    shape_mismatch = _request(model, [row])
    shape_mismatch.inputs[0].shape[:] = [2]
    cases.append(("shape says 2 rows, 1 value", shape_mismatch))
    with_output = _request(model, [row])
    with_output.outputs.add(name="predictions")
    cases.append(("requested output", with_output))
    bad_output = _request(model, [row])
    bad_output.outputs.add(name="nope")
    cases.append(("unknown requested output", bad_output))
    with_parameters = _request(model, [row])
    with_parameters.parameters["content_type"].string_param = "pd"
    cases.append(("request parameters", with_parameters))
    versioned = _request(model, [row])
    versioned.model_version = "7"
    cases.append(("model version", versioned))
    raw = _request(model, [row])
    raw.raw_input_contents.append(b"\x00" * 8)
    cases.append(("raw contents for one of many inputs", raw))
    matrix = pb.ModelInferRequest(model_name="housing", id="m")
    _tensor(matrix, "input-0", "FP64", [1.0] * len(features), shape=[1, len(features)])
    cases.append(("one 2-D tensor", matrix))
    return cases


def test_every_answer_is_kserves(servers: Servers, model: HousingModel, row: dict[str, Any]) -> None:
    decoded = 0
    for label, request in _cases(model, row):
        ours, kserve = servers.call("ours", request), servers.call("kserve", request)
        assert ours == kserve, label
        decoded += decode_grpc(model.decoder, request) is not None
    assert decoded >= 5  # the good plain requests took the direct path


def test_the_direct_path_is_taken_and_refuses_nothing_itself(model: HousingModel, row: dict[str, Any]) -> None:
    numeric = next(f for f in model.bundle.schema.features if f.kind == NUMERIC)
    one = decode_grpc(model.decoder, _request(model, [row]))
    assert one is not None and one.from_grpc and one.matrix.shape == (1, len(model.bundle.schema.features))
    assert (one.matrix == model.decoder.v1({"instances": [row]})).all()
    three = decode_grpc(model.decoder, _request(model, [row, row, row]))
    assert three is not None and (three.matrix == model.decoder.v1({"instances": [row] * 3})).all()
    # anything it does not read exactly: KServe's way, which writes the message
    assert decode_grpc(model.decoder, _request(model, [row], **{numeric.name: ("BYTES", [b"1"])})) is None
    assert decode_grpc(model.decoder, _request(model, [row] * 4)) is None


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"model_name": "housing", **labels}) or 0.0


def test_metrics_count_a_request_on_ours_as_on_kserves(servers: Servers, model: HousingModel, row: dict[str, Any]):
    rows = f"{PREDICTIONS}_total"
    labels = {"model_version": model.version, "protocol": "grpc"}
    counts = []
    for which in ("ours", "kserve"):
        before = (_sample(rows, **labels), _sample("request_predict_seconds_count"))
        assert servers.call(which, _request(model, [row, row]))[0] == grpc.StatusCode.OK
        after = (_sample(rows, **labels), _sample("request_predict_seconds_count"))
        counts.append((after[0] - before[0], after[1] - before[1]))
    assert counts[0] == counts[1] == (2.0, 1.0)
