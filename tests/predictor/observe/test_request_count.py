"""predictor.observe.request_count: every inference request counted by protocol and status code.

REST through a real KServe app (RESTServer's middlewares, routes and exception handlers, our
guard and routes, one HousingModel): answers, client errors, and a model that raises — KServe's
generic handler answers 500 further out, and the count says 500 too. gRPC through a real
``grpc.aio`` server with the interceptor outermost: OK, an abort, an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import orjson
import pytest
from grpc import aio
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from bundle.schema import CATEGORICAL
from common.series import REQUESTS_TOTAL
from predictor.guard.policy import Guard, GuardConfig
from predictor.observe.request_count import GRPC_TO_HTTP, grpc_status, inference_protocol
from predictor.transport.grpc_server import CallGuard
from predictor.transport.model import HousingModel
from rollout.error_gate import error_rate
from testkit.kserve_app import kserve_app

V1 = "/v1/models/housing:predict"
V2 = "/v2/models/housing/infer"


def test_only_inference_paths_are_counted():
    assert inference_protocol(V1) == "v1"
    assert inference_protocol("/v1/models/housing:explain") == "explain"
    assert inference_protocol(V2) == "v2"
    assert inference_protocol("/v2/models/housing/versions/3/infer") == "v2"
    for path in ("/v2/health/ready", "/v2/models/housing", "/v1/models/housing", "/metrics", "/"):
        assert inference_protocol(path) is None


def test_grpc_codes_count_as_the_http_codes_gateways_answer():
    assert grpc_status(None) == 200
    assert grpc_status(grpc.StatusCode.INVALID_ARGUMENT) == 400
    assert grpc_status(grpc.StatusCode.UNAVAILABLE) == 503
    assert grpc_status(grpc.StatusCode.INTERNAL) == grpc_status(grpc.StatusCode.UNKNOWN) == 500
    assert all(400 <= code < 600 for status, code in GRPC_TO_HTTP.items() if status is not grpc.StatusCode.OK)


@pytest.fixture(scope="module")
def client(model: HousingModel) -> Iterator[TestClient]:
    with TestClient(kserve_app(model, guard=GuardConfig(max_body_bytes=4096)), raise_server_exceptions=False) as client:
        yield client


def _codes(model: HousingModel, protocol: str) -> dict[str, float]:
    out = {}
    for code in ("200", "400", "404", "413", "500"):
        labels = {"model_name": "housing", "model_version": model.version, "protocol": protocol, "code": code}
        out[code] = REGISTRY.get_sample_value(REQUESTS_TOTAL, labels) or 0.0
    return out


def _row(model: HousingModel) -> dict[str, Any]:
    return {
        f.name: (next(iter(f.categories)) if f.kind == CATEGORICAL else (f.min + f.max) / 2 if f.min is not None else 1)
        for f in model.bundle.schema.features
    }


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def test_rest_requests_are_counted_once_each_by_status_server_errors_included(
    client: TestClient, model: HousingModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = _row(model)
    before = _codes(model, "v1")
    assert client.post(V1, content=orjson.dumps({"instances": [row, row]})).status_code == 200  # 2 rows, 1 request
    assert client.post(V1, content=orjson.dumps({"instances": [{**row, "nope": 1}]})).status_code == 400
    assert client.post(V1, content=b"x" * 5000).status_code == 413  # refused by the guard, before the app
    client.get("/v2/health/ready")  # not an inference request
    with monkeypatch.context() as patched:  # the model fails inside: KServe's generic handler answers
        patched.setattr(model, "predict", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        assert client.post(V1, content=orjson.dumps({"instances": [row]})).status_code == 500
    after = _codes(model, "v1")
    assert _delta(after, before) == {"200": 1, "400": 1, "413": 1, "500": 1}
    # the gate's definition over these counts: failed ÷ requests, not ÷ rows
    assert error_rate(_delta(after, before)) == 0.25


def test_v2_requests_are_counted_too(client: TestClient, model: HousingModel) -> None:
    before = _codes(model, "v2")
    body = {"inputs": [{"name": "nope", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    assert client.post(V2, content=orjson.dumps(body)).status_code == 400
    assert _delta(_codes(model, "v2"), before) == {"400": 1}


def test_grpc_calls_are_counted_by_the_code_they_end_with() -> None:
    """Through the one wrapper around every gRPC call (:class:`CallGuard`), on a real ``grpc.aio`` server."""
    counted: list[tuple[str, int]] = []

    async def infer(request: bytes, context: aio.ServicerContext) -> bytes:
        if request == b"abort":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input")
        if request == b"raise":
            raise RuntimeError("boom")
        return b"ok"

    def handler(name: str) -> Any:
        return grpc.unary_unary_rpc_method_handler(infer)

    call_guard = CallGuard(Guard(GuardConfig()), lambda protocol, reason: None, lambda p, c: counted.append((p, c)))

    class Handlers(grpc.GenericRpcHandler):
        def service(self, details: Any) -> Any:
            return call_guard.wrap(details.method, handler(details.method))

    async def run() -> list[str]:
        server = aio.server()
        server.add_generic_rpc_handlers((Handlers(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        outcomes = []
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for method, body in (
                    ("ModelInfer", b"fine"),
                    ("ModelInfer", b"abort"),
                    ("ModelInfer", b"raise"),
                    ("ServerReady", b"fine"),
                ):
                    call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
                    try:
                        await call(body)
                        outcomes.append("OK")
                    except aio.AioRpcError as exc:
                        outcomes.append(exc.code().name)
        finally:
            await server.stop(None)
        return outcomes

    outcomes = asyncio.run(run())
    assert outcomes == ["OK", "INVALID_ARGUMENT", "INTERNAL", "OK"]  # KServe's mapping: INTERNAL
    assert counted == [("grpc", 200), ("grpc", 400), ("grpc", 500)]  # the health call is not counted
