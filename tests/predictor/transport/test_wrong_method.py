"""A request with the wrong HTTP method gets 405 naming the allowed one, on V1 and V2 alike.

Before: ``GET /v1/models/housing:predict`` reached KServe's ``GET /v1/models/{name}`` and answered
404 "Model with name housing:predict does not exist"; V2's 405s had no ``Allow`` header.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from predictor.transport.model import HousingModel
from testkit.kserve_app import kserve_app


@pytest.fixture(scope="module")
def client(model: HousingModel) -> Iterator[TestClient]:
    with TestClient(kserve_app(model), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/models/housing:predict", "POST"),
        ("PUT", "/v1/models/housing:predict", "POST"),
        ("GET", "/v1/models/housing:explain", "POST"),
        ("DELETE", "/v1/models/unknown:predict", "POST"),
        ("GET", "/v2/models/housing/infer", "POST"),
        ("GET", "/v2/models/housing/versions/1/infer", "POST"),
        ("POST", "/v2/models/housing/ready", "GET"),
        ("POST", "/v1/models/housing", "GET"),
    ],
)
def test_405_names_the_allowed_method(client: TestClient, method: str, path: str, allow: str) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == allow
    assert answer.json() == {"error": f"{method} is not allowed on {path}; use {allow}"}
    assert answer.headers["x-request-id"]


def test_right_methods_still_answer(client: TestClient) -> None:
    assert client.get("/v1/models/housing").status_code == 200
    assert client.get("/v2/models/housing/ready").status_code == 200
    assert client.post("/v1/models/housing:predict", json={"instances": [{}]}).status_code == 400  # a named field
