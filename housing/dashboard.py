"""The Grafana dashboard of the model servers, generated from code.

Every panel is one :class:`Panel` with its PromQL written against the series the predictor
exports (names read from :mod:`predictor.observe.metrics` and from KServe's own ``kserve.metrics``,
never retyped) and the labels each result must carry; :func:`build` turns them into a Grafana
dashboard with grafana-foundation-sdk. The JSON is kept in the chart
(``charts/housing/files/dashboards/housing.json``), which ships it as a ConfigMap for Grafana's
dashboard sidecar (``monitoring.grafanaDashboard.enabled``); a test keeps it identical to
:func:`build`'s output and another runs every panel's PromQL against a real Prometheus.

Template variables: ``$datasource`` (Prometheus), ``$model_name``, ``$model_version`` (multi,
all by default). KServe's latency histogram (``request_predict_seconds``) has only a
``model_name`` label; it is attributed to a model version by joining on the scrape target
(``instance``, ``job``) with ``housing_model_info``, which every predictor process exports once.

Regenerate with ``python -m housing.dashboard`` (``--check`` exits 1 when the file is stale).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import series as m

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_PATH = ROOT / "charts" / "housing" / "files" / "dashboards" / "housing.json"
UID = "housing-model-serving"
TITLE = "Housing model serving"

VERSION = m.LABELS[1]  # model_version
NAME = m.LABELS[0]  # model_name
TARGET = ("instance", "job")  # what identifies one scraped predictor process


def kserve_histogram(attr: str) -> str:
    """The name of one of KServe's own histograms (``kserve.metrics.PREDICT_HIST_TIME`` …)."""
    from kserve import metrics as kserve_metrics

    (family,) = getattr(kserve_metrics, attr).describe()
    return family.name


def counter(name: str) -> str:
    return f"{name}_total"


# -- PromQL building blocks ---------------------------------------------------------------------

SEL = f'{NAME}="$model_name", {VERSION}=~"$model_version"'
RATE = "$__rate_interval"


def of_model(metric: str, extra: str = "") -> str:
    """``metric{model_name=…, model_version=~…[, extra]}``."""
    return f"{metric}{{{SEL}{', ' + extra if extra else ''}}}"


def info() -> str:
    """One series per predictor process: its target labels and model version."""
    on = ", ".join(TARGET)
    return f"max by ({on}, {VERSION}) ({of_model(m.MODEL_INFO)})"


def per_version(vector: str) -> str:
    """Attach ``model_version`` to a KServe series (labelled by ``model_name`` only) via its target."""
    return f"({vector}) * on ({', '.join(TARGET)}) group_left ({VERSION}) {info()}"


def kserve_requests() -> str:
    """Predict requests per second and target (KServe counts every call, rejected ones too)."""
    return f'rate({kserve_histogram("PREDICT_HIST_TIME")}_count{{{NAME}="$model_name"}}[{RATE}])'


def request_rate() -> str:
    return f"sum by ({VERSION}) ({per_version(kserve_requests())})"


def latency_quantile(q: float) -> str:
    buckets = f'rate({kserve_histogram("PREDICT_HIST_TIME")}_bucket{{{NAME}="$model_name"}}[{RATE}])'
    return f"histogram_quantile({q}, sum by ({VERSION}, le) ({per_version(buckets)}))"


def error_ratio_by_reason() -> str:
    errors = f"sum by ({VERSION}, {m.REASON}) (rate({of_model(counter(m.REQUEST_ERRORS))}[{RATE}]))"
    return f"{errors} / on ({VERSION}) group_left {request_rate()}"


def traffic_share() -> str:
    return f"{request_rate()} / ignoring ({VERSION}) group_left sum ({per_version(kserve_requests())})"


def rows_rate() -> str:
    return f"sum by ({VERSION}) (rate({of_model(counter(m.PREDICTIONS))}[{RATE}]))"


PREDICTION_PSI = f'{m.FEATURE}="{m.PREDICTION_FEATURE}"'  # the drift PSI of the predictions
FEATURE_PSI = f'{m.FEATURE}!="{m.PREDICTION_FEATURE}"'  # the drift PSI of the input features


def out_of_range_by_feature() -> str:
    return f"sum by ({VERSION}, {m.FEATURE}) (rate({of_model(counter(m.OUT_OF_RANGE))}[{RATE}])) > 0"


def out_of_range_share() -> str:
    rows = f"sum by ({VERSION}) (rate({of_model(counter(m.OUT_OF_RANGE_ROWS))}[{RATE}]))"
    return f"{rows} / {rows_rate()}"


# -- panels -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    #: labels every series of the result must carry (the dashboard's legends and tables use them)
    labels: tuple[str, ...]
    format: str = "time_series"  # time_series | heatmap | table
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries | heatmap | table
    unit: str
    description: str
    queries: tuple[Query, ...]
    width: int = 12
    height: int = 8
    stacked: bool = False
    repeat: str | None = None  # a variable: one panel per selected value
    extra: dict[str, Any] = field(default_factory=dict)


def panels() -> list[Panel]:
    v = (VERSION,)
    return [
        Panel(
            "Request rate",
            "timeseries",
            "reqps",
            "Predict requests per second by model version (KServe's request_predict_seconds_count, "
            "rejected requests included), and rows predicted per second.",
            (
                Query(request_rate(), "{{model_version}} requests", v),
                Query(rows_rate(), "{{model_version}} rows", v),
            ),
        ),
        Panel(
            "Error rate by reason",
            "timeseries",
            "percentunit",
            "Rejected requests (housing_request_errors_total) as a share of all predict requests, "
            "by model version and reason.",
            (Query(error_ratio_by_reason(), "{{model_version}} {{reason}}", (VERSION, m.REASON)),),
        ),
        Panel(
            "Latency p50 / p95 / p99",
            "timeseries",
            "s",
            "KServe's predict latency by model version (request_predict_seconds, attributed to a "
            "version through its scrape target).",
            tuple(Query(latency_quantile(q), f"{{{{model_version}}}} p{round(q * 100)}", v) for q in (0.5, 0.95, 0.99)),
        ),
        Panel(
            "Canary traffic share",
            "timeseries",
            "percentunit",
            "Each model version's share of the model's predict requests: the champion/challenger split.",
            (Query(traffic_share(), "{{model_version}}", v),),
            stacked=True,
        ),
        Panel(
            "Prediction distribution — $model_version",
            "heatmap",
            "short",
            "Predicted prices per histogram bucket (housing_prediction_value; buckets are the "
            "bundle's training deciles), one panel per selected model version.",
            (
                Query(
                    f"sum by (le) (increase({of_model(m.PREDICTION_VALUE + '_bucket')}[{RATE}]))",
                    "{{le}}",
                    ("le",),
                    format="heatmap",
                ),
            ),
            repeat="model_version",
        ),
        Panel(
            "Out-of-range values by feature",
            "timeseries",
            "short",
            "Values outside the training range (or unseen categories) per second, by model version "
            "and feature; and the share of rows with at least one.",
            (
                Query(out_of_range_by_feature(), "{{model_version}} {{feature}}", (VERSION, m.FEATURE)),
                Query(out_of_range_share(), "{{model_version}} share of rows", v),
            ),
        ),
        Panel(
            "Drift score",
            "timeseries",
            "short",
            "Largest feature PSI of the recent rows against the training data (housing_drift_score), "
            "and the PSI of the predictions themselves.",
            (
                Query(of_model(m.DRIFT_SCORE), "{{model_version}} score", v),
                Query(
                    f"max by ({VERSION}) ({of_model(m.DRIFT_PSI, PREDICTION_PSI)})",
                    "{{model_version}} predictions",
                    v,
                ),
            ),
        ),
        Panel(
            "Drift PSI by feature (top 10)",
            "timeseries",
            "short",
            "PSI of each feature's recent values against its training distribution (housing_drift_psi).",
            (
                Query(
                    f"topk(10, max by ({VERSION}, {m.FEATURE}) ({of_model(m.DRIFT_PSI, FEATURE_PSI)}))",
                    "{{model_version}} {{feature}}",
                    (VERSION, m.FEATURE),
                ),
            ),
        ),
        Panel(
            "Model info",
            "table",
            "short",
            "What every predictor process serves: version, flavour and bundle digest (housing_model_info).",
            (
                Query(
                    f"max by ({VERSION}, {m.FLAVOR}, {m.DIGEST}, instance) ({of_model(m.MODEL_INFO)})",
                    "",
                    (VERSION, m.FLAVOR, m.DIGEST, "instance"),
                    format="table",
                    instant=True,
                ),
            ),
            width=24,
            height=6,
        ),
    ]


def fill(expr: str, values: dict[str, str]) -> str:
    """``expr`` with its ``$name`` variables replaced as Grafana does before querying (longest names
    first; a multi-value ``$model_version`` becomes a regex alternation such as ``"1|2"``)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${name}", values[name])
    left = re.findall(r"\$\w+", expr)
    if left:
        raise ValueError(f"unfilled variables {left} in {expr}")
    return expr


# -- the Grafana dashboard ----------------------------------------------------------------------


def build() -> dict[str, Any]:
    """The dashboard as Grafana JSON (a plain dict)."""
    from grafana_foundation_sdk.builders import dashboard as gd
    from grafana_foundation_sdk.builders import heatmap, prometheus, table, timeseries
    from grafana_foundation_sdk.builders.common import StackingConfig
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.common import StackingMode
    from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DataSourceRef, VariableRefresh
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    ds = DataSourceRef(type_val="prometheus", uid="${datasource}")
    board = (
        gd.Dashboard(TITLE)
        .uid(UID)
        .tags(["housing", "kserve", "generated"])
        .description(
            "Per model version: traffic, errors, latency, predictions, out-of-range inputs, drift and the "
            "canary split. Generated by housing/dashboard.py."
        )
        .refresh("30s")
        .time("now-1h", "now")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .editable()
        .with_variable(gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            gd.QueryVariable("model_name")
            .label("model")
            .datasource(ds)
            .query(f"label_values({m.MODEL_INFO}, {NAME})")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_variable(
            gd.QueryVariable(VERSION)
            .label("version")
            .datasource(ds)
            .query(f'label_values({m.MODEL_INFO}{{{NAME}="$model_name"}}, {VERSION})')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    x = y = 0
    board_panels: list[str] = []
    for spec in panels():
        kind = {"timeseries": timeseries.Panel, "heatmap": heatmap.Panel, "table": table.Panel}[spec.kind]
        panel = kind().id(len(board_panels) + 1).title(spec.title).description(spec.description)
        panel = panel.datasource(ds).unit(spec.unit)
        if spec.kind == "timeseries":
            panel = panel.min(0)
            if spec.stacked:
                panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
        if spec.kind == "heatmap":
            panel = panel.calculate(False)
        if spec.repeat:
            panel = panel.repeat(spec.repeat).repeat_direction("h").max_per_row(2)
        for i, q in enumerate(spec.queries):
            target = (
                prometheus.Dataquery()
                .expr(q.expr)
                .legend_format(q.legend or "__auto")
                .ref_id(chr(ord("A") + i))
                .datasource(ds)
            )
            if q.format != "time_series":
                target = target.format(PromQueryFormat(q.format))
            if q.instant:
                target = target.instant()
            panel = panel.with_target(target)
        if x + spec.width > 24:
            x, y = 0, y + 8
        panel = panel.grid_pos(_grid(spec.height, spec.width, x, y))
        board = board.with_panel(panel)
        board_panels.append(spec.title)
        x += spec.width
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(board.build()))


def _grid(h: int, w: int, x: int, y: int) -> Any:
    from grafana_foundation_sdk.models.dashboard import GridPos

    return GridPos(h=h, w=w, x=x, y=y)


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m housing.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DASHBOARD_PATH, help=f"default: {DASHBOARD_PATH.relative_to(ROOT)}")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the generated JSON")
    args = parser.parse_args(argv)
    return write_or_check(args.out, render(), args.check, "python -m housing.dashboard")


def write_or_check(out: Path, text: str, check: bool, command: str) -> int:
    """Write a generated file, or with ``check`` exit 1 when ``out`` differs from ``text``."""
    if check:
        if (out.read_text() if out.exists() else "") != text:
            print(f"{out} is stale; regenerate it with {command}", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
