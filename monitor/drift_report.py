"""``housing drift report``: the payload log of one model version over a window against its bundle's
``reference.json`` — PSI per feature (the predictor's bias-corrected PSI,
:func:`predictor.observe.drift.psi_from_counts`, on the reference's own bins), reference vs live
histograms of the most drifted numeric features, the category shares of the most drifted category,
and the distribution of the predictions. Written as a PNG and a self-contained HTML page (the PNG
inlined), like the rollout report.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bundle.manifest import REFERENCE_FILE, load_manifest
from monitor.quality import window_rows
from monitor.store import Store, payload_frame
from predictor.observe.drift import psi_from_counts
from predictor.observe.payload_rows import PREDICTION, STATUS

#: PSI above which a feature is called shifted (amber) and drifted (red): the usual rule of thumb.
PSI_WARN, PSI_ALERT = 0.1, 0.25
TOP = 3
UNSEEN = "(unseen)"


@dataclass
class FeatureDrift:
    name: str
    kind: str  # "numeric" or "categorical"
    psi: float
    labels: list[str]  # bin labels
    reference: list[float]  # shares
    live: list[float]


@dataclass
class DriftReport:
    model_version: str
    since: str
    until: str
    rows: int
    features: list[FeatureDrift] = field(default_factory=list)  # most drifted first
    prediction: FeatureDrift | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "since": self.since,
            "until": self.until,
            "rows": self.rows,
            "psi": {f.name: f.psi for f in self.features},
            "prediction_psi": self.prediction.psi if self.prediction else None,
        }


def _numeric(name: str, spec: dict[str, Any], values: np.ndarray) -> FeatureDrift:
    edges = np.asarray(spec["edges"], dtype=float)
    props = np.asarray(spec["proportions"], dtype=float)
    values = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(props))[: len(props)]
    labels = [f"≤{edges[0]:.4g}"] + [f"{a:.4g}–{b:.4g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    labels += [f">{edges[-1]:.4g}"] if len(edges) else []
    live = (counts / counts.sum()).tolist() if counts.sum() else [0.0] * len(props)
    return FeatureDrift(name, "numeric", psi_from_counts(props, counts), labels[: len(props)], props.tolist(), live)


def _categorical(name: str, spec: dict[str, Any], values: list[Any]) -> FeatureDrift:
    cats = list(spec["frequencies"])
    props = np.array([spec["frequencies"][c] for c in cats] + [0.0])
    index = {c: i for i, c in enumerate(cats)}
    counts = np.zeros(len(props))
    for v in values:
        if v is not None:
            counts[index.get(str(v), len(cats))] += 1
    live = (counts / counts.sum()).tolist() if counts.sum() else [0.0] * len(props)
    return FeatureDrift(name, "categorical", psi_from_counts(props, counts), [*cats, UNSEEN], props.tolist(), live)


def build(store: Store, bundle_dir: Path, since: dt.datetime | None, until: dt.datetime | None) -> DriftReport:
    """The report's figures for the bundle's version over [since, until)."""
    manifest = load_manifest(bundle_dir)
    reference = json.loads((bundle_dir / REFERENCE_FILE).read_text())
    version = manifest.model_version
    frame = window_rows(payload_frame(store, version), since, until)
    if not frame.empty:
        frame = frame[frame[STATUS] == 200]
    report = DriftReport(version, str(since or "-"), str(until or "now"), len(frame))
    if frame.empty:
        return report
    for name, spec in reference.get("numeric", {}).items():
        if name in frame.columns:
            report.features.append(_numeric(name, spec, frame[name].to_numpy(dtype=float, na_value=np.nan)))
    for name, spec in reference.get("categorical", {}).items():
        if name in frame.columns:
            report.features.append(_categorical(name, spec, frame[name].tolist()))
    report.features.sort(key=lambda f: -f.psi)
    if "prediction" in reference:
        pred = _numeric(PREDICTION, reference["prediction"], frame[PREDICTION].to_numpy(dtype=float))
        report.prediction = pred
    return report


def _color(value: float) -> str:
    return "#c62828" if value > PSI_ALERT else "#ef8f00" if value > PSI_WARN else "#2e7d32"


def _bars(ax: Any, f: FeatureDrift, title: str) -> None:
    xs = np.arange(len(f.labels))
    ax.bar(xs - 0.2, f.reference, 0.4, label="reference (training)", color="#90a4ae")
    ax.bar(xs + 0.2, f.live, 0.4, label="live", color=_color(f.psi))
    ax.set_xticks(xs, f.labels, rotation=45, ha="right", fontsize=7)
    ax.set_title(f"{title} — PSI {f.psi:.3f}", fontsize=10)
    ax.set_ylabel("share")
    ax.legend(fontsize=7)


def render_png(report: DriftReport) -> bytes:
    """PSI per feature, the top numeric histograms, the top category's shares, the predictions."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    flat = list(axes.ravel())
    shown = report.features[:20]
    ax = flat[0]
    ax.barh([f.name for f in shown][::-1], [f.psi for f in shown][::-1], color=[_color(f.psi) for f in shown][::-1])
    for x in (PSI_WARN, PSI_ALERT):
        ax.axvline(x, color="#555", linestyle="--", linewidth=1)
    ax.set_title(f"PSI per feature (top {len(shown)})", fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    numeric = [f for f in report.features if f.kind == "numeric"][:TOP]
    for ax, f in zip(flat[1:4], numeric, strict=False):
        _bars(ax, f, f.name)
    category = next((f for f in report.features if f.kind == "categorical"), None)
    if category is not None:
        _bars(flat[4], category, f"{category.name} (category shares)")
    if report.prediction is not None:
        _bars(flat[5], report.prediction, "predictions")
    for ax in flat:
        if not ax.has_data():
            ax.set_axis_off()
    fig.suptitle(f"drift of {report.model_version}: {report.rows:,} live rows vs the training reference")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=80)
    plt.close(fig)
    return out.getvalue()


_CSS = """body{font-family:sans-serif;margin:0;color:#222}
.banner{padding:16px 28px;color:#fff}
.banner h1{margin:0;font-size:26px}
main{padding:8px 28px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td.name{text-align:left}img{max-width:100%}"""


def render_html(report: DriftReport, png: bytes) -> str:
    """A self-contained page: the verdict banner, the figures, the PSI table."""
    e = html.escape
    worst = report.features[0] if report.features else None
    color = _color(worst.psi) if worst else "#607d8b"
    if worst is None:
        title = f"no live rows of {report.model_version} in the window"
    elif worst.psi > PSI_ALERT:
        title = f"drifted: {worst.name} (PSI {worst.psi:.2f})"
    elif worst.psi > PSI_WARN:
        title = f"shifting: {worst.name} (PSI {worst.psi:.2f})"
    else:
        title = "no drift"
    rows = "".join(
        f"<tr><td class='name'>{e(f.name)}</td><td>{e(f.kind)}</td>"
        f"<td style='color:{_color(f.psi)}'>{f.psi:.3f}</td></tr>"
        for f in report.features
    )
    pred = f"{report.prediction.psi:.3f}" if report.prediction else "-"
    image = base64.b64encode(png).decode()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>drift {e(report.model_version)}: {e(title)}</title>
<style>{_CSS}</style></head><body>
<div class="banner" id="verdict" style="background:{color}"><h1>{e(title)}</h1>
<p>model version {e(report.model_version)} · {report.rows:,} live rows · window {e(report.since)} → {e(report.until)}
· prediction PSI {pred}</p></div>
<main><img alt="PSI per feature, reference vs live histograms, category shares, predictions"
 src="data:image/png;base64,{image}">
<h2>PSI per feature</h2><table id="psi"><tr><th>feature</th><th>kind</th><th>PSI</th></tr>{rows}</table>
<p>PSI on the reference's decile bins (categories: its categories and one for unseen ones), corrected for
the sample size as the predictor's <code>housing_drift_psi</code> is; &gt; {PSI_WARN} shifting, &gt; {PSI_ALERT}
drifted.</p></main></body></html>
"""


def write_report(report: DriftReport, out_dir: Path) -> tuple[Path, Path]:
    """``drift-<version>.png`` and ``.html`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = render_png(report)
    png_path = out_dir / f"drift-{report.model_version}.png"
    html_path = png_path.with_suffix(".html")
    png_path.write_bytes(png)
    html_path.write_text(render_html(report, png))
    return html_path, png_path
