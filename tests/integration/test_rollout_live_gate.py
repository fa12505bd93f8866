"""``housing rollout run --live-gate`` end to end: real predictors wrote their payload rows to a real MinIO,
``housing feedback``'s join labelled them, and a real rollout (local router, predictors, its own
Prometheus, synthetic traffic) holds and rolls back a challenger worse on live accuracy, promotes one
that is better, and — with ``--require-labels`` and no labels — ends inconclusive, changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from bundle.manifest import load_manifest
from monitor.feedback import join_feedback
from testkit.bundles import derive_bundle
from testkit.procs import start_predictor, train_bundle

pytestmark = pytest.mark.integration

MODEL = "housing"
BUCKET = "payloads"
N = 30
ROOT = Path(__file__).parents[2]


def _serve(bundle: Path, log_uri: str, env: dict[str, str], tag: str) -> dict[str, float]:
    """N one-row requests through a real predictor logging to ``log_uri``: {request id: prediction}."""
    from training.datasets import load_dataset

    ds = load_dataset("boston")
    rows = json.loads(ds.frame.drop(columns=[ds.target]).head(N).to_json(orient="records"))
    args = ["--payload_log_uri", log_uri, "--payload_log_flush_seconds", "0.5"]
    predicted = {}
    with start_predictor(bundle, MODEL, args, env=env) as proc:
        for i, row in enumerate(rows):
            rid = f"{tag}-{i}"
            r = httpx.post(
                f"{proc.http_url}/v1/models/{MODEL}:predict",
                json={"instances": [row]},
                headers={"x-request-id": rid},
                timeout=30,
            )
            assert r.status_code == 200
            predicted[rid] = r.json()["predictions"][0]
    return predicted


def _label(tmp_path: Path, log_uri: str, predicted: dict[str, dict[str, float]], offsets: dict[str, float]) -> None:
    """Ground truth = prediction ± offset (alternating): each version's live RMSE is its offset exactly."""
    lines = ["request_id,actual"]
    for tag, rows in predicted.items():
        for i, (rid, price) in enumerate(rows.items()):
            lines.append(f"{rid},{price + offsets[tag] * (1 if i % 2 else -1)!r}")
    csv = tmp_path / f"labels-{uuid.uuid4().hex[:6]}.csv"
    csv.write_text("\n".join(lines) + "\n")
    assert join_feedback(str(csv), log_uri).joined == N * len(predicted)


def _rollout(home: Path, env: dict[str, str], bundles: dict[str, Path], name: str, *extra: str):
    cmd = [
        *(sys.executable, "-m", "rollout", "run", "--steps", "50,100", "--interval", "3", "--min-requests", "30"),
        *("--traffic", "60", "--shadow", "1", "--no-registry", "--name", name),
        *("--champion-uri", str(bundles["champion"]), "--challenger-uri", str(bundles["challenger"])),
        *("--live-gate", "--live-min-labels", "20", *extra),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    (log,) = (home / "rollouts").glob(f"{name}-*.jsonl")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return done, events


def _live(events: list[dict]) -> list[dict]:
    return [g for e in events if e["event"] == "step" for g in e["gates"] if g["name"] == "live_rmse"]


def test_rollout_holds_rolls_back_and_promotes_on_live_accuracy(minio, tmp_path, tmp_path_factory, monkeypatch):
    minio.ensure_bucket(BUCKET)
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    champion = train_bundle(tmp_path_factory.getbasetemp(), "boston", "linear")
    bundles = {
        "champion": champion,
        "challenger": derive_bundle(
            champion, tmp_path / "good", relative_shift=0.002, version=f"live-{uuid.uuid4().hex[:6]}"
        ),
    }
    versions = {role: load_manifest(path).model_version for role, path in bundles.items()}
    run = uuid.uuid4().hex[:6]
    logs = {case: f"s3://{BUCKET}/live-{case}-{run}" for case in ("worse", "better", "unlabelled")}
    served = {tag: _serve(bundles[tag], logs["worse"], minio.env(), tag) for tag in ("champion", "challenger")}
    s3 = minio.s3()  # the same payload rows under a second prefix, labelled differently there
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"live-worse-{run}/")["Contents"]:
        key = obj["Key"].replace(f"live-worse-{run}/", f"live-better-{run}/", 1)
        s3.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": obj["Key"]})
    _label(tmp_path, logs["worse"], served, {"champion": 1.0, "challenger": 3.0})
    _label(tmp_path, logs["better"], served, {"champion": 1.0, "challenger": 0.5})

    home = tmp_path / "home"
    env = {
        **os.environ,
        **minio.env(),
        "HOUSING_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    env.pop("HOUSING_PAYLOAD_LOG_URI", None)  # the rollout's own predictors log nothing; --live-log says where

    # worse on live sales (RMSE 3 vs 1): every step fails on it — held once, then rolled back
    done, events = _rollout(home, env, bundles, "worse", "--live-log", logs["worse"])
    assert done.returncode == 3, done.stdout + done.stderr
    assert "live gate   " + logs["worse"] in done.stdout
    (started,) = [e for e in events if e["event"] == "live_gate"]
    assert started["champion"] == versions["champion"] and started["challenger"] == versions["challenger"]
    live = _live(events)
    assert live and all(not g["passed"] and g["value"] == pytest.approx(3.0, rel=1e-9) for g in live), live
    steps = [e for e in events if e["event"] == "step"]
    assert [s["decision"] for s in steps] == ["hold", "rollback"], [(s["decision"], s["reasons"]) for s in steps]
    assert "live_rmse=3 > 1.02" in events[-1]["reason"]

    # better (RMSE 0.5 vs 1): the live gate passes at every look and the rollout promotes
    done, events = _rollout(home, env, bundles, "better", "--live-log", logs["better"])
    assert done.returncode == 0, done.stdout + done.stderr
    live = _live(events)
    assert live and all(g["passed"] and g["value"] == pytest.approx(0.5, rel=1e-9) for g in live), live
    assert events[-1]["event"] == "promote"

    # no labels at all, and they are required: the steps wait for them and the run ends inconclusive
    done, events = _rollout(home, env, bundles, "unlabelled", "--live-log", logs["unlabelled"], "--require-labels")
    assert done.returncode == 6, done.stdout + done.stderr
    assert "waiting for labels" in done.stdout
    live = _live(events)
    assert live and all(g["passed"] and g["evidence"]["verdict"] == "not enough evidence" for g in live), live
    assert events[-1]["event"] == "inconclusive" and not any(e["event"] in ("promote", "rollback") for e in events)
