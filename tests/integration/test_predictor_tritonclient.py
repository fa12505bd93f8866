"""Conformance judged by a client nobody here wrote: NVIDIA's ``tritonclient`` against a real predictor.

HTTP with JSON tensors, with the binary tensor extension and mixed; health and metadata; gRPC.
Every prediction must equal what our own V2 JSON request (:func:`predictor.client.v2_request.v2_body`)
gets for the same rows. Malformed binary bodies (which tritonclient never sends) are 400s naming
the header or field, never a 500.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from predictor.client.v2_request import v2_body
from predictor.core.loaded import LoadedBundle, load_bundle
from testkit.holdout import holdout, records
from testkit.procs import PredictorProcess, start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"
OUTPUT = "predictions"
N_ROWS = 7
NUMPY_TYPES = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


@dataclass
class Served:
    proc: PredictorProcess
    bundle: LoadedBundle
    frame: pd.DataFrame
    metadata: dict[str, Any]  # GET /v2/models/{name}, as our server answers it
    expected: list[float]  # our own V2 JSON request's predictions for the frame's rows

    @property
    def http_host(self) -> str:
        return f"127.0.0.1:{self.proc.http_port}"


@pytest.fixture(scope="module")
def served(ames_xgb) -> Iterator[Served]:
    """ames (numbers and categories) served by a real process; the expected predictions from our V2 JSON."""
    test, features = holdout("ames")
    frame = test[features].iloc[:N_ROWS].reset_index(drop=True)
    bundle = load_bundle(ames_xgb)
    proc = start_predictor(ames_xgb, NAME)
    try:
        with httpx.Client(base_url=proc.http_url, timeout=30) as client:
            metadata = client.get(f"/v2/models/{NAME}").raise_for_status().json()
            body = v2_body(records(frame), names=bundle.schema.names)
            answer = client.post(f"/v2/models/{NAME}/infer", json=body)
        assert answer.status_code == 200, answer.text
        (out,) = answer.json()["outputs"]
        assert len(out["data"]) == N_ROWS
        yield Served(proc, bundle, frame, metadata, out["data"])
    finally:
        proc.stop()
    assert "Traceback" not in proc.log()


def _column(frame: pd.DataFrame, name: str, datatype: str) -> np.ndarray:
    """One feature as the numpy array a tritonclient user would send for the metadata's datatype."""
    if datatype == "BYTES":
        return np.array([str(v).encode() for v in frame[name]], dtype=np.object_)
    return frame[name].to_numpy().astype(NUMPY_TYPES[datatype])


def _http_inputs(served: Served, binary: bool) -> list[thttp.InferInput]:
    inputs = []
    for spec in served.metadata["inputs"]:
        tensor = thttp.InferInput(spec["name"], [len(served.frame)], spec["datatype"])
        tensor.set_data_from_numpy(_column(served.frame, spec["name"], spec["datatype"]), binary_data=binary)
        inputs.append(tensor)
    return inputs


# -- HTTP --------------------------------------------------------------------------------------
def test_http_health_and_metadata(served: Served) -> None:
    client = thttp.InferenceServerClient(served.http_host)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(NAME)
        assert not client.is_model_ready("nope")
        meta = client.get_model_metadata(NAME)
        assert meta["name"] == NAME
        assert [i["name"] for i in meta["inputs"]] == served.bundle.schema.names
        assert {i["datatype"] for i in meta["inputs"]} == {"BYTES", "INT64", "FP64"}
        assert meta["outputs"] == [{"name": OUTPUT, "datatype": "FP64", "shape": [-1]}]
        assert client.get_server_metadata()["name"]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("binary_inputs", "binary_outputs"),
    [(False, False), (True, True), (True, False), (False, True), (True, None)],
    ids=["json", "binary", "binary-in-json-out", "json-in-binary-out", "binary-default-outputs"],
)
def test_http_infer_equals_our_v2_json(served: Served, binary_inputs: bool, binary_outputs: bool | None) -> None:
    """tritonclient's ``infer()``; ``json`` is the case KServe alone refused (no Content-Type on the body).

    ``binary_outputs`` None: no output named, so tritonclient asks for ``binary_data_output``.
    """
    client = thttp.InferenceServerClient(served.http_host)
    try:
        outputs = None if binary_outputs is None else [thttp.InferRequestedOutput(OUTPUT, binary_data=binary_outputs)]
        result = client.infer(NAME, _http_inputs(served, binary_inputs), outputs=outputs, request_id="triton-1")
    finally:
        client.close()
    response = result.get_response()
    assert response["id"] == "triton-1"
    assert response["model_version"] == served.bundle.manifest.model_version
    (out,) = response["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == (OUTPUT, "FP64", [N_ROWS])
    assert ("data" in out) is (binary_outputs is False)  # binary unless JSON was asked for
    assert result.as_numpy(OUTPUT).tolist() == served.expected


def test_http_client_error_names_the_feature(served: Served) -> None:
    client = thttp.InferenceServerClient(served.http_host)
    try:
        inputs = [i for i in _http_inputs(served, binary=False) if i.name() != "Lot_Area"]
        with pytest.raises(InferenceServerException) as info:
            client.infer(NAME, inputs)
    finally:
        client.close()
    assert info.value.status() == "400"
    assert "Lot_Area: required feature is missing" in info.value.message()


# -- gRPC --------------------------------------------------------------------------------------
#: tritonclient.grpc registers its own copy of the ``inference`` protos in protobuf's default pool,
#: which KServe's (imported by the other tests of the session) already hold: "duplicate symbol
#: 'inference.ServerLiveRequest'". So its client runs in a process of its own.
GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as tgrpc

target, name, output, columns = json.loads(sys.stdin.read())
dtypes = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}
client = tgrpc.InferenceServerClient(target)
try:
    meta = client.get_model_metadata(name, as_json=True)
    inputs = []
    for spec in meta["inputs"]:
        values = columns[spec["name"]]
        if spec["datatype"] == "BYTES":
            array = np.array([v.encode() for v in values], dtype=np.object_)
        else:
            array = np.array(values, dtype=dtypes[spec["datatype"]])
        tensor = tgrpc.InferInput(spec["name"], [len(values)], spec["datatype"])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(name, inputs, outputs=[tgrpc.InferRequestedOutput(output)], request_id="triton-g")
    print(json.dumps({
        "live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready(name),
        "inputs": [i["name"] for i in meta["inputs"]], "id": result.get_response().id,
        "predictions": result.as_numpy(output).tolist(),
    }))
finally:
    client.close()
"""


def test_grpc_health_metadata_and_infer_equal_our_v2_json(served: Served) -> None:
    columns = {c: [v if isinstance(v, int | float) else str(v) for v in served.frame[c].tolist()] for c in served.frame}
    payload = json.dumps([served.proc.grpc_target, NAME, OUTPUT, columns])
    run = subprocess.run(
        [sys.executable, "-c", GRPC_CLIENT], input=payload, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout)
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["inputs"] == served.bundle.schema.names
    assert got["id"] == "triton-g"
    assert got["predictions"] == served.expected


# -- malformed binary bodies: 400 naming the header or field -----------------------------------
def _binary_body(served: Served) -> tuple[dict[str, Any], bytes]:
    """A valid binary request: every input's bytes after the JSON header (what tritonclient sends)."""
    inputs, raw = [], b""
    for spec in served.metadata["inputs"]:
        values = _column(served.frame, spec["name"], spec["datatype"])
        if spec["datatype"] == "BYTES":
            data = b"".join(len(v).to_bytes(4, "little") + v for v in values)
        else:
            data = values.tobytes()
        inputs.append({**spec, "shape": [len(values)], "parameters": {"binary_data_size": len(data)}})
        raw += data
    return {"inputs": inputs}, raw


def _post_binary(served: Served, header: dict[str, Any], raw: bytes, length: str | None) -> httpx.Response:
    """POST the JSON header then ``raw``; ``length`` is the Inference-Header-Content-Length (None: none)."""
    headers = {} if length is None else {"Inference-Header-Content-Length": length}
    with httpx.Client(base_url=served.proc.http_url, timeout=30) as client:
        return client.post(f"/v2/models/{NAME}/infer", content=json.dumps(header).encode() + raw, headers=headers)


def _json_length(header: dict[str, Any]) -> str:
    return str(len(json.dumps(header).encode()))


def test_hand_built_binary_body_equals_our_v2_json(served: Served) -> None:
    header, raw = _binary_body(served)
    answer = _post_binary(served, header, raw, _json_length(header))
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == served.expected


def _no_inputs(header: dict[str, Any], raw: bytes) -> tuple[dict[str, Any], bytes, str | None]:
    del header["inputs"]
    return header, raw, _json_length(header)


def _size_as_text(header: dict[str, Any], raw: bytes) -> tuple[dict[str, Any], bytes, str | None]:
    header["inputs"][0]["parameters"]["binary_data_size"] = "8"
    return header, raw, _json_length(header)


def _size_too_small(header: dict[str, Any], raw: bytes) -> tuple[dict[str, Any], bytes, str | None]:
    numeric = next(i for i in header["inputs"] if i["datatype"] != "BYTES")
    numeric["parameters"]["binary_data_size"] -= 1
    return header, raw, _json_length(header)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda h, raw: (h, raw, "twelve"), "Inference-Header-Content-Length: must be a non-negative integer"),
        (lambda h, raw: (h, raw, str(10**6)), "Inference-Header-Content-Length: 1000000 is more than the body's"),
        (lambda h, raw: (h, raw[:-1], _json_length(h)), "follow the JSON header"),
        (lambda h, raw: (h, raw, None), "a body with binary tensor data needs the Inference-Header-Content-Length"),
        (_no_inputs, "inputs: must be a list of tensors"),
        (_size_as_text, ".parameters.binary_data_size: must be a non-negative integer"),
        (_size_too_small, ".parameters.binary_data_size: 55 bytes, but shape [7] of"),
    ],
    ids=["length-not-a-number", "length-beyond-body", "binary-cut-short", "no-header", "no-inputs", "size-as-text",
         "size-not-the-shape"],
)  # fmt: skip
def test_malformed_binary_bodies_are_400_naming_the_field(served: Served, edit, fragment: str) -> None:
    header, raw, length = edit(*_binary_body(served))
    answer = _post_binary(served, header, raw, length)
    assert answer.status_code == 400, answer.text
    assert fragment in answer.json()["error"]
    assert served.proc.alive()
