"""Prometheus alert rules for the model servers, generated from the dashboard's own PromQL.

Five alerts, each per model version: a predictor process down (or none left), the error rate, p95
latency over an SLO, drift, and a surge of out-of-range inputs. The expressions are the Grafana
panels' (:mod:`housing.dashboard`) with the variables filled in, so a graph and the alert it
explains never disagree.

:func:`groups` renders the rule groups for given parameters: concrete numbers (the unit tests feed
them to ``promtool test rules``), or Helm placeholders — :func:`main` writes those to
``charts/housing/files/prometheus-rules.yaml``, which the chart's ``PrometheusRule`` template
(``monitoring.prometheusRule.enabled``) renders with ``tpl``; a test keeps the file generated and
another checks that the chart renders exactly ``groups(values.yaml defaults)``.

Regenerate with ``python -m housing.alerts`` (``--check`` exits 1 when the file is stale).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from common import series as m
from housing import dashboard as d

RULES_PATH = d.ROOT / "charts" / "housing" / "files" / "prometheus-rules.yaml"
VALUES_PREFIX = ".Values.monitoring.prometheusRule"
#: parameter → (values.yaml key under monitoring.prometheusRule, or a full path, and its default).
PARAMS: dict[str, tuple[str, Any]] = {
    "model": (".Values.model.name", "housing"),
    "window": ("window", "5m"),
    "for": ("for", "5m"),
    "downFor": ("downFor", "1m"),
    "errorRate": ("errorRate", 0.05),
    "p95Seconds": ("p95Seconds", 0.25),
    "driftScore": ("driftScore", 0.5),
    "outOfRangeShare": ("outOfRangeShare", 0.1),
}
SEVERITY = {"down": "critical", "other": "warning"}


def defaults() -> dict[str, Any]:
    return {name: default for name, (_, default) in PARAMS.items()}


def helm_placeholders() -> dict[str, str]:
    out = {}
    for name, (key, _) in PARAMS.items():
        path = key if key.startswith(".Values.") else f"{VALUES_PREFIX}.{key}"
        out[name] = "{{ " + path + " }}"
    return out


def _panel_expr(expr: str, p: dict[str, Any]) -> str:
    return d.fill(expr, {"model_name": str(p["model"]), "model_version": ".*", "__rate_interval": str(p["window"])})


def groups(params: dict[str, Any] | None = None, helm: bool = False) -> list[dict[str, Any]]:
    """The rule groups. ``helm``: Prometheus' own ``{{ … }}`` templates escaped for Helm's ``tpl``."""
    p = {**defaults(), **(params or {})}
    version = d.VERSION

    def prom(text: str) -> str:
        return re.sub(r"\{\{|\}\}", lambda mt: '{{ "' + mt.group() + '" }}', text) if helm else text

    def label(name: str) -> str:
        return prom("{{ $labels." + name + " }}")

    target = ", ".join(d.TARGET)
    info_seen = f'last_over_time({m.MODEL_INFO}{{{d.NAME}="{p["model"]}"}}[10m])'
    rules = [
        {
            "alert": "HousingPredictorDown",
            "expr": (f"(up == 0) * on ({target}) group_left ({version}) max by ({target}, {version}) ({info_seen})"),
            "for": p["downFor"],
            "labels": {"severity": SEVERITY["down"]},
            "annotations": {
                "summary": f"predictor {label('instance')} (model version {label(version)}) is down",
                "description": "Prometheus cannot scrape a predictor process that served this model in the "
                "last 10 minutes.",
            },
        },
        {
            "alert": "HousingPredictorAbsent",
            "expr": f'absent({m.MODEL_INFO}{{{d.NAME}="{p["model"]}"}})',
            "for": p["downFor"],
            "labels": {"severity": SEVERITY["down"]},
            "annotations": {
                "summary": f"no predictor exports model {label(d.NAME)}",
                "description": "No scraped process reports housing_model_info for this model.",
            },
        },
        {
            "alert": "HousingErrorRateHigh",
            "expr": f"sum by ({version}) ({_panel_expr(d.error_ratio_by_reason(), p)}) > {p['errorRate']}",
            "for": p["for"],
            "labels": {"severity": SEVERITY["other"]},
            "annotations": {
                "summary": f"model version {label(version)} rejects too many requests",
                "description": f"Rejected requests over {p['window']} exceed {p['errorRate']} of all predict "
                "requests (dashboard panel: Error rate by reason).",
            },
        },
        {
            "alert": "HousingLatencyP95High",
            "expr": f"{_panel_expr(d.latency_quantile(0.95), p)} > {p['p95Seconds']}",
            "for": p["for"],
            "labels": {"severity": SEVERITY["other"]},
            "annotations": {
                "summary": f"model version {label(version)}: p95 predict latency over the SLO",
                "description": f"p95 of request_predict_seconds over {p['window']} exceeds {p['p95Seconds']} s "
                "(dashboard panel: Latency p50 / p95 / p99).",
            },
        },
        {
            "alert": "HousingDriftHigh",
            "expr": f"max by ({version}) ({_panel_expr(d.of_model(m.DRIFT_SCORE), p)}) > {p['driftScore']}",
            "for": p["for"],
            "labels": {"severity": SEVERITY["other"]},
            "annotations": {
                "summary": f"model version {label(version)}: inputs drift from the training data",
                "description": f"The largest feature PSI of recent rows exceeds {p['driftScore']} "
                "(dashboard panel: Drift score).",
            },
        },
        {
            "alert": "HousingOutOfRangeSurge",
            "expr": f"{_panel_expr(d.out_of_range_share(), p)} > {p['outOfRangeShare']}",
            "for": p["for"],
            "labels": {"severity": SEVERITY["other"]},
            "annotations": {
                "summary": f"model version {label(version)}: many rows outside the training range",
                "description": f"More than {p['outOfRangeShare']} of the rows over {p['window']} have a value "
                "outside the training range or an unseen category (dashboard panel: Out-of-range values).",
            },
        },
    ]
    return [{"name": "housing-model-serving", "rules": rules}]


def render_helm() -> str:
    header = (
        "# Generated by housing/alerts.py (python -m housing.alerts): do not edit.\n"
        "# Rendered with tpl by templates/prometheusrule.yaml: the thresholds come from the chart's values.\n"
    )
    return header + yaml.safe_dump(
        groups(helm_placeholders(), helm=True), sort_keys=False, width=10_000, allow_unicode=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m housing.alerts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RULES_PATH)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the generated rules")
    parser.add_argument("--plain", action="store_true", help="print the rules with the default thresholds instead")
    args = parser.parse_args(argv)
    if args.plain:
        sys.stdout.write(yaml.safe_dump({"groups": groups()}, sort_keys=False, width=10_000))
        return 0
    return d.write_or_check(args.out, render_helm(), args.check, "python -m housing.alerts")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
