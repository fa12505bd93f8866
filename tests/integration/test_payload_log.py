"""The payload log of a real predictor: rows equal to what clients sent and got, in a directory and in a real
MinIO, from every REST worker, written at SIGTERM; an unreachable destination at start only drops rows."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferRequest
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from common.net import free_port
from predictor.client.v2_request import v2_body
from predictor.observe.payload_rows import PREDICTION, REASON, REQUEST_ID, ROW, STATUS, expand
from testkit.holdout import BOSTON_ROW as SEED
from testkit.poll import poll
from testkit.procs import start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"
#: Hours of flushing: only the exit (SIGTERM) writes, so the test proves it does.
NEVER = ["--payload_log_flush_seconds", "3600"]


def _rows(tables: list[pa.Table]) -> dict[tuple[str, int], dict]:
    table = pa.concat_tables([expand(t) for t in tables], promote_options="default")
    return {(r[REQUEST_ID], r[ROW]): r for r in table.to_pylist()}


def _grpc_request(row: dict, request_id: str) -> ModelInferRequest:
    req = ModelInferRequest(model_name=NAME, id=request_id)
    for name, value in row.items():
        tensor = req.inputs.add(name=name, datatype="FP64", shape=[1])
        tensor.contents.fp64_contents.append(float(value))
    return req


def test_rows_equal_what_was_sent_and_answered(tmp_path, boston_xgb):
    log_dir = tmp_path / "payloads"
    proc = start_predictor(boston_xgb, NAME, ["--payload_log_uri", str(log_dir), "--payload_log_drop", "B", *NEVER])
    sent: dict[tuple[str, int], tuple[dict, float]] = {}
    try:
        url = f"{proc.http_url}/v1/models/{NAME}:predict"
        # no id from the client: one is made and returned
        r = httpx.post(url, json={"instances": [SEED]}, timeout=30)
        assert r.status_code == 200 and r.headers["x-request-id"]
        sent[(r.headers["x-request-id"], 0)] = (SEED, r.json()["predictions"][0])
        # the client's id, three instances: three rows under it
        batch = [SEED, {**SEED, "RM": 7.5}, {**SEED, "LSTAT": 20.0}]
        r = httpx.post(url, json={"instances": batch}, headers={"x-request-id": "client-batch"}, timeout=30)
        assert r.headers["x-request-id"] == "client-batch"
        for i, (row, price) in enumerate(zip(batch, r.json()["predictions"], strict=True)):
            sent[("client-batch", i)] = (row, price)
        # V2 REST JSON (decoded straight from its bytes) and gRPC
        v2row = {**SEED, "AGE": 30.0}
        r = httpx.post(f"{proc.http_url}/v2/models/{NAME}/infer", json=v2_body([v2row], names=v2row, request_id="v2"))
        sent[("v2", 0)] = (v2row, r.json()["outputs"][0]["data"][0])
        grow = {**SEED, "TAX": 400.0}
        with grpc.insecure_channel(proc.grpc_target) as channel:
            answer = GRPCInferenceServiceStub(channel).ModelInfer(_grpc_request(grow, "grpc-1"), timeout=30)
        sent[("grpc-1", 0)] = (grow, answer.outputs[0].contents.fp64_contents[0])
        # a refused request: logged with its status and reason, under the id its error answer carries
        bad = httpx.post(url, json={"instances": [{**SEED, "RM": "many"}]}, timeout=30)
        assert bad.status_code == 400
        bad_id = bad.headers["x-request-id"]
    finally:
        assert proc.stop() == 0
    files = sorted(log_dir.rglob("*.parquet"))
    assert files, proc.log()
    assert all("model_version=" in str(f.parent.parent) and f.parent.name.startswith("date=") for f in files)
    rows = _rows([pq.read_table(f) for f in files])
    assert set(rows) == set(sent) | {(bad_id, 0)}
    for key, (row, price) in sent.items():
        got = rows[key]
        assert got[STATUS] == 200 and got[REASON] is None
        assert got[PREDICTION] == pytest.approx(price, rel=1e-12)
        assert "B" not in got  # the drop-list
        assert {k: got[k] for k in row if k != "B"} == {k: float(v) for k, v in row.items() if k != "B"}
    refused = rows[(bad_id, 0)]
    assert refused[STATUS] == 400 and "RM" in refused[REASON] and refused[PREDICTION] is None
    assert refused["RM"] is None and refused["LSTAT"] == SEED["LSTAT"]
    assert rows[("v2", 0)]["protocol"] == "v2" and rows[("grpc-1", 0)]["protocol"] == "grpc"


def test_minio_destination_with_workers(minio, boston_xgb):
    bucket, prefix = "payloads", "workers-test"
    minio.ensure_bucket(bucket)
    proc = start_predictor(
        boston_xgb,
        NAME,
        ["--workers", "2", "--payload_log_uri", f"s3://{bucket}/{prefix}", *NEVER],
        env=minio.env(),
    )
    n = 60
    try:
        # both workers up first (a SIGTERM while one still starts ends the parent badly: not ours to test here)
        poll(proc.log, lambda text: text.count("Application startup complete") >= 2, timeout=90)

        def one(i: int) -> str:
            with httpx.Client(timeout=30, headers={"connection": "close"}) as client:
                r = client.post(
                    f"{proc.http_url}/v1/models/{NAME}:predict",
                    json={"instances": [{**SEED, "AGE": float(i)}]},
                    headers={"x-request-id": f"w-{i}"},
                )
                assert r.status_code == 200
                return r.headers["x-request-id"]

        with ThreadPoolExecutor(8) as pool:
            ids = set(pool.map(one, range(n)))
    finally:
        assert proc.stop(timeout=30) == 0
    s3 = minio.s3()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    tables = [pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in keys]
    rows = _rows(tables)
    assert {rid for rid, _ in rows} == ids, proc.log()
    assert all(rows[(f"w-{i}", 0)]["AGE"] == float(i) for i in range(n))
    pids = {k.rsplit("/", 1)[1].split("-")[2] for k in keys}
    print(f"{len(keys)} files from {len(pids)} processes")


def test_unreachable_destination_serves_and_counts_drops(boston_xgb):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"AWS_ENDPOINT_URL": dead, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    args = ["--payload_log_uri", "s3://payloads/nowhere", "--payload_log_flush_seconds", "0.5"]
    with start_predictor(boston_xgb, NAME, args, env=env) as proc:
        for _ in range(5):
            r = httpx.post(f"{proc.http_url}/v1/models/{NAME}:predict", json=SEED, timeout=30)
            assert r.status_code == 200

        def dropped() -> float:
            text = httpx.get(f"{proc.http_url}/metrics", timeout=10).text
            lines = [ln for ln in text.splitlines() if ln.startswith("housing_payload_rows_dropped_total{")]
            return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if 'reason="unreachable"' in ln)

        assert poll(dropped, lambda v: v >= 5, timeout=60) >= 5
        for _ in range(3):
            assert httpx.post(f"{proc.http_url}/v1/models/{NAME}:predict", json=SEED, timeout=30).status_code == 200
        assert poll(dropped, lambda v: v >= 8, timeout=60) >= 8
        assert proc.log().count("is unreachable") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload_log_sample", "1.5"], "--payload_log_sample"),
        (["--payload_log_drop", "NOPE"], "NOPE"),
    ],
)
def test_bad_flags_refuse_to_serve(tmp_path, boston_xgb, args, message):
    with pytest.raises(RuntimeError, match=message):
        start_predictor(boston_xgb, NAME, ["--payload_log_uri", str(tmp_path), *args], timeout=30)


def test_refusals_before_the_model_and_explain_calls_are_logged(tmp_path, boston_xgb):
    """The guard's refusals (401 REST and gRPC, 413 by Content-Length), a body that is not JSON (400) and
    ``:explain`` calls are rows too — status and reason for the refusals, the prices for explain — under
    the id each answer carries; probes and metadata are not."""
    log_dir = tmp_path / "payloads"
    keyfile = tmp_path / "keys"
    keyfile.write_text("k-payload-test\n")
    args = ["--payload_log_uri", str(log_dir), "--api_keys_file", str(keyfile), "--max_body_bytes", "4096", *NEVER]
    proc = start_predictor(boston_xgb, NAME, args)
    key = {"X-API-Key": "k-payload-test"}
    predict, explain = f"{proc.http_url}/v1/models/{NAME}:predict", f"{proc.http_url}/v1/models/{NAME}:explain"
    try:
        no_key = httpx.post(predict, json=SEED, headers={"x-request-id": "no-key"}, timeout=30)
        too_big = httpx.post(
            f"{proc.http_url}/v2/models/{NAME}/infer", content=b"{" + b" " * 5000 + b"}", headers=key, timeout=30
        )
        not_json = httpx.post(predict, content=b"{nope", headers={**key, "content-type": "application/json"})
        ok = httpx.post(predict, json=SEED, headers=key, timeout=30)
        explained = httpx.post(explain, json={"instances": [SEED]}, headers={**key, "x-request-id": "exp-1"})
        made_id = httpx.post(explain, json={"instances": [SEED, {**SEED, "RM": 7.0}]}, headers=key, timeout=30)
        bad_explain = httpx.post(explain, json={"instances": [{**SEED, "RM": "x"}]}, headers=key, timeout=30)
        assert httpx.get(f"{proc.http_url}/v2/models/{NAME}", timeout=30).status_code == 401  # not an inference
        with grpc.insecure_channel(proc.grpc_target) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                GRPCInferenceServiceStub(channel).ModelInfer(_grpc_request(SEED, "grpc-no-key"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        assert proc.stop() == 0
    answers = {
        "no-key": (no_key, 401),
        too_big.headers["x-request-id"]: (too_big, 413),
        not_json.headers["x-request-id"]: (not_json, 400),
        ok.headers["x-request-id"]: (ok, 200),
        "exp-1": (explained, 200),
        made_id.headers["x-request-id"]: (made_id, 200),
        bad_explain.headers["x-request-id"]: (bad_explain, 400),
    }
    for rid, (answer, status) in answers.items():
        assert answer.status_code == status and answer.headers["x-request-id"] == rid, (rid, answer.text)
    rows = _rows([pq.read_table(f) for f in log_dir.rglob("*.parquet")])
    assert {rid for rid, _ in rows} == {*answers, "grpc-no-key"}, proc.log()
    for rid, (_answer, status) in answers.items():
        got = rows[(rid, 0)]
        assert got[STATUS] == status, (rid, got)
        if status != 200:
            assert got[REASON] and got[PREDICTION] is None, got
    assert rows[("no-key", 0)][REASON].startswith("Unauthenticated") and rows[("no-key", 0)]["protocol"] == "v1"
    assert "--max_body_bytes" in rows[(too_big.headers["x-request-id"], 0)][REASON]
    assert rows[(not_json.headers["x-request-id"], 0)][REASON].startswith("InvalidInput")
    grpc_row = rows[("grpc-no-key", 0)]
    assert grpc_row[STATUS] == 401 and grpc_row["protocol"] == "grpc"
    exp = rows[("exp-1", 0)]
    assert exp["protocol"] == "explain" and exp["RM"] == SEED["RM"]
    assert exp[PREDICTION] == pytest.approx(explained.json()["explanations"][0]["price"], rel=1e-12)
    two = made_id.json()["explanations"]
    mid = made_id.headers["x-request-id"]
    assert [rows[(mid, i)][PREDICTION] for i in (0, 1)] == pytest.approx([e["price"] for e in two], rel=1e-12)
    assert "RM" in rows[(bad_explain.headers["x-request-id"], 0)][REASON]
