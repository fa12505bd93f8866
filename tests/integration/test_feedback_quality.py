"""Ground truth joined to the payload log of two real predictors in a real MinIO; live accuracy per version
(``housing quality``) and the live-accuracy rollout gate; bad feedback files and a truncated log file."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from bundle.manifest import load_manifest
from housing.cli import app
from rollout.live_accuracy import LiveVerdict, live_accuracy_gate
from testkit.holdout import BOSTON_ROW as SEED
from testkit.procs import start_predictor

pytestmark = pytest.mark.integration

NAME = "housing"
BUCKET, PREFIX = "payloads", "feedback-test"
N = 30


def _serve_and_label(proc, bundle, tag: str, offset: float) -> tuple[str, dict[str, float], dict[str, float]]:
    """N requests; each id's 'actual' is its prediction + offset × a fixed ±1 pattern (RMSE = offset)."""
    predicted, actual = {}, {}
    for i in range(N):
        rid = f"{tag}-{i}"
        r = httpx.post(
            f"{proc.http_url}/v1/models/{NAME}:predict",
            json={**SEED, "LSTAT": 3.0 + i / 2},
            headers={"x-request-id": rid},
            timeout=30,
        )
        assert r.status_code == 200
        predicted[rid] = r.json()["predictions"][0]
        actual[rid] = predicted[rid] + offset * (1 if i % 2 else -1)
    return load_manifest(bundle).model_version, predicted, actual


def _put(minio, key: str, data: bytes) -> str:
    minio.s3().put_object(Bucket=BUCKET, Key=key, Body=data)
    return f"s3://{BUCKET}/{key}"


def test_feedback_quality_and_the_live_gate(minio, boston_xgb, boston_forest, monkeypatch):
    minio.ensure_bucket(BUCKET)
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    log_uri = f"s3://{BUCKET}/{PREFIX}"
    args = ["--payload_log_uri", log_uri, "--payload_log_flush_seconds", "0.5"]
    runs = {}
    for tag, bundle, offset in (("champ", boston_xgb, 1.0), ("chall", boston_forest, 3.0)):
        with start_predictor(bundle, NAME, args, env=minio.env()) as proc:
            runs[tag] = _serve_and_label(proc, bundle, tag, offset)
    champion, challenger = runs["champ"][0], runs["chall"][0]
    assert champion != challenger

    # a writer killed mid-file left half a Parquet file among the others
    s3 = minio.s3()
    first = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/model_version={champion}/")["Contents"][0]["Key"]
    whole = s3.get_object(Bucket=BUCKET, Key=first)["Body"].read()
    truncated = first.rsplit("/", 1)[0] + "/part-truncated.parquet"
    _put(minio, truncated, whole[: len(whole) // 2])

    labels = [(rid, a) for tag in runs for rid, a in runs[tag][2].items()]
    csv = "request_id,actual\n" + "".join(f"{rid},{a!r}\n" for rid, a in labels)
    csv += "nobody-sent-this,100.0\n" + "dup-0,1.0\ndup-0,2.0\n"
    source = _put(minio, "labels/ground-truth.csv", csv.encode())
    runner = CliRunner()
    got = runner.invoke(app, ["feedback", source, "--log", log_uri, "--json"])
    assert got.exit_code == 0, got.output
    counts = json.loads(got.stdout[got.stdout.index("{") :])
    assert counts["labels"] == 2 * N + 3 and counts["joined"] == 2 * N
    assert counts["unknown"] == 1 and counts["duplicates"] == 2
    assert "part-truncated.parquet: skipped" in got.output
    assert counts["skipped_files"] == [truncated.removeprefix(PREFIX + "/")]

    got = runner.invoke(app, ["quality", "--log", log_uri, "--json"])
    assert got.exit_code == 0, got.output
    by_version = {q["model_version"]: q for q in json.loads(got.stdout[got.stdout.index("[") :])}
    for tag, offset in (("champ", 1.0), ("chall", 3.0)):
        version, predicted, actual = runs[tag]
        q = by_version[version]
        err = np.array([predicted[r] - actual[r] for r in predicted])
        assert q["count"] == N
        assert q["rmse"] == pytest.approx(offset) == pytest.approx(float(np.sqrt((err**2).mean())))
        assert q["rmse_ci"][0] <= q["rmse"] <= q["rmse_ci"][1]
    table = runner.invoke(app, ["quality", "--log", log_uri])
    assert champion in table.output and "RMSE" in table.output
    print(table.output)

    # the exporter: the same figures as Prometheus gauges, over real HTTP
    from common.net import free_port
    from monitor.exporter import serve

    port = free_port()
    server, thread = serve(log_uri, 7.0, port, addr="127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    finally:
        server.shutdown()
        thread.join(10)
    for tag, offset in (("champ", 1.0), ("chall", 3.0)):
        line = next(
            ln for ln in text.splitlines() if ln.startswith(f'housing_live_rmse{{model_version="{runs[tag][0]}"')
        )
        assert float(line.rsplit(" ", 1)[1]) == pytest.approx(offset)

    waiting = live_accuracy_gate(log_uri, champion, challenger, min_labels=N + 1, require_labels=True)
    assert waiting.verdict is LiveVerdict.WAITING and waiting.blocks
    assert not live_accuracy_gate(log_uri, champion, challenger, min_labels=N + 1).blocks
    fail = live_accuracy_gate(log_uri, champion, challenger, min_labels=N)
    assert fail.verdict is LiveVerdict.FAIL and fail.blocks, fail.reason
    ok = live_accuracy_gate(log_uri, challenger, champion, min_labels=N)  # roles swapped: 1.0 ≤ 3.0
    assert ok.verdict is LiveVerdict.PASS and not ok.blocks


def test_feedback_file_without_a_column_exits_2(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("request_id,price\nabc,1.0\n")
    got = CliRunner().invoke(app, ["feedback", str(bad), "--log", str(tmp_path / "log")])
    assert got.exit_code == 2 and "missing column actual" in got.output
