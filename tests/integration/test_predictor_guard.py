"""The guard on real predictor processes: API keys, rotation, rate limits, body limits, quiet logs."""

from __future__ import annotations

import json
import re

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from common.config import API_KEY_ENV
from common.series import REQUEST_ERRORS_TOTAL, REQUESTS_REFUSED_TOTAL, REQUESTS_TOTAL
from predictor.client.v2_request import v2_body
from predictor.core.loaded import load_bundle
from testkit.holdout import BOSTON_ROW as ROW
from testkit.poll import poll
from testkit.procs import start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"
PREDICT = f"/v1/models/{NAME}:predict"
INFER = f"/v2/models/{NAME}/infer"
KEY, OTHER_KEY = "k-7f3a9c-first", "k-51d2e0-second"
MAX_BODY = 200_000
MAX_BATCH = 50


def _total(metrics: str, series: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(series + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "api-keys"
    path.write_text(f"# keys of the test\n{KEY}\n")
    return path


@pytest.fixture(scope="module")
def guarded(boston_xgb, keyfile):
    # many tests here send bad keys from one address: the failed-authentication limit is tested on its own
    proc = start_predictor(boston_xgb, NAME, ["--api_keys_file", str(keyfile), "--auth_failure_burst", "10000"])
    client = httpx.Client(base_url=proc.http_url, timeout=30)
    try:
        yield proc, client
    finally:
        client.close()
        proc.stop()


def _grpc_request(request_id: str = "g") -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=NAME, id=request_id)
    req.inputs.add(name="X", datatype="FP64", shape=[1, len(ROW)]).contents.fp64_contents.extend(
        float(v) for v in ROW.values()
    )
    return req


# -- API keys ----------------------------------------------------------------------------------
def test_no_key_is_401_with_a_challenge(guarded):
    proc, client = guarded
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = client.post(PREDICT, json=ROW, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert client.post(INFER, json=v2_body([ROW])).status_code == 401
    assert client.get(f"/v2/models/{NAME}").status_code == 401
    assert "wrong" not in proc.log()


def test_x_api_key_and_bearer_are_accepted(guarded):
    _, client = guarded
    a = client.post(PREDICT, json=ROW, headers={"X-API-Key": KEY})
    b = client.post(INFER, json=v2_body([ROW]), headers={"Authorization": f"Bearer {KEY}"})
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    assert b.json()["outputs"][0]["data"][0] == pytest.approx(a.json()["predictions"][0], rel=1e-12)


def test_health_readiness_and_metrics_stay_open(guarded):
    _, client = guarded
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{NAME}/ready", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_grpc_needs_the_key_but_health_does_not(guarded):
    proc, _ = guarded
    with grpc.insecure_channel(proc.grpc_target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name=NAME)).ready
        for metadata in ((), (("x-api-key", "wrong"),)):
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(_grpc_request(), metadata=metadata)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = stub.ModelInfer(_grpc_request(), metadata=(("authorization", f"Bearer {KEY}"),))
        assert ok.outputs[0].name == "predictions"


def test_refusals_are_counted_apart_from_request_errors(guarded):
    _, client = guarded
    before = client.get("/metrics").text
    client.post(PREDICT, json=ROW)
    after = client.get("/metrics").text
    labels = {"protocol": "v1", "reason": "Unauthenticated"}
    assert _total(after, REQUESTS_REFUSED_TOTAL, **labels) == _total(before, REQUESTS_REFUSED_TOTAL, **labels) + 1
    assert _total(after, REQUEST_ERRORS_TOTAL) == _total(before, REQUEST_ERRORS_TOTAL)


def test_keys_rotate_without_a_restart(guarded, keyfile):
    _, client = guarded
    keyfile.write_text(f"{OTHER_KEY}\n")

    def status(key: str) -> int:
        return client.post(PREDICT, json=ROW, headers={"X-API-Key": key}).status_code

    assert poll(lambda: status(OTHER_KEY), lambda s: s == 200, timeout=30) == 200
    assert status(KEY) == 401
    keyfile.write_text(f"{KEY}\n{OTHER_KEY}\n")
    assert poll(lambda: status(KEY), lambda s: s == 200, timeout=30) == 200


def test_housing_predict_passes_the_key(guarded, monkeypatch):
    from typer.testing import CliRunner

    from housing.cli import app

    proc, _ = guarded
    runner = CliRunner()
    refused = runner.invoke(app, ["predict", json.dumps(ROW), "--url", proc.http_url])
    assert refused.exit_code == 1 and "missing API key" in refused.stdout
    ok = runner.invoke(app, ["predict", json.dumps(ROW), "--url", proc.http_url], env={API_KEY_ENV: KEY})
    assert ok.exit_code == 0, ok.output
    assert KEY not in ok.output
    v2 = runner.invoke(app, ["predict", json.dumps(ROW), "--url", proc.http_url, "-p", "v2", "--api-key", KEY])
    assert v2.exit_code == 0, v2.output


def test_rollout_traffic_passes_the_key(guarded, boston_xgb):
    from rollout.traffic import TrafficGenerator, reference_of

    proc, _ = guarded
    with TrafficGenerator(proc.http_url, NAME, reference_of(boston_xgb), rps=50, api_key=KEY) as traffic:
        poll(lambda: sum(traffic.codes.values()), lambda n: n >= 5, timeout=30)
    assert set(traffic.codes) == {200}, traffic.codes


def test_a_key_file_without_keys_refuses_to_start(boston_xgb, tmp_path):
    empty = tmp_path / "keys"
    empty.write_text("# none yet\n")
    with pytest.raises(RuntimeError) as info:
        start_predictor(boston_xgb, NAME, ["--api_keys_file", str(empty)])
    assert "exited with 2" in str(info.value) and "no API key" in str(info.value)


def test_rate_limit_with_several_rest_workers_refuses_to_start(boston_xgb, keyfile):
    """Keys work with workers (tests/integration/test_predictor_workers.py); per-worker buckets would not."""
    with pytest.raises(RuntimeError) as info:
        start_predictor(boston_xgb, NAME, ["--api_keys_file", str(keyfile), "--rate_limit", "5", "--workers", "2"])
    assert "exited with 2" in str(info.value) and "--workers 1" in str(info.value)


# -- rate limits -------------------------------------------------------------------------------
def test_rate_limit_is_429_with_retry_after_per_client(boston_xgb, keyfile):
    keyfile.write_text(f"{KEY}\n{OTHER_KEY}\n")
    proc = start_predictor(
        boston_xgb, NAME, ["--api_keys_file", str(keyfile), "--rate_limit", "1", "--rate_burst", "3"]
    )
    try:
        with httpx.Client(base_url=proc.http_url, timeout=30) as client:
            codes = [client.post(PREDICT, json=ROW, headers={"X-API-Key": KEY}).status_code for _ in range(12)]
            assert codes[:3] == [200, 200, 200] and 429 in codes, codes
            r = client.post(PREDICT, json=ROW, headers={"X-API-Key": KEY})
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            assert "rate limit" in r.json()["error"]
            assert client.post(PREDICT, json=ROW, headers={"X-API-Key": OTHER_KEY}).status_code == 200
            assert client.get("/v2/health/ready").status_code == 200  # probes are never limited
            metrics = client.get("/metrics").text
            version = load_bundle(boston_xgb).manifest.model_version
            limited = _total(metrics, REQUESTS_REFUSED_TOTAL, model_version=version, reason="RateLimited")
            assert limited == codes.count(429) + 1
        with grpc.insecure_channel(proc.grpc_target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                for _ in range(12):
                    stub.ModelInfer(_grpc_request(), metadata=(("x-api-key", KEY),))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert int(dict(info.value.trailing_metadata())["retry-after"]) >= 1
        # a rate-limit refusal counts as 429 on both transports (a busy server's is 503: not the gate's to judge)
        with httpx.Client(base_url=proc.http_url, timeout=30) as client:
            for _ in range(50):  # a call is counted once its status is sent: after its client saw it
                metrics = client.get("/metrics").text
                if _total(metrics, REQUESTS_TOTAL, protocol="grpc", code="429"):
                    break
        assert _total(metrics, REQUESTS_TOTAL, protocol="v1", code="429") == codes.count(429) + 1
        assert _total(metrics, REQUESTS_TOTAL, protocol="grpc", code="429") == 1
        assert not _total(metrics, REQUESTS_TOTAL, protocol="grpc", code="503")
    finally:
        proc.stop()


# -- logs under abuse --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plain(boston_xgb):
    proc = start_predictor(boston_xgb, NAME, ["--max_batch_size", str(MAX_BATCH), "--max_body_bytes", str(MAX_BODY)])
    try:
        yield proc
    finally:
        proc.stop()


def _malformed(client: httpx.Client) -> list[tuple[int, str]]:
    """30 client mistakes of every kind: KServe's own rejections, ours, and the middleware's."""
    json_headers = {"content-type": "application/json"}
    big = b'{"instances": [' + b"1," * MAX_BODY + b"1]}"
    sends = [
        lambda: client.post(PREDICT, content=b"{not json", headers=json_headers),
        lambda: client.post(INFER, content=b"{not json", headers=json_headers),
        lambda: client.post(INFER, json={"inputs": "nope"}),
        lambda: client.post(INFER, json={"id": 3}),
        lambda: client.post(PREDICT, json={**ROW, "RM": "six"}),
        lambda: client.post(PREDICT, json={"instances": [ROW] * (MAX_BATCH + 1)}),
        lambda: client.post(PREDICT, content=big, headers=json_headers),
        lambda: client.post(PREDICT, content=iter([big[:100_000], big[100_000:]]), headers=json_headers),
        lambda: client.post("/v1/models/nope:predict", json=ROW),
        lambda: client.get("/v3/nothing-here"),
    ]
    return [((r := sends[i % len(sends)]()).status_code, r.text) for i in range(30)]


def test_thirty_malformed_requests_are_thirty_warning_lines_and_no_traceback(plain):
    with httpx.Client(base_url=plain.http_url, timeout=30) as client:
        before = client.get("/metrics").text
        answers = _malformed(client)
        after = client.get("/metrics").text
    statuses = [s for s, _ in answers]
    assert all(400 <= s < 500 for s in statuses), answers
    assert {400, 404, 413} <= set(statuses), statuses
    log = plain.log()
    assert "Traceback" not in log, log[-3000:]
    warnings = [line for line in log.splitlines() if " WARNING " in line and "client error:" in line]
    assert len(warnings) == 30, "\n".join(warnings)
    assert not [line for line in log.splitlines() if " ERROR " in line]
    for line in warnings:
        assert re.search(r"client error: (GET|POST) /\S+ 4\d\d \w+ request_id=\S+", line), line
    errors = _total(after, REQUEST_ERRORS_TOTAL) - _total(before, REQUEST_ERRORS_TOTAL)
    assert errors == 30
    for reason in ("InvalidInput", "RequestValidationError", "BatchTooLarge", "PayloadTooLarge", "ModelNotFound"):
        assert _total(after, REQUEST_ERRORS_TOTAL, reason=reason) > 0, reason


def test_body_above_the_limit_is_413_before_it_is_parsed(plain):
    big = b"x" * (MAX_BODY + 1)  # not JSON at all: a parser would have said 400
    with httpx.Client(base_url=plain.http_url, timeout=30) as client:
        for content in (big, iter([big[: MAX_BODY // 2], big[MAX_BODY // 2 :]])):
            r = client.post(INFER, content=content, headers={"content-type": "application/json"})
            assert r.status_code == 413, r.text
            assert "--max_body_bytes" in r.json()["error"]
            assert r.headers["x-request-id"]
        ok = client.post(PREDICT, json=ROW, headers={"x-request-id": "trace-me-42"})
        assert ok.status_code == 200
        bad = client.post(PREDICT, json={**ROW, "RM": None}, headers={"x-request-id": "trace-me-43"})
        assert bad.headers["x-request-id"] == "trace-me-43"
    assert "request_id=trace-me-43" in plain.log()


def test_grpc_client_errors_are_quiet_and_counted(plain):
    with httpx.Client(base_url=plain.http_url, timeout=30) as client:
        before = _total(client.get("/metrics").text, REQUEST_ERRORS_TOTAL, protocol="grpc")
        with grpc.insecure_channel(plain.grpc_target) as channel:
            stub = GRPCInferenceServiceStub(channel)
            bad = pb.ModelInferRequest(model_name=NAME, id="bad-grpc")
            bad.inputs.add(name="X", datatype="FP64", shape=[1, 3]).contents.fp64_contents.extend([1, 2, 3])
            for request in (bad, pb.ModelInferRequest(model_name="nope", id="nope")):
                with pytest.raises(grpc.RpcError) as info:
                    stub.ModelInfer(request)
                assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        after = _total(client.get("/metrics").text, REQUEST_ERRORS_TOTAL, protocol="grpc")
    assert after == before + 2
    log = plain.log()
    assert "Traceback" not in log
    assert re.search(
        r"WARNING .*client error: gRPC /inference.GRPCInferenceService/ModelInfer 400 InvalidInput "
        r"request_id=bad-grpc",
        log,
    )
