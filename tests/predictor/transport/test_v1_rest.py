"""predictor.transport.v1_rest: our V1 predict route answers every request exactly as KServe's own route does.

Two real KServe REST apps (``RESTServer``'s middlewares, routes and handlers, our guard, handlers and
routes, one ``HousingModel`` on the ames bundle) differ only in our V1 route: one has it first, the
other has it taken out, so KServe's ``V1Endpoints.predict`` answers. Each request gets the same
status, body and headers from both; the metrics count it the same way; KServe's trace line names it
the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from bundle.schema import CATEGORICAL, NUMERIC
from common.series import PREDICTIONS, REQUEST_ERRORS
from predictor.observe.request_logs import ON
from predictor.transport.model import OUT_OF_RANGE_HEADER, HousingModel
from predictor.transport.v1_rest import V1PredictRoute
from testkit.kserve_app import kserve_app

PREDICT = "/v1/models/housing:predict"
CLOUDEVENT = {"ce-id": "1", "ce-source": "t", "ce-type": "t", "ce-specversion": "1.0"}
#: Headers that differ between any two answers.
VARYING = {"date", "x-request-id", "ce-id", "ce-time"}


@pytest.fixture(scope="module")
def clients(model: HousingModel) -> Iterator[tuple[TestClient, TestClient]]:
    # the trace log on: KServe's timing middleware runs, so its trace line can be compared too
    with TestClient(kserve_app(model, True, logs=ON), raise_server_exceptions=False) as ours:
        with TestClient(kserve_app(model, False, logs=ON), raise_server_exceptions=False) as kserve:
            yield ours, kserve


@pytest.fixture(scope="module")
def row(model: HousingModel) -> dict[str, Any]:
    return {
        f.name: (next(iter(f.categories)) if f.kind == CATEGORICAL else (f.min + f.max) / 2 if f.min is not None else 1)
        for f in model.bundle.schema.features
    }


@pytest.fixture(scope="module")
def numeric(model: HousingModel) -> str:
    """A numeric feature with a training range."""
    return next(f.name for f in model.bundle.schema.features if f.kind == NUMERIC and f.max is not None)


def _answer(client: TestClient, path: str, body: bytes, **headers: str) -> tuple[int, Any, dict[str, str]]:
    response = client.post(path, content=body, headers=headers)
    kept = {k: v for k, v in response.headers.items() if k not in VARYING}
    try:
        content: Any = response.json()
    except ValueError:
        content = response.content
    return response.status_code, content, kept


def _cases(row: dict[str, Any], numeric: str) -> list[tuple[str, bytes, dict[str, str]]]:
    return [
        (PREDICT, orjson.dumps({"instances": [row]}), {}),
        (PREDICT, orjson.dumps({"instances": [row, row]}), {"content-type": "application/json"}),
        (PREDICT, orjson.dumps(row), {}),  # one bare object
        (PREDICT, orjson.dumps({"instances": [{**row, numeric: 1e9}]}), {}),  # out of range: flagged
        (PREDICT, orjson.dumps({"instances": [{**row, "nope": 1}]}), {}),  # unknown feature
        (PREDICT, orjson.dumps({"instances": [{**row, numeric: "x"}]}), {}),  # wrong type
        (PREDICT, orjson.dumps({"instances": [row] * 4}), {}),  # above --max_batch_size
        (PREDICT, orjson.dumps({"instances": []}), {}),
        (PREDICT, b"{not json", {}),
        (PREDICT, b"", {}),
        (PREDICT, orjson.dumps({"instances": [row]}), {"content-type": "text/plain"}),  # bytes to the model
        (PREDICT, orjson.dumps({"instances": [row]}), CLOUDEVENT),  # binary CloudEvent
        ("/v1/models/other:predict", orjson.dumps({"instances": [row]}), {}),  # unknown model
    ]


def test_every_answer_is_kserves(clients: tuple[TestClient, TestClient], row: dict[str, Any], numeric: str) -> None:
    ours, kserve = clients
    for path, body, headers in _cases(row, numeric):
        assert _answer(ours, path, body, **headers) == _answer(kserve, path, body, **headers), (
            path,
            body[:60],
            headers,
        )


def test_answers_price_and_flag(
    clients: tuple[TestClient, TestClient], row: dict[str, Any], numeric: str, model: HousingModel
) -> None:
    ours, _ = clients
    payload = {"instances": [{**row, numeric: 1e9}]}
    status, content, headers = _answer(ours, PREDICT, orjson.dumps(payload))
    assert status == 200
    assert content == {"predictions": [float(model.bundle.predict(model.decoder.v1(payload))[0])]}
    assert headers[OUT_OF_RANGE_HEADER] == numeric
    status, content, _ = _answer(ours, PREDICT, orjson.dumps({"instances": [{**row, "nope": 1}]}))
    assert (status, content) == (400, {"error": "nope: unknown feature"})


def test_the_route_serves_v1_predictions_only(model: HousingModel) -> None:
    app = kserve_app(model, True)
    route = app.router.routes[0]
    assert isinstance(route, V1PredictRoute)

    def scope(method: str, path: str) -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}

    assert route.matches(scope("POST", PREDICT))[1]["path_params"] == {"model_name": "housing"}
    for method, path in [("GET", PREDICT), ("POST", "/v1/models/housing:explain"), ("POST", "/v1/models/housing")]:
        assert route.matches(scope(method, path))[0].name == "NONE"


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"model_name": "housing", **labels}) or 0.0


def test_metrics_count_each_prediction_and_error_once(
    clients: tuple[TestClient, TestClient], row: dict[str, Any], model: HousingModel
) -> None:
    ours, _ = clients
    version = model.version
    rows, errors = (
        _count(f"{PREDICTIONS}_total", model_version=version, protocol="v1"),
        _count(f"{REQUEST_ERRORS}_total", model_version=version, protocol="v1", reason="InvalidInput"),
    )
    kserve_seconds = REGISTRY.get_sample_value("request_predict_seconds_count", {"model_name": "housing"}) or 0.0
    ours.post(PREDICT, content=orjson.dumps({"instances": [row, row]}))
    ours.post(PREDICT, content=orjson.dumps({"instances": [{**row, "nope": 1}]}))
    model.metrics.flush()
    assert _count(f"{PREDICTIONS}_total", model_version=version, protocol="v1") == rows + 2
    assert _count(f"{REQUEST_ERRORS}_total", model_version=version, protocol="v1", reason="InvalidInput") == errors + 1
    # KServe's own latency histogram still sees the model call (both requests reached the model)
    assert REGISTRY.get_sample_value("request_predict_seconds_count", {"model_name": "housing"}) == kserve_seconds + 2


def test_kserves_trace_line_keeps_its_name(
    clients: tuple[TestClient, TestClient], row: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ours, kserve = clients
    names = []
    for client in (ours, kserve):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="kserve.trace"):
            client.post(PREDICT, content=orjson.dumps({"instances": [row]}))
        names.append(sorted({r.getMessage().split(":")[0] for r in caplog.records if r.name == "kserve.trace"}))
    assert names[0] == names[1] == ["kserve.io.v1.models.housing"]
