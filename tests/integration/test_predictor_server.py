"""The predictor as a real process (``python -m predictor``) over real HTTP and gRPC."""

from __future__ import annotations

import json
import re
import shutil

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from bundle.manifest import bundle_digest, load_manifest
from bundle.schema import CATEGORICAL
from predictor.client.v2_request import v2_body
from predictor.core.loaded import load_bundle
from testkit.holdout import BOSTON_ROW as SEED_BOSTON
from testkit.holdout import holdout, records
from testkit.procs import start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"
MAX_BATCH = 500


def _served(bundle, args: list[str] | None = None):
    """(the predictor process, an HTTP client of it, the bundle loaded here), stopped after."""
    proc = start_predictor(bundle, NAME, args)
    client = httpx.Client(base_url=proc.http_url, timeout=30)
    yield proc, client, load_bundle(bundle)
    client.close()
    proc.stop()


@pytest.fixture(scope="module")
def boston(boston_xgb):
    yield from _served(boston_xgb, ["--max_batch_size", str(MAX_BATCH)])


@pytest.fixture(scope="module")
def ames(ames_xgb):
    yield from _served(ames_xgb)


@pytest.fixture(scope="module")
def boston_grpc(boston):
    proc = boston[0]
    channel = grpc.insecure_channel(proc.grpc_target)
    yield GRPCInferenceServiceStub(channel)
    channel.close()


def _v2_columns(row: dict, schema) -> dict:
    return v2_body([row], names=schema.names, request_id="req-42")


# -- health and metadata ---------------------------------------------------------------------
def test_health_and_readiness(boston):
    _, client, _ = boston
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{NAME}/ready").json() == {"name": NAME, "ready": True}
    assert client.get(f"/v1/models/{NAME}").json() == {"name": NAME, "ready": True}
    assert client.get("/v1/models").json() == {"models": [NAME]}
    assert client.get("/v2/models/nope/ready").status_code == 404


def test_v2_metadata_one_input_per_feature(ames):
    _, client, bundle = ames
    meta = client.get(f"/v2/models/{NAME}").json()
    assert meta["name"] == NAME
    assert [i["name"] for i in meta["inputs"]] == bundle.schema.names
    for spec, feat in zip(meta["inputs"], bundle.schema.features, strict=True):
        assert spec["shape"] == [-1]
        if feat.kind == CATEGORICAL:
            assert spec["datatype"] == "BYTES"
        else:
            assert spec["datatype"] in ("FP64", "INT64", "BOOL")
    assert meta["outputs"] == [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]


# -- V1 ----------------------------------------------------------------------------------------
def test_v1_seed_payload_gets_a_sensible_price(boston):
    _, client, _ = boston
    r = client.post(f"/v1/models/{NAME}:predict", json=SEED_BOSTON)
    assert r.status_code == 200, r.text
    (price,) = r.json()["predictions"]
    assert 20.0 < price < 35.0  # MEDV, thousands of dollars
    both = client.post(f"/v1/models/{NAME}:predict", json={"instances": [SEED_BOSTON, list(SEED_BOSTON.values())]})
    assert both.json()["predictions"] == pytest.approx([price, price])


def _ames_holdout(client, verb: str, n: int):
    """The first ``n`` ames holdout rows (a frame, and as V1 instances) and the answer of ``:verb`` to them."""
    test, features = holdout("ames")
    frame = test[features].iloc[:n]
    rows = records(test[features])[:n]
    r = client.post(f"/v1/models/{NAME}:{verb}", json={"instances": rows})
    assert r.status_code == 200, r.text
    return frame, rows, r.json()


def test_v1_ames_holdout_batch_matches_in_process(ames):
    _, client, bundle = ames
    frame, _, answer = _ames_holdout(client, "predict", 300)
    expected = bundle.predict(bundle.schema.encode_frame(frame))
    np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-12)


def test_v1_explain_contributions_sum_to_prediction(ames):
    _, client, bundle = ames
    _, rows, body = _ames_holdout(client, "explain", 3)
    assert body["scale"] == "log"
    preds = client.post(f"/v1/models/{NAME}:predict", json={"instances": rows}).json()["predictions"]
    for exp, price in zip(body["explanations"], preds, strict=True):
        assert list(exp["contributions"]) == bundle.schema.names
        total = sum(exp["contributions"].values()) + exp["bias"]
        assert total == pytest.approx(exp["prediction"], abs=1e-4)
        assert np.exp(exp["prediction"]) == pytest.approx(price, rel=1e-5)


# -- V2 REST -----------------------------------------------------------------------------------
def test_v2_rest_columns_and_matrix(boston):
    _, client, bundle = boston
    v1 = client.post(f"/v1/models/{NAME}:predict", json=SEED_BOSTON).json()["predictions"][0]
    r = client.post(f"/v2/models/{NAME}/infer", json=_v2_columns(SEED_BOSTON, bundle.schema))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-42"
    assert body["model_name"] == NAME
    assert body["model_version"] == bundle.manifest.model_version
    (out,) = body["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("predictions", "FP64", [1])
    assert out["data"][0] == pytest.approx(v1, rel=1e-12)
    matrix = {"inputs": [{"name": "X", "shape": [2, 13], "datatype": "FP32", "data": [list(SEED_BOSTON.values())] * 2}]}
    r = client.post(f"/v2/models/{NAME}/infer", json=matrix)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == pytest.approx([v1, v1], rel=1e-6)
    assert r.json()["id"]  # generated when the client sends none


def test_v2_rest_ames_categoricals_as_bytes(ames):
    _, client, bundle = ames
    test, features = holdout("ames")
    row = records(test[features])[0]
    r = client.post(f"/v2/models/{NAME}/infer", json=_v2_columns(row, bundle.schema))
    assert r.status_code == 200, r.text
    v1 = client.post(f"/v1/models/{NAME}:predict", json=row).json()["predictions"][0]
    assert r.json()["outputs"][0]["data"][0] == pytest.approx(v1, rel=1e-12)
    matrix = {"inputs": [{"name": "X", "shape": [1, len(features)], "datatype": "FP64", "data": [0.0] * len(features)}]}
    r = client.post(f"/v2/models/{NAME}/infer", json=matrix)
    assert r.status_code == 400
    assert "categorical" in r.json()["error"]


def test_out_of_range_is_served_flagged_and_counted(boston):
    _, client, bundle = boston
    row = {f.name: f.quantiles[5] for f in bundle.schema.features}
    ok = client.post(f"/v1/models/{NAME}:predict", json=row)
    assert ok.status_code == 200 and "x-housing-out-of-range" not in ok.headers
    far = {**row, "CRIM": 1e6, "RM": -3.0}
    r = client.post(f"/v1/models/{NAME}:predict", json=far)
    assert r.status_code == 200
    assert r.headers["x-housing-out-of-range"] == "CRIM,RM"
    r = client.post(f"/v2/models/{NAME}/infer", json=_v2_columns(far, bundle.schema))
    assert r.json()["parameters"] == {"out_of_range": "CRIM,RM", "out_of_range_rows": 1}
    metrics = client.get("/metrics").text
    version = bundle.manifest.model_version
    assert _sample(metrics, "housing_out_of_range_total", feature="CRIM", model_version=version) >= 2


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({k: v for k, v in SEED_BOSTON.items() if k != "RM"}, "RM: required feature is missing"),
        ({**SEED_BOSTON, "ROOMS": 3}, "ROOMS: unknown feature"),
        ({**SEED_BOSTON, "TAX": "high"}, "TAX: must be a number"),
        ({"instances": [SEED_BOSTON, {**SEED_BOSTON, "LSTAT": None}]}, "instances[1].LSTAT: must not be null"),
        ({"instances": "x"}, "instances"),
        ({"instances": [[1, 2]]}, "expected 13"),
    ],
)
@pytest.mark.parametrize("verb", ["predict", "explain"])
def test_v1_client_errors_are_400(boston, body, fragment, verb):
    _, client, _ = boston
    r = client.post(f"/v1/models/{NAME}:{verb}", json=body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def test_batch_above_the_limit_is_413(boston):
    _, client, bundle = boston
    r = client.post(f"/v1/models/{NAME}:predict", json={"instances": [SEED_BOSTON] * (MAX_BATCH + 1)})
    assert r.status_code == 413, r.text
    assert f"exceeds the limit of {MAX_BATCH}" in r.json()["error"]
    body = v2_body([SEED_BOSTON] * (MAX_BATCH + 1), names=bundle.schema.names)
    r = client.post(f"/v2/models/{NAME}/infer", json=body)
    assert r.status_code == 413, r.text
    assert "(--max_batch_size)" in r.json()["error"]


def test_v1_non_finite_and_garbage_are_400(boston):
    _, client, _ = boston
    text = json.dumps(SEED_BOSTON).replace("6.575", "NaN")
    r = client.post(f"/v1/models/{NAME}:predict", content=text, headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = client.post(f"/v1/models/{NAME}:predict", content=b"\xff\x00", headers={"content-type": "text/plain"})
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda b: b["inputs"].pop(5), "RM: required feature is missing"),
        (lambda b: b["inputs"][5].update(data=["x"]), "RM: must be a number"),
        (lambda b: b["inputs"][5].update(datatype="BYTES"), "RM: numeric feature must be sent as"),
        (lambda b: b["inputs"][5].update(shape=[3]), "RM: shape [3] does not match"),
        (lambda b: b["inputs"].append({"name": "Z", "shape": [1], "datatype": "FP64", "data": [1]}), "Z: unknown"),
        (lambda b: b["inputs"][0].pop("datatype"), "datatype"),
        (lambda b: b.update(inputs="nope"), "inputs"),
    ],
)
def test_v2_client_errors_are_400(boston, mutate, fragment):
    _, client, bundle = boston
    body = _v2_columns(SEED_BOSTON, bundle.schema)
    mutate(body)
    r = client.post(f"/v2/models/{NAME}/infer", json=body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


# -- gRPC --------------------------------------------------------------------------------------
def _grpc_request(row: dict, schema, request_id: str = "g-1") -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=NAME, id=request_id)
    for f in schema.features:
        tensor = req.inputs.add(name=f.name, datatype="BYTES" if f.kind == CATEGORICAL else "FP64", shape=[1])
        if f.kind == CATEGORICAL:
            tensor.contents.bytes_contents.append(str(row[f.name]).encode())
        else:
            tensor.contents.fp64_contents.append(float(row[f.name]))
    return req


def test_grpc_health_metadata_and_infer(boston, boston_grpc):
    _, client, bundle = boston
    stub = boston_grpc
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=NAME)).ready
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=NAME))
    assert [i.name for i in meta.inputs] == bundle.schema.names
    assert list(meta.inputs[0].shape) == [-1]
    resp = stub.ModelInfer(_grpc_request(SEED_BOSTON, bundle.schema))
    assert resp.id == "g-1"
    assert resp.model_version == bundle.manifest.model_version
    out = resp.outputs[0]
    assert (out.name, out.datatype, list(out.shape)) == ("predictions", "FP64", [1])
    values = list(out.contents.fp64_contents) or np.frombuffer(resp.raw_output_contents[0], dtype=np.float64).tolist()
    v1 = client.post(f"/v1/models/{NAME}:predict", json=SEED_BOSTON).json()["predictions"][0]
    assert values[0] == pytest.approx(v1, rel=1e-12)


def test_grpc_raw_matrix(boston, boston_grpc):
    _, client, _ = boston
    X = np.array([list(SEED_BOSTON.values())] * 3, dtype=np.float64)
    req = pb.ModelInferRequest(model_name=NAME, id="raw")
    req.inputs.add(name="X", datatype="FP64", shape=[3, 13])
    req.raw_input_contents.append(X.tobytes())
    resp = boston_grpc.ModelInfer(req)
    values = np.frombuffer(resp.raw_output_contents[0], dtype=np.float64)
    v1 = client.post(f"/v1/models/{NAME}:predict", json=SEED_BOSTON).json()["predictions"][0]
    np.testing.assert_allclose(values, [v1] * 3, rtol=1e-12)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda r: r.inputs[5].contents.fp64_contents.append(float("nan")), "RM"),
        (lambda r: r.inputs[5].contents.fp64_contents.__setitem__(0, float("inf")), "RM: must be a finite number"),
        (lambda r: r.inputs.add(name="EXTRA", datatype="FP64", shape=[1]).contents.fp64_contents.append(1), "EXTRA"),
        (lambda r: r.inputs[5].MergeFrom(pb.ModelInferRequest.InferInputTensor(datatype="BYTES")), "RM"),
    ],
)
def test_grpc_client_errors_are_invalid_argument(boston, boston_grpc, mutate, fragment):
    _, _, bundle = boston
    req = _grpc_request(SEED_BOSTON, bundle.schema)
    mutate(req)
    with pytest.raises(grpc.RpcError) as info:
        boston_grpc.ModelInfer(req)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in info.value.details()


# -- metrics -----------------------------------------------------------------------------------
def _sample(text: str, metric: str, **labels: str) -> float:
    total = 0.0
    found = False
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    if not found:
        raise AssertionError(f"{metric}{labels} not in /metrics")
    return total


def test_metrics_labelled_by_model_version(boston):
    _, client, bundle = boston
    version = bundle.manifest.model_version
    before = client.get("/metrics").text
    n0 = _sample(before, "housing_predictions_total", model_name=NAME, model_version=version, protocol="v1")
    client.post(f"/v1/models/{NAME}:predict", json={"instances": [SEED_BOSTON] * 7})
    bad = client.post(f"/v1/models/{NAME}:predict", json={"instances": [{**SEED_BOSTON, "RM": "six"}]})
    assert bad.status_code == 400
    text = client.get("/metrics").text
    assert _sample(text, "housing_predictions_total", model_name=NAME, model_version=version, protocol="v1") == n0 + 7
    assert _sample(text, "housing_prediction_value_count", model_version=version) >= 7
    assert _sample(text, "housing_request_errors_total", model_version=version) >= 1
    client.post(f"/v1/models/{NAME}:predict", json={"instances": [SEED_BOSTON] * 400})
    text = client.get("/metrics").text
    # one row repeated is nothing like the training distribution
    assert _sample(text, "housing_drift_score", model_name=NAME, model_version=version) > 1.0
    assert _sample(text, "housing_drift_psi", model_version=version, feature="__prediction__") > 1.0
    assert _sample(text, "housing_model_info", model_version=version, flavor="xgboost") == 1
    assert re.search(r'^request_predict_seconds_count\{model_name="housing"\}', text, re.M)  # KServe's own


def test_every_inference_request_is_counted_by_protocol_and_code(boston, boston_grpc):
    """housing_requests_total: one per request (not per row), whatever it was answered with."""
    _, client, bundle = boston
    version = bundle.manifest.model_version

    def count(protocol: str, code: str) -> float:
        try:
            text = client.get("/metrics").text
            return _sample(text, "housing_requests_total", model_version=version, protocol=protocol, code=code)
        except AssertionError:
            return 0.0

    before = {(p, c): count(p, c) for p in ("v1", "v2", "grpc") for c in ("200", "400")}
    client.post(f"/v1/models/{NAME}:predict", json={"instances": [SEED_BOSTON] * 5})
    client.post(f"/v1/models/{NAME}:predict", json={"instances": [{**SEED_BOSTON, "RM": "six"}]})
    client.post(f"/v2/models/{NAME}/infer", json=_v2_columns(SEED_BOSTON, bundle.schema))
    boston_grpc.ModelInfer(_grpc_request(SEED_BOSTON, bundle.schema))
    bad = _grpc_request(SEED_BOSTON, bundle.schema)
    bad.inputs[5].contents.fp64_contents.append(float("nan"))
    with pytest.raises(grpc.RpcError):
        boston_grpc.ModelInfer(bad)
    after = {key: count(*key) for key in before}
    assert {k: after[k] - before[k] for k in after} == {
        ("v1", "200"): 1,
        ("v1", "400"): 1,
        ("v2", "200"): 1,
        ("v2", "400"): 0,
        ("grpc", "200"): 1,
        ("grpc", "400"): 1,
    }


# -- loading: digests, pinning, storage URIs ---------------------------------------------------
def test_tampered_bundle_is_refused(boston_xgb, tmp_path):
    bad = tmp_path / "bundle"
    shutil.copytree(boston_xgb, bad)
    with open(bad / "model.ubj", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RuntimeError) as info:
        start_predictor(bad, NAME, timeout=60)
    log = str(info.value)
    assert "exited with 2" in log
    assert "model.ubj: sha256" in log and "does not match" in log


def test_pinned_digest(boston_xgb):
    digest = bundle_digest(boston_xgb)
    with pytest.raises(RuntimeError, match="does not match the pinned"):
        start_predictor(boston_xgb, NAME, ["--bundle_digest", "0" * 64])
    with pytest.raises(RuntimeError, match="does not match the pinned"):
        start_predictor(boston_xgb, NAME, env={"HOUSING_BUNDLE_DIGEST": "f" * 64})
    proc = start_predictor(f"file://{boston_xgb}", NAME, ["--bundle_digest", digest])
    try:
        r = httpx.post(f"{proc.http_url}/v1/models/{NAME}:predict", json=SEED_BOSTON)
        assert r.status_code == 200
        assert load_manifest(boston_xgb).model_version in httpx.get(f"{proc.http_url}/metrics").text
    finally:
        proc.stop()


# -- housing predict ---------------------------------------------------------------------------
def test_housing_predict_cli_v1_and_v2(boston, tmp_path):
    from typer.testing import CliRunner

    from housing.cli import app

    proc, _, _ = boston
    runner = CliRunner()
    payload = tmp_path / "row.json"
    payload.write_text(json.dumps(SEED_BOSTON))
    r1 = runner.invoke(app, ["predict", str(payload), "--url", proc.http_url])
    assert r1.exit_code == 0, r1.output
    price = json.loads(r1.stdout)["predictions"][0]
    assert 20 < price < 35
    r2 = runner.invoke(app, ["predict", json.dumps(SEED_BOSTON), "--url", proc.http_url, "--protocol", "v2"])
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.stdout)["outputs"][0]["data"][0] == pytest.approx(price, rel=1e-12)
    r3 = runner.invoke(app, ["predict", '{"RM": 1}', "--url", proc.http_url])
    assert r3.exit_code == 1
    assert "required feature is missing" in r3.stdout
