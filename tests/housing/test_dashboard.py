"""housing/dashboard.py: the chart's dashboard JSON is the generated one, and its panels are sound."""

from __future__ import annotations

import json

import pytest

from common import series as metrics
from housing import dashboard


def test_chart_json_is_the_generated_one():
    assert dashboard.DASHBOARD_PATH.read_text() == dashboard.render(), "run: python -m housing.dashboard"
    assert dashboard.main(["--check"]) == 0


def test_check_flags_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "housing.json"
    stale.write_text("{}\n")
    assert dashboard.main(["--check", "--out", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err


def test_issue_panels_are_all_there():
    titles = [p.title for p in dashboard.panels()]
    for word in ("Request rate", "Error rate", "p50 / p95 / p99", "Prediction distribution", "Out-of-range",
                 "Drift", "traffic share", "Model info"):  # fmt: skip
        assert any(word in t for t in titles), word


def test_every_query_is_scoped_to_the_selected_model_and_versions():
    board = json.loads(dashboard.DASHBOARD_PATH.read_text())
    names = {v["name"] for v in board["templating"]["list"]}
    assert names == {"datasource", "model_name", "model_version"}
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert '$model_name"' in target["expr"] and '=~"$model_version"' in target["expr"], target["expr"]


def test_series_names_come_from_the_predictor_module():
    exprs = " ".join(q.expr for p in dashboard.panels() for q in p.queries)
    for name in (metrics.PREDICTION_VALUE, metrics.MODEL_INFO, metrics.DRIFT_SCORE, metrics.DRIFT_PSI):
        assert name in exprs
    for counter in (metrics.PREDICTIONS, metrics.OUT_OF_RANGE, metrics.OUT_OF_RANGE_ROWS, metrics.REQUEST_ERRORS):
        assert f"{counter}_total" in exprs
    assert dashboard.kserve_histogram("PREDICT_HIST_TIME") + "_bucket" in exprs


def test_fill_replaces_every_variable():
    expr = 'rate(x{model_name="$model_name", model_version=~"$model_version"}[$__rate_interval])'
    filled = dashboard.fill(expr, {"model_name": "housing", "model_version": "1|2", "__rate_interval": "1m"})
    assert filled == 'rate(x{model_name="housing", model_version=~"1|2"}[1m])'
    with pytest.raises(ValueError, match="unfilled"):
        dashboard.fill(expr, {"model_name": "housing"})
