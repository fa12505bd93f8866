"""V1 ``:explain`` answers with none of the request's headers (KServe 0.21 echoed them all back).

KServe's ``DataPlane.explain`` starts its response headers from the request's own headers dict, so a
client's ``Authorization``, ``X-API-Key`` and ``Cookie`` (and ``Host``, ``Connection``…) came back in
the answer, where caches, proxies and client logs keep them. :class:`ServingDataPlane` keeps what the
model and KServe set, and the request id (the client's ``x-request-id``, or the payload log's).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from predictor.guard.policy import GuardConfig
from predictor.transport.model import HousingModel
from testkit.holdout import BOSTON_ROW
from testkit.kserve_app import kserve_app

EXPLAIN = "/v1/models/housing:explain"
KEY = "explain-headers-test-key-0123456789"
SECRETS = {"x-api-key": KEY, "cookie": "session=s3cr3t", "x-custom-secret": "do-not-echo"}


@pytest.fixture(scope="module")
def client(boston_xgb, tmp_path_factory) -> Iterator[TestClient]:
    keys = tmp_path_factory.mktemp("explain-keys") / "keys"
    keys.write_text(KEY + "\n")
    model = HousingModel("housing", boston_xgb)
    model.load()
    with TestClient(kserve_app(model, guard=GuardConfig(api_keys_file=str(keys))), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("auth", [{"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}])
def test_explain_echoes_no_request_header(client: TestClient, auth: dict[str, str]) -> None:
    sent = {**SECRETS, **auth, "x-request-id": "explain-1"}
    answer = client.post(EXPLAIN, json={"instances": [BOSTON_ROW]}, headers=sent)
    assert answer.status_code == 200, answer.text
    assert answer.json()["explanations"]
    echoed = {k: v for k, v in answer.headers.items() if k in sent and k != "x-request-id"}
    leaked = {k for k, v in answer.headers.items() if v in {KEY, f"Bearer {KEY}", "session=s3cr3t", "do-not-echo"}}
    print(f"\n:explain answer headers: {sorted(answer.headers)}")
    assert echoed == {} and leaked == set(), echoed
    assert "host" not in answer.headers and "user-agent" not in answer.headers
    assert answer.headers["x-request-id"] == "explain-1"  # the request id still comes back
    assert answer.headers["content-type"] == "application/json"


def test_predict_echoes_none_either(client: TestClient) -> None:
    answer = client.post("/v1/models/housing:predict", json={"instances": [BOSTON_ROW]}, headers=SECRETS)
    assert answer.status_code == 200, answer.text
    assert not set(answer.headers) & set(SECRETS), dict(answer.headers)
