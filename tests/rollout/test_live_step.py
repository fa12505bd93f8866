"""The live-accuracy gate as a step gate: its verdicts on a real payload log (a directory, written by the
predictor's writer and joined with ground truth by ``housing feedback``'s code), and its flags."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.feedback import join_feedback
from predictor.observe.payload_log import PayloadConfig, PayloadLog
from predictor.observe.payload_rows import Layout
from rollout.live_step import NAME, LiveGateOptions, live_gate_options, live_gates, live_rmse_gate

N = 12


def _labelled_log(root, offsets: dict[str, float], labelled: int = N) -> str:
    """N requests per version, the first ``labelled`` of them labelled ``prediction ± offset`` (RMSE = offset)."""
    uri = str(root / "payloads")
    labels = ["request_id,actual"]
    for version, offset in offsets.items():
        log = PayloadLog(PayloadConfig(uri, flush_seconds=3600), "housing", version, Layout.of(["a"], []))
        for i in range(N):
            price = 100.0 + i
            log.record(f"{version}-{i}", "v1", b'{"a": 1}', np.array([price]), None, 0.001)
            if i < labelled:
                labels.append(f"{version}-{i},{price + offset * (1 if i % 2 else -1)!r}")
        log.close()
    csv = root / "labels.csv"
    csv.write_text("\n".join(labels) + "\n")
    assert join_feedback(str(csv), uri).joined == labelled * len(offsets)
    return uri


def test_a_worse_challenger_fails_a_better_one_passes(tmp_path):
    uri = _labelled_log(tmp_path, {"1": 1.0, "2": 3.0, "3": 0.5})
    options = LiveGateOptions(uri, min_labels=N, tolerance=0.02)
    worse = live_rmse_gate(options, "1", "2")
    assert worse.name == NAME and not worse.passed and worse.value == pytest.approx(3.0) and worse.threshold == 1.02
    assert "live RMSE" in worse.note and worse.evidence is None
    better = live_rmse_gate(options, "1", "3")
    assert better.passed and better.value == pytest.approx(0.5)


def test_too_few_labels_waits_when_required_and_passes_when_not(tmp_path):
    uri = _labelled_log(tmp_path, {"1": 1.0, "2": 3.0}, labelled=4)
    required = live_rmse_gate(LiveGateOptions(uri, min_labels=5, require_labels=True), "1", "2")
    assert required.passed and required.wanting and required.value is None
    assert required.note.startswith("waiting for labels") and required.evidence["counts"] == {
        "champion": 4,
        "challenger": 4,
    }
    not_required = live_rmse_gate(LiveGateOptions(uri, min_labels=5), "1", "2")
    assert not_required.passed and not not_required.wanting and "not holding" in not_required.note


def test_an_unreadable_log_is_no_evidence(monkeypatch):
    from common.net import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens: refused at once
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    options = LiveGateOptions("s3://no-such-bucket/x", min_labels=5, require_labels=True)
    gate = live_rmse_gate(options, "1", "2")
    assert gate.wanting and "not readable" in gate.note


def test_flags(tmp_path):
    assert live_gate_options(False, None, 200, 0.02, 7.0, False) is None
    with pytest.raises(ValueError, match="--require-labels needs --live-gate"):
        live_gate_options(False, None, 200, 0.02, 7.0, True)
    with pytest.raises(ValueError, match="--live-min-labels"):
        live_gate_options(True, str(tmp_path), 1, 0.02, 7.0, False)
    with pytest.raises(ValueError, match="--live-tolerance"):
        live_gate_options(True, str(tmp_path), 20, -0.1, 7.0, False)
    with pytest.raises(ValueError, match="--live-days"):
        live_gate_options(True, str(tmp_path), 20, 0.02, 0.0, False)
    assert live_gates(None, "1", "2") is None
    said: list[str] = []
    judge = live_gates(LiveGateOptions(str(tmp_path / "empty")), "1", "2", echo=said.append)
    assert judge is not None and [g.name for g in judge()] == [NAME] and "live gate" in said[0]
