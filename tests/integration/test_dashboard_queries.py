"""Every panel of the Grafana dashboard returns series, with the labels it shows, from a real stack.

A champion and a challenger (``python -m predictor``, the challenger a derived bundle with its own
version) take V1 traffic — valid rows, rows with out-of-range values and rejected requests — while
a real Prometheus (Debian's) scrapes both every second. Each panel's PromQL, its template
variables filled in as Grafana would, is then run against that Prometheus: each must return at
least one finite series carrying the panel's labels, per model version where the panel is per
version. The queries are read from the dashboard JSON in the chart, i.e. what Grafana gets.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid

import httpx
import pytest

from bundle.manifest import load_manifest
from housing import dashboard
from rollout.prom import Prometheus
from testkit.bundles import derive_bundle
from testkit.holdout import boston_rows
from testkit.procs import start_predictor, train_bundle

pytestmark = pytest.mark.integration
MODEL = "housing"


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory):
    """Two real predictor processes: champion and a derived challenger (stopped afterwards)."""
    root = tmp_path_factory.mktemp("dashboard-bundles")
    champion = train_bundle(tmp_path_factory.getbasetemp(), "boston", "linear")
    challenger = derive_bundle(champion, root / "challenger", relative_shift=0.01, version=f"c-{uuid.uuid4().hex[:6]}")
    procs = []
    try:
        for bundle in (champion, challenger):
            procs.append((start_predictor(bundle, MODEL), load_manifest(bundle).model_version))
        yield procs
    finally:
        for proc, _ in procs:
            proc.stop()


def send_load(urls: list[str], rows: list[dict], stop: threading.Event, max_requests: int = 6000) -> None:
    """V1 requests to every url, bounded in count: 8 valid rows, 1 out-of-range row, 1 rejected."""
    with httpx.Client(timeout=10) as client:
        for i in range(max_requests):
            if stop.is_set():
                return
            url = urls[i % len(urls)]
            row = dict(rows[i % len(rows)])
            kind = i // len(urls) % 10
            if kind == 8:
                row["CRIM"] = 1e6  # far outside the training range: served, counted
            elif kind == 9:
                row.pop("RM")  # missing feature: rejected with 400
            client.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": [row]})
            time.sleep(0.002)


def panel_queries() -> list[tuple[dict, dict]]:
    board = json.loads(dashboard.DASHBOARD_PATH.read_text())
    return [(panel, target) for panel in board["panels"] for target in panel["targets"]]


def test_every_panel_returns_labelled_series(versions, prometheus_factory):
    urls = [p.http_url for p, _ in versions]
    champion, challenger = (v for _, v in versions)
    assert champion != challenger
    prom = prometheus_factory([u.removeprefix("http://") for u in urls])
    client = Prometheus(prom.url)
    specs = {p.title: p for p in dashboard.panels()}
    pairs = panel_queries()
    assert {panel["title"] for panel, _ in pairs} == set(specs)

    def values_for(panel: dict) -> list[dict[str, str]]:
        base = {"model_name": MODEL, "__rate_interval": "30s"}
        if specs[panel["title"]].repeat:  # one panel per version: $model_version is a single value
            return [{**base, "model_version": v} for v in (champion, challenger)]
        return [{**base, "model_version": f"{champion}|{challenger}"}]

    def check(panel: dict, target: dict) -> str | None:
        """None when the query returns what the panel needs, else what is wrong."""
        spec = specs[panel["title"]]
        (query,) = [q for q in spec.queries if q.expr == target["expr"]]
        for values in values_for(panel):
            expr = dashboard.fill(target["expr"], values)
            result = client.raw(expr)
            if not result:
                return f"empty: {expr}"
            finite = [r for r in result if math.isfinite(float(r["value"][1]))]
            if not finite:
                return f"no finite value: {expr}"
            for r in result:
                missing = set(query.labels) - set(r["metric"])
                if missing:
                    return f"series {r['metric']} lacks {missing}: {expr}"
            if "model_version" in query.labels:
                seen = {r["metric"]["model_version"] for r in finite}
                if seen != set(values["model_version"].split("|")):
                    return f"versions {seen}, want {values['model_version']}: {expr}"
        return None

    stop = threading.Event()
    rows = boston_rows(200)
    loader = threading.Thread(target=send_load, args=(urls, rows, stop), daemon=True)
    loader.start()
    problems: dict[str, str | None] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            problems = {f"{p['title']} / {t['refId']}": check(p, t) for p, t in pairs}
            if not any(problems.values()):
                break
            time.sleep(1.0)
    finally:
        stop.set()
        loader.join(timeout=30)
    assert not {k: v for k, v in problems.items() if v}, problems
    # the mistyped case: the table panel is an instant table, the heatmap reads buckets as a heatmap
    formats = {(p["type"], t.get("format", "time_series"), bool(t.get("instant"))) for p, t in pairs}
    assert ("table", "table", True) in formats and ("heatmap", "heatmap", False) in formats
