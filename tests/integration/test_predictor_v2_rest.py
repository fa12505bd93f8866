"""The V2 JSON infer route (``predictor.transport.v2_rest``) against a real predictor: answers, edge cases, errors.

What KServe's route did stays: the JSON answer's keys, request ids, parameters, binary outputs on
request, 404 for an unknown model, 400 for a model version, 405 for GET; KServe's own request
metrics still count. Malformed bodies are 400s naming the field (or the position in the JSON),
one WARNING line each, no traceback. CloudEvents requests still reach KServe's route.
"""

from __future__ import annotations

import json
import re
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from predictor.client.v2_request import v2_body
from predictor.core.loaded import load_bundle
from testkit.holdout import holdout, records
from testkit.procs import PredictorProcess, start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"
INFER = f"/v2/models/{NAME}/infer"
BINARY_HINT = "a body with binary tensor data needs the Inference-Header-Content-Length header"


@pytest.fixture(scope="module")
def served(ames_xgb) -> Iterator[tuple[PredictorProcess, httpx.Client, dict[str, Any], list[float], str]]:
    """ames served by a real process; a 3-row body, its V1 predictions, the model version."""
    test, features = holdout("ames")
    rows = records(test[features].iloc[:3])
    bundle = load_bundle(ames_xgb)
    proc = start_predictor(ames_xgb, NAME)
    client = httpx.Client(base_url=proc.http_url, timeout=30)
    try:
        v1 = client.post(f"/v1/models/{NAME}:predict", json={"instances": rows}).raise_for_status().json()
        body = v2_body(rows, names=bundle.schema.names, request_id="req-7")
        yield proc, client, body, v1["predictions"], bundle.manifest.model_version
    finally:
        client.close()
        proc.stop()
    assert "Traceback" not in proc.log()


def _post(client: httpx.Client, body: Any, path: str = INFER, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={"content-type": "application/json", **headers})


def _counted(client: httpx.Client, pattern: str) -> float:
    """The sum of the /metrics samples ``pattern`` (a line regex, the value its group) matches."""
    return sum(float(v) for v in re.findall(pattern, client.get("/metrics").text, re.M))


def _error(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


def test_the_answer_is_kserves_json_with_the_request_id(served) -> None:
    _, client, body, v1, version = served
    r = _post(client, body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    answer = r.json()
    assert list(answer) == ["model_name", "model_version", "id", "parameters", "outputs"]  # KServe's order
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (NAME, version, "req-7")
    assert answer["parameters"] is None
    (out,) = answer["outputs"]
    assert out == {"name": "predictions", "shape": [3], "datatype": "FP64", "parameters": None, "data": v1}


def test_without_an_id_one_is_made(served) -> None:
    _, client, body, _, _ = served
    answer = _post(client, {k: v for k, v in body.items() if k != "id"}).json()
    uuid.UUID(answer["id"])


def test_any_content_type_or_none_is_json(served) -> None:
    """tritonclient sends JSON bodies with no Content-Type at all."""
    _, client, body, v1, _ = served
    raw = json.dumps(body).encode()
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/octet-stream"}):
        r = client.post(INFER, content=raw, headers=headers)
        assert r.status_code == 200, (headers, r.text)
        assert r.json()["outputs"][0]["data"] == v1


def test_parameters_are_taken_and_binary_outputs_are_kept(served) -> None:
    _, client, body, v1, _ = served
    plain = _post(client, {**body, "parameters": {"content_type": "pd", "n": 1, "x": 0.5, "on": True}})
    assert plain.status_code == 200 and plain.json()["outputs"][0]["data"] == v1
    binary = _post(client, {**body, "parameters": {"binary_data_output": True}})
    assert binary.status_code == 200, binary.text
    length = int(binary.headers["inference-header-content-length"])
    header = json.loads(binary.content[:length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8 * len(v1)}
    assert list(struct.unpack(f"<{len(v1)}d", binary.content[length:])) == v1
    asked = _post(client, {**body, "outputs": [{"name": "predictions", "parameters": {"binary_data": True}}]})
    assert int(asked.headers["inference-header-content-length"]) < len(asked.content)
    refused = _post(client, {**body, "parameters": {"a": [1]}})
    assert _error(refused).startswith("parameters.a.float: Input should be a valid number")


def test_out_of_range_rows_are_flagged_in_the_parameters(served) -> None:
    _, client, body, _, _ = served
    far = json.loads(json.dumps(body))
    lot = next(t for t in far["inputs"] if t["name"] == "Lot_Area")
    lot["data"] = [1e9] * len(lot["data"])
    answer = _post(client, far).json()
    assert answer["parameters"] == {"out_of_range": "Lot_Area", "out_of_range_rows": 3}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: b.update(id=3), "id: Input should be a valid string"),
        (lambda b: b.update(inputs="nope"), "inputs: Input should be a valid list"),
        (lambda b: b.pop("inputs"), "inputs: Field required"),
        (lambda b: b["inputs"][0].pop("datatype"), "inputs.0.datatype: Field required"),
        (lambda b: b["inputs"][1].update(data=5), "inputs.1.data: Input should be a valid list"),
        (lambda b: b["inputs"][0].update(name=None), "inputs.0.name: Input should be a valid string"),
        (lambda b: b.update(outputs=[{}]), "outputs.0.name: Field required"),
        (lambda b: b["inputs"].pop(next(i for i, t in enumerate(b["inputs"]) if t["name"] == "Lot_Area")),
         "Lot_Area: required feature is missing"),
        (lambda b: b.update(outputs=[{"name": "other"}]), "outputs.other: unknown output"),
    ],
)  # fmt: skip
def test_a_body_with_a_wrong_or_missing_field_is_a_400_naming_it(served, edit, message: str) -> None:
    _, client, body, _, _ = served
    bad = json.loads(json.dumps(body))
    edit(bad)
    assert _error(_post(client, bad)).startswith(message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "body: not valid JSON at position 1 ("),
        (b'{"inputs": [1, NaN]}', "body: not valid JSON at position 15 ("),
        (b'{"inputs": []} trailing', "body: not valid JSON at position 15 (unexpected content after document)"),
        (b'{"inputs": "\xff"}', "body: not valid JSON (not UTF-8 text)"),
    ],
)
def test_a_body_that_is_not_json_says_where(served, content: bytes, message: str) -> None:
    _, client, _, _, _ = served
    got = _error(_post(client, content))
    assert got.startswith(message) and got.endswith(BINARY_HINT)


def test_an_empty_body_or_one_that_is_no_object(served) -> None:
    _, client, _, _, _ = served
    assert _error(_post(client, b"")) == "body: Field required"
    assert _error(_post(client, b"[1, 2]")) == "body: Input should be an object"


def test_unknown_model_version_and_method_are_kserves_answers(served) -> None:
    _, client, body, _, _ = served
    assert _error(_post(client, body, "/v2/models/nope/infer"), 404) == "Model with name nope does not exist."
    # the body is read first, as FastAPI did for KServe's route
    assert _error(_post(client, b"{", "/v2/models/nope/infer")).startswith("body: not valid JSON")
    versioned = _post(client, body, f"/v2/models/{NAME}/versions/1/infer")
    assert _error(versioned) == "model_version: this server serves one model version; omit the version"
    assert _error(client.get(INFER), 405) == f"GET is not allowed on {INFER}; use POST"


def test_client_errors_are_one_warning_line_with_the_request_id_and_counted(served) -> None:
    proc, client, body, _, _ = served
    errors = r'^housing_request_errors_total\{[^}]*protocol="v2"[^}]*reason="RequestValidationError"[^}]*\} (\S+)$'
    before = _counted(client, errors)
    r = _post(client, {**body, "id": 3}, **{"x-request-id": "v2-rest-bad-1"})
    assert r.status_code == 400 and r.headers["x-request-id"] == "v2-rest-bad-1"
    assert _counted(client, errors) == before + 1
    lines = [line for line in proc.log().splitlines() if "request_id=v2-rest-bad-1" in line]
    assert len(lines) == 1 and " WARNING " in lines[0] and "400 RequestValidationError" in lines[0], lines


def test_kserves_request_metrics_still_count(served) -> None:
    _, client, body, _, _ = served
    predicted = rf'^request_predict_seconds_count\{{[^}}]*model_name="{NAME}"[^}}]*\}} (\S+)$'
    before = _counted(client, predicted)
    for _ in range(3):
        assert _post(client, body).status_code == 200
    assert _counted(client, predicted) == before + 3


def test_cloudevents_requests_still_reach_kserves_route(served) -> None:
    _, client, body, v1, _ = served
    ce = {"ce-specversion": "1.0", "ce-source": "test", "ce-type": "infer", "ce-id": "e-1"}
    r = _post(client, body, **ce)
    assert r.status_code == 200, r.text
    assert r.headers["ce-type"] == "io.kserve.inference.response"
    assert r.json()["outputs"][0]["data"] == v1
    structured = _post(client, body, **{"content-type": "application/cloudevents+json"})
    assert structured.json()["data"]["outputs"][0]["data"] == v1
