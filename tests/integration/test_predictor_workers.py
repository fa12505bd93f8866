"""``python -m predictor --workers N``: one ``/metrics`` summed over the REST workers (and the
gRPC parent), the guard and our REST handling in every worker, the metrics directory removed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from predictor.client.v2_request import v2_body
from predictor.core.loaded import load_bundle
from testkit.holdout import BOSTON_ROW as SEED
from testkit.poll import poll
from testkit.procs import PredictorProcess, start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"
KEY = "workers-test-key-0123456789"
V1_REQUESTS, V2_REQUESTS, GRPC_REQUESTS, BAD_REQUESTS = 240, 30, 12, 5


def _fresh_connections(url: str, n: int, send) -> list[httpx.Response]:
    """``n`` requests, each on its own connection, 8 at a time (so every worker accepts some)."""

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30, headers={"connection": "close"}) as client:
            return send(client)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert found, f"{name}{labels} not in /metrics"
    return sum(found)


def _per_process(metrics_dir: Path, name: str, **labels: str) -> dict[str, float]:
    """``name`` per process (pid → value, non-zero only), read from each process's own counter file."""
    out = {}
    for path in metrics_dir.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):
            for s in family.samples:
                if s.name == name and labels.items() <= s.labels.items() and s.value:
                    out[path.stem.split("_")[1]] = out.get(path.stem.split("_")[1], 0.0) + s.value
    return out


def _start(bundle_dir: Path, workers: int, tmp: Path, *extra: str) -> PredictorProcess:
    """A predictor whose temp dir is ``tmp``, returned once every REST worker serves."""
    proc = start_predictor(bundle_dir, NAME, ["--workers", str(workers), *extra], env={"TMPDIR": str(tmp)})
    if workers > 1:  # ready means one worker answered; the others may still be importing
        started = poll(lambda: proc.log().count("Application startup complete"), lambda n: n >= workers)
        assert started == workers, proc.log()[-3000:]
    return proc


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_are_the_sum_over_workers(boston_xgb, tmp_path, workers):
    bundle = load_bundle(boston_xgb)
    version = bundle.manifest.model_version
    tmp = tmp_path / "tmp"  # the predictor's temp dir: where its private metrics directory goes
    tmp.mkdir()
    proc = _start(boston_xgb, workers, tmp)
    try:
        v1 = _fresh_connections(
            proc.http_url, V1_REQUESTS, lambda c: c.post(f"/v1/models/{NAME}:predict", json={"instances": [SEED]})
        )
        v2_json = v2_body([SEED], names=bundle.schema.names, request_id="w")
        v2 = _fresh_connections(proc.http_url, V2_REQUESTS, lambda c: c.post(f"/v2/models/{NAME}/infer", json=v2_json))
        bad = _fresh_connections(
            proc.http_url,
            BAD_REQUESTS,
            lambda c: c.post(f"/v1/models/{NAME}:predict", json={"instances": [{**SEED, "RM": "six"}]}),
        )
        assert {r.status_code for r in v1 + v2} == {200}
        assert {r.status_code for r in bad} == {400}
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

        with grpc.insecure_channel(proc.grpc_target) as channel:  # served by the parent process
            stub = GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(model_name=NAME)
            for name in bundle.schema.names:
                request.inputs.add(name=name, datatype="FP64", shape=[1]).contents.fp64_contents.append(
                    float(SEED[name])
                )
            for _ in range(GRPC_REQUESTS):
                stub.ModelInfer(request, timeout=30)

        dirs = list(tmp.glob("housing-metrics-*"))
        if workers == 1:
            assert dirs == []  # one process: its own registry, nothing shared
        else:
            assert len(dirs) == 1
            per_worker = _per_process(dirs[0], "housing_predictions_total", protocol="v1")
            assert len(per_worker) == workers and sum(per_worker.values()) == V1_REQUESTS, per_worker

        total = V1_REQUESTS + V2_REQUESTS + GRPC_REQUESTS
        labels = {"model_name": NAME, "model_version": version}
        for _ in range(4):  # whichever worker answers the scrape, it is the sum over all of them
            scrape = _fresh_connections(proc.http_url, 1, lambda c: c.get("/metrics"))[0]
            assert scrape.status_code == 200
            s = _samples(scrape.text)
            for protocol, n in (("v1", V1_REQUESTS), ("v2", V2_REQUESTS), ("grpc", GRPC_REQUESTS)):
                assert _value(s, "housing_predictions_total", protocol=protocol, **labels) == n
                assert _value(s, "housing_request_duration_seconds_count", protocol=protocol, **labels) == n
            assert _value(s, "housing_prediction_value_count", **labels) == total
            assert _value(s, "housing_prediction_value_bucket", le="+Inf", **labels) == total
            assert _value(s, "housing_request_errors_total", protocol="v1", **labels) == BAD_REQUESTS
            # KServe's own: it times the rejected requests too
            assert _value(s, "request_predict_seconds_count", model_name=NAME) == total + BAD_REQUESTS
            assert _value(s, "housing_model_info", **labels) == 1
            assert _value(s, "housing_drift_window_rows", **labels) == total  # the union of the windows
            assert _value(s, "housing_drift_score", **labels) > 1.0  # one row repeated: drifted
    finally:
        assert proc.stop() == 0
    assert list(tmp.iterdir()) == []  # the metrics directory went with the server
    if workers > 1:
        assert proc.log().count("started REST worker") == workers


def test_guard_and_rest_handling_reach_every_worker(boston_xgb, tmp_path):
    keyfile = tmp_path / "keys"
    keyfile.write_text(KEY + "\n")
    bundle = load_bundle(boston_xgb)
    # 40 keyless requests from one address: past the failed-authentication limit (tested on its own)
    proc = _start(boston_xgb, 2, tmp_path, "--api_keys_file", str(keyfile), "--auth_failure_burst", "1000")
    try:
        body = {"instances": [SEED]}
        refused = _fresh_connections(proc.http_url, 40, lambda c: c.post(f"/v1/models/{NAME}:predict", json=body))
        assert {r.status_code for r in refused} == {401}
        auth = {"x-api-key": KEY}
        ok = _fresh_connections(
            proc.http_url, 40, lambda c: c.post(f"/v1/models/{NAME}:predict", json=body, headers=auth)
        )
        assert {r.status_code for r in ok} == {200}
        # V2BodyMiddleware: JSON without a content type (what tritonclient sends) is JSON
        raw = httpx.Request("POST", "/", json=v2_body([SEED], names=bundle.schema.names)).content
        untyped = _fresh_connections(
            proc.http_url,
            20,
            lambda c: c.post(
                f"/v2/models/{NAME}/infer", content=raw, headers={**auth, "content-type": "application/octet-stream"}
            ),
        )
        assert {r.status_code for r in untyped} == {200}, untyped[0].text
        # predictor.transport.v2_rest: our V2 JSON route in every worker
        # (KServe's says "InferenceRequest.inputs: …; bytes: …")
        invalid = _fresh_connections(
            proc.http_url, 20, lambda c: c.post(f"/v2/models/{NAME}/infer", json={"inputs": "nope"}, headers=auth)
        )
        assert {r.json()["error"] for r in invalid} == {"inputs: Input should be a valid list"}
        # CheckedDataPlane: a binary body whose header length is nonsense is a 400 naming it
        binary = _fresh_connections(
            proc.http_url,
            20,
            lambda c: c.post(
                f"/v2/models/{NAME}/infer",
                content=b"{not json" + bytes(8),
                headers={**auth, "inference-header-content-length": "9"},
            ),
        )
        assert {r.status_code for r in binary} == {400}
        assert all("are not valid JSON" in r.json()["error"] for r in binary), binary[0].text
        metrics = _fresh_connections(proc.http_url, 1, lambda c: c.get("/metrics"))[0]  # open path
        assert metrics.status_code == 200
        s = _samples(metrics.text)
        assert _value(s, "housing_requests_refused_total", reason="Unauthenticated") == 40
        assert _value(s, "housing_predictions_total", protocol="v1") == 40
        assert _value(s, "housing_predictions_total", protocol="v2") == 20
        assert proc.log().count("with the guard and merged /metrics") == 2
        (metrics_dir,) = tmp_path.glob("housing-metrics-*")
        refused_by = _per_process(metrics_dir, "housing_requests_refused_total", reason="Unauthenticated")
        served_by = _per_process(metrics_dir, "housing_predictions_total")
        assert len(refused_by) == 2 and len(served_by) == 2, (refused_by, served_by)  # both workers guarded
    finally:
        proc.stop()


def test_rate_limit_with_several_workers_refuses_to_start(boston_xgb):
    with pytest.raises(RuntimeError) as info:
        start_predictor(boston_xgb, NAME, ["--rate_limit", "10", "--workers", "2"])
    assert "exited with 2" in str(info.value) and "--workers 1" in str(info.value)
