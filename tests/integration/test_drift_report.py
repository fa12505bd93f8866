"""The drift report of a real predictor's payload log: ames holdout rows as they are, then with one feature
shifted; the shifted feature comes out on top and the page, rendered by headless Chromium, says so."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import numpy as np
import pytest

from monitor import drift_report
from monitor.store import Store
from testkit.chromium import WIDTH, screenshot, share_near
from testkit.holdout import holdout, records
from testkit.procs import start_predictor

pytestmark = pytest.mark.integration
NAME = "housing"


def _send(proc, rows: list[dict]) -> None:
    for i in range(0, len(rows), 50):
        r = httpx.post(f"{proc.http_url}/v1/models/{NAME}:predict", json={"instances": rows[i : i + 50]}, timeout=60)
        assert r.status_code == 200, r.text


def test_drift_report_finds_the_shifted_feature(tmp_path, ames_xgb):
    frame, features = holdout("ames")
    frame = frame[features]
    numeric = frame.select_dtypes("number")
    shifted = numeric.nunique().idxmax()  # the numeric feature with the most distinct values
    rows = records(frame)
    log_dir = tmp_path / "payloads"
    args = ["--payload_log_uri", str(log_dir), "--payload_log_flush_seconds", "0.5"]
    with start_predictor(ames_xgb, NAME, args) as proc:
        _send(proc, rows)
        time.sleep(0.01)
        middle = dt.datetime.now(dt.UTC)
        _send(proc, [{**r, shifted: None if r[shifted] is None else r[shifted] * 3 + 1} for r in rows])
    store = Store(str(log_dir))
    before = drift_report.build(store, ames_xgb, None, middle)
    after = drift_report.build(store, ames_xgb, middle, None)
    assert before.rows == after.rows == len(rows)
    assert after.features[0].name == shifted and after.features[0].psi > drift_report.PSI_ALERT
    assert {f.name: f.psi for f in before.features}[shifted] < drift_report.PSI_WARN
    print(f"{shifted}: PSI {dict((f.name, f.psi) for f in before.features)[shifted]:.3f} → {after.features[0].psi:.3f}")

    for report, drifted in ((before, False), (after, True)):
        html_path, png_path = drift_report.write_report(report, tmp_path / ("after" if drifted else "before"))
        assert png_path.stat().st_size > 10_000
        image = screenshot(html_path, tmp_path / f"shot-{drifted}.png", tmp_path)
        assert image.shape[1] == WIDTH and image.std() > 30
        colours = len(np.unique(image[..., 0] << 16 | image[..., 1] << 8 | image[..., 2]))
        assert colours > 200, colours
        banner = image[5:60, :]
        assert (share_near(banner, "#c62828") > 0.6) is drifted
        assert (image[300:] < 200).any(axis=-1).mean() > 0.02  # the figures and the table below
