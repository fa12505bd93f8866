"""housing/alerts.py: the rules fire (and stay quiet) as intended — checked by ``promtool test rules``.

The rules are rendered with the default thresholds (the chart's values.yaml defaults; the
cluster tier checks the chart renders the same) and fed synthetic series shaped like what a
predictor exports: one healthy version "1" and one failing version "2" on separate targets.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from common import series as m
from housing import alerts
from housing import dashboard as d
from testkit.servers import find_tool

MODEL = "housing"
INSTANCES = {"1": "10.0.0.1:8080", "2": "10.0.0.2:8080"}
JOB = "housing-predictor"
PREDICT = d.kserve_histogram("PREDICT_HIST_TIME")


def sel(version: str, **extra: str) -> str:
    labels = {"model_name": MODEL, "instance": INSTANCES[version], "job": JOB, **extra}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def info(version: str, values: str = "1x40") -> dict:
    return {
        "series": f"{m.MODEL_INFO}{sel(version, model_version=version, flavor='xgboost', digest='sha256:ab')}",
        "values": values,
    }


def traffic(version: str, *, errors_per_min: int = 0, oor_rows_per_min: int = 0, slow: bool = False) -> list[dict]:
    """600 predict requests a minute on one target (KServe's histogram) and the housing counters."""
    per_version = {"model_version": version}
    buckets = {"0.1": "0+600x40", "0.25": "0+600x40", "0.5": "0+600x40", "+Inf": "0+600x40"}
    if slow:  # every request between 0.25 s and 0.5 s
        buckets = {"0.1": "0+0x40", "0.25": "0+0x40", "0.5": "0+600x40", "+Inf": "0+600x40"}
    series = [info(version), {"series": f"{PREDICT}_count{sel(version)}", "values": "0+600x40"}]
    series += [{"series": f"{PREDICT}_bucket{sel(version, le=le)}", "values": v} for le, v in buckets.items()]
    series += [
        {
            "series": f"{m.PREDICTIONS}_total{sel(version, **per_version, protocol='v1')}",
            "values": f"0+{600 - errors_per_min}x40",
        },
        {
            "series": f"{m.REQUEST_ERRORS}_total{sel(version, **per_version, protocol='v1', reason='InvalidInput')}",
            "values": f"0+{errors_per_min}x40",
        },
        {"series": f"{m.OUT_OF_RANGE_ROWS}_total{sel(version, **per_version)}", "values": f"0+{oor_rows_per_min}x40"},
    ]
    return series


def expected(rule: str, labels: dict[str, str]) -> dict:
    """The alert as promtool reports it: expression labels + the rule's labels, annotations filled."""
    (spec,) = [r for g in alerts.groups() for r in g["rules"] if r["alert"] == rule]
    annotations = {}
    for key, text in spec["annotations"].items():
        for name, value in labels.items():
            text = text.replace("{{ $labels." + name + " }}", value)
        annotations[key] = text
    return {"exp_labels": {**labels, **spec["labels"]}, "exp_annotations": annotations}


def run_promtool(tmp_path, tests: list[dict]) -> subprocess.CompletedProcess:
    promtool = find_tool("promtool", "apt-get install prometheus (scripts/tools/debian.sh)")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": alerts.groups()}, sort_keys=False, width=10_000))
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
            width=10_000,
        )
    )
    return subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_rules_pass_promtool_check(tmp_path):
    promtool = find_tool("promtool", "apt-get install prometheus (scripts/tools/debian.sh)")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": alerts.groups()}, sort_keys=False))
    done = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    names = {r["alert"] for g in alerts.groups() for r in g["rules"]}
    assert {"HousingPredictorDown", "HousingErrorRateHigh", "HousingLatencyP95High", "HousingDriftHigh"} <= names
    assert "HousingOutOfRangeSurge" in names


def test_each_alert_fires_for_the_failing_version_only(tmp_path):
    th = alerts.defaults()
    assert th["errorRate"] < 60 / 600 and th["outOfRangeShare"] < 120 / 600 and th["p95Seconds"] < 0.475
    drift = [
        {"series": f"{m.DRIFT_SCORE}{sel('1', model_version='1')}", "values": "0.05x40"},
        {"series": f"{m.DRIFT_SCORE}{sel('2', model_version='2')}", "values": "0.9x40"},
    ]
    up = [
        {"series": f"up{{instance='{INSTANCES['1']}', job='{JOB}'}}".replace("'", '"'), "values": "1x40"},
        {"series": f"up{{instance='{INSTANCES['2']}', job='{JOB}'}}".replace("'", '"'), "values": "1x5 0x35"},
    ]
    v2 = {"model_version": "2"}
    tests = [
        {
            "name": "a failing version 2 next to a healthy version 1",
            "interval": "1m",
            "input_series": traffic("1")
            + traffic("2", errors_per_min=60, oor_rows_per_min=120, slow=True)
            + drift
            + up,
            "alert_rule_test": [
                {
                    "eval_time": "15m",
                    "alertname": "HousingErrorRateHigh",
                    "exp_alerts": [expected("HousingErrorRateHigh", v2)],
                },
                {
                    "eval_time": "15m",
                    "alertname": "HousingLatencyP95High",
                    "exp_alerts": [expected("HousingLatencyP95High", v2)],
                },
                {"eval_time": "15m", "alertname": "HousingDriftHigh", "exp_alerts": [expected("HousingDriftHigh", v2)]},
                {
                    "eval_time": "15m",
                    "alertname": "HousingOutOfRangeSurge",
                    "exp_alerts": [expected("HousingOutOfRangeSurge", v2)],
                },
                {
                    "eval_time": "15m",
                    "alertname": "HousingPredictorDown",
                    "exp_alerts": [
                        expected("HousingPredictorDown", {"instance": INSTANCES["2"], "job": JOB, "model_version": "2"})
                    ],
                },
                {"eval_time": "15m", "alertname": "HousingPredictorAbsent", "exp_alerts": []},
                # not before `for` has passed
                {"eval_time": "4m", "alertname": "HousingErrorRateHigh", "exp_alerts": []},
            ],
        },
        {
            "name": "healthy versions raise nothing",
            "interval": "1m",
            "input_series": traffic("1") + traffic("2", errors_per_min=6, oor_rows_per_min=12) + drift[:1] + up[:1],
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": name, "exp_alerts": []}
                for name in (
                    "HousingErrorRateHigh",
                    "HousingLatencyP95High",
                    "HousingDriftHigh",
                    "HousingOutOfRangeSurge",
                    "HousingPredictorDown",
                    "HousingPredictorAbsent",
                )
            ],
        },
        {
            "name": "no predictor at all",
            "interval": "1m",
            "input_series": [{"series": 'up{job="other"}', "values": "1x20"}],
            "alert_rule_test": [
                {
                    "eval_time": "10m",
                    "alertname": "HousingPredictorAbsent",
                    "exp_alerts": [expected("HousingPredictorAbsent", {"model_name": MODEL})],
                }
            ],
        },
    ]
    done = run_promtool(tmp_path, tests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_catches_a_wrong_expectation(tmp_path):
    """The harness is not vacuous: claiming the healthy version alerts fails."""
    tests = [
        {
            "interval": "1m",
            "input_series": traffic("1"),
            "alert_rule_test": [
                {
                    "eval_time": "15m",
                    "alertname": "HousingErrorRateHigh",
                    "exp_alerts": [expected("HousingErrorRateHigh", {"model_version": "1"})],
                }
            ],
        }
    ]
    assert run_promtool(tmp_path, tests).returncode != 0


def test_defaults_are_the_charts_values():
    values = yaml.safe_load((d.ROOT / "charts" / "housing" / "values.yaml").read_text())
    rule_values = values["monitoring"]["prometheusRule"]
    assert rule_values["enabled"] is False
    for name, (key, default) in alerts.PARAMS.items():
        got = values["model"]["name"] if name == "model" else rule_values[key]
        assert got == default, name


def test_chart_rules_file_is_the_generated_one():
    assert alerts.RULES_PATH.read_text() == alerts.render_helm(), "run: python -m housing.alerts"
    assert alerts.main(["--check"]) == 0


@pytest.mark.parametrize("rule", [r["alert"] for g in alerts.groups() for r in g["rules"]])
def test_helm_file_differs_only_by_placeholders(rule):
    """Every rule of the chart's file is the default one with ``{{ .Values.* }}`` in place of numbers."""
    helm = {r["alert"]: r for g in yaml.safe_load(alerts.RULES_PATH.read_text()) for r in g["rules"]}
    assert rule in helm and helm[rule]["labels"] == next(
        r["labels"] for g in alerts.groups() for r in g["rules"] if r["alert"] == rule
    )
