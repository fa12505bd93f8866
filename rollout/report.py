"""A rollout's report: one self-contained HTML page and a PNG, built from its JSON-lines event log.

``write_report(log_path)`` reads ``<name>.jsonl`` (the events :class:`rollout.analysis.Analysis`
writes: ``start``, one ``step`` per judged step, then ``promote`` or ``rollback``) and writes
``<name>.html`` and ``<name>.png`` next to it. The page needs nothing from the network: the chart
is the same PNG, inlined as a data URI. It shows

- the decision (promoted / rolled back / in progress) and why, as a coloured banner;
- per step: the traffic split, the request counts of both versions, every gate's value against
  its threshold (pass/fail), the step's decision and its reasons;
- a chart: each gate's value per step against its threshold, the split, the request counts.

With ``--live-gate`` the log's steps carry the ``live_rmse`` gate (:mod:`rollout.live_step`): the
challenger's live RMSE ÷ the champion's at each look, against 1 + tolerance. It gets a column and a
panel of its own; a look still waiting for labels shows as such (no value: nothing to draw).

``python -m rollout.report LOG.jsonl`` (re)builds a report by hand.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Banner colours per decision; tests look for them in screenshots.
COLORS = {"promoted": "#1b7f3b", "rolled_back": "#c62828", "in_progress": "#5f6b7a", "inconclusive": "#a15c00"}
TITLES = {
    "promoted": "PROMOTED",
    "rolled_back": "ROLLED BACK",
    "in_progress": "IN PROGRESS",
    "inconclusive": "NOT ENOUGH EVIDENCE",
}
#: How the gates are shown (order, label, unit) — names as written by rollout.gates.evaluate_gates.
GATE_LABELS = {
    "error_rate": ("error rate", "%"),
    "p95_latency": ("p95 latency", "s"),
    "mean_shift": ("mean shift", "%"),
    "psi": ("PSI", ""),
    "drift": ("drift score", ""),
    "live_rmse": ("live RMSE ÷ champion's", "×"),
}
#: Gates shown only when the log has them (options of a run, not always judged).
OPTIONAL_GATES = ("live_rmse",)


@dataclass
class Step:
    number: int
    challenger_percent: int
    champion_percent: int
    challenger_requests: float | None
    champion_requests: float | None
    gates: list[dict[str, Any]]
    decision: str
    reasons: list[str]
    failures: int
    window: str = ""
    look: int = 1  # a step is looked at again while a gate wants more evidence


@dataclass
class Summary:
    """What a report shows, read from an event log."""

    name: str
    decision: str  # promoted | rolled_back | in_progress
    reason: str
    champion: str | None = None
    challenger: str | None = None
    backend: str | None = None
    started: float | None = None
    finished: float | None = None
    planned_steps: list[int] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TITLES[self.decision]

    @property
    def color(self) -> str:
        return COLORS[self.decision]


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events of a JSON-lines log (a torn last line, from a run still writing, is skipped)."""
    events = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def summarize(events: list[dict[str, Any]], name: str = "rollout") -> Summary:
    start = next((e for e in events if e.get("event") == "start"), {})
    config = start.get("config") or {}
    summary = Summary(
        name=name,
        decision="in_progress",
        reason="",
        champion=start.get("champion"),
        challenger=start.get("challenger"),
        backend=start.get("backend"),
        started=start.get("ts"),
        planned_steps=list(config.get("steps") or []),
        thresholds=dict(config.get("thresholds") or {}),
    )
    for event in events:
        kind = event.get("event")
        if kind == "step":
            values = event.get("values") or {}
            weights = event.get("weights") or {}
            summary.steps.append(
                Step(
                    number=int(event.get("step", len(summary.steps) + 1)),
                    challenger_percent=int(weights.get("challenger", 0)),
                    champion_percent=int(weights.get("champion", 100)),
                    challenger_requests=values.get("challenger.requests"),
                    champion_requests=values.get("champion.requests"),
                    gates=list(event.get("gates") or []),
                    decision=str(event.get("decision", "?")),
                    reasons=list(event.get("reasons") or []),
                    failures=int(event.get("failures", 0)),
                    window=str(event.get("window", "")),
                    look=int(event.get("look", 1)),
                )
            )
        elif kind == "promote":
            summary.decision, summary.finished = "promoted", event.get("ts")
            summary.reason = "all steps passed" + (
                f" ({event['failures']} failed step(s) repeated)" if event.get("failures") else ""
            )
        elif kind == "rollback":
            summary.decision, summary.finished = "rolled_back", event.get("ts")
            summary.reason = str(event.get("reason") or "rolled back")
        elif kind == "inconclusive":
            summary.decision, summary.finished = "inconclusive", event.get("ts")
            summary.reason = "nothing promoted or rolled back: " + str(event.get("reason") or "not enough evidence")
    if summary.decision == "in_progress":
        last = summary.steps[-1] if summary.steps else None
        summary.reason = (
            f"step {last.number}: {last.decision}" + (f" ({'; '.join(last.reasons)})" if last.reasons else "")
            if last
            else "no step judged yet"
        )
    return summary


# -- formatting --------------------------------------------------------------------------------


def fmt_gate(name: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    unit = GATE_LABELS.get(name, (name, ""))[1]
    if unit == "×":
        return f"{value:.3f}×"
    if unit == "%":
        return f"{value * 100:.2f} %"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.3f}"


def fmt_evidence(name: str, evidence: dict[str, Any] | None) -> str:
    """A test's evidence in one line: interval, p-value of "within the threshold", counts, comparison."""
    if not evidence:
        return ""
    counts = ", ".join(f"{k} {v:,.0f}" for k, v in (evidence.get("counts") or {}).items() if k != "n_eff")
    if evidence.get("low") is None:
        return f"{evidence.get('verdict')}: {evidence.get('note') or ''} ({counts})"
    interval = f"[{fmt_gate(name, evidence['low'])}, {fmt_gate(name, evidence['high'])}]"
    return f"{evidence['verdict']}, {evidence.get('comparison')}: {interval}, p={evidence['p_value']:.3g}; {counts}"


def fmt_count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


# -- the chart ---------------------------------------------------------------------------------


def chart_gates(summary: Summary) -> list[str]:
    """The gates with a panel: those the log has (all but the optional ones when it has none)."""
    found = [g for g in GATE_LABELS if any(x["name"] == g for s in summary.steps for x in s.gates)]
    return found or [g for g in GATE_LABELS if g not in OPTIONAL_GATES]


def render_png(summary: Summary) -> bytes:
    """The chart: one panel per gate (value per step vs threshold), the split, the request counts."""
    import matplotlib.pyplot as plt

    fig = figure(summary)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def figure(summary: Summary) -> Any:
    """The chart as a matplotlib figure (one axis per panel, titled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gate_names = chart_gates(summary)
    panels = len(gate_names) + 2
    cols = 4
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.9 * rows + 0.7), squeeze=False)
    flat = [ax for row in axes for ax in row]
    labels = [f"{s.number}\n{s.challenger_percent}%" for s in summary.steps]
    xs = list(range(len(summary.steps)))
    for ax, gate in zip(flat, gate_names, strict=False):
        label, unit = GATE_LABELS[gate]
        scale = 100.0 if unit == "%" else 1.0
        points = []
        threshold = None
        waiting = 0
        for i, step in enumerate(summary.steps):
            g = next((x for x in step.gates if x["name"] == gate), None)
            if g is None:
                continue
            threshold = g.get("threshold", threshold)
            if g.get("value") is not None:
                points.append((i, float(g["value"]) * scale, bool(g.get("passed"))))
            else:
                waiting += 1
        if threshold is not None:
            ax.axhline(float(threshold) * scale, color="#c62828", linestyle="--", linewidth=1.2, label="threshold")
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], color="#455a64", linewidth=1, zorder=1)
            ax.scatter(
                [p[0] for p in points],
                [p[1] for p in points],
                c=["#1b7f3b" if p[2] else "#c62828" for p in points],
                s=46,
                zorder=2,
            )
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#777")
        if gate == "live_rmse" and waiting:
            note = f"{waiting} look{'s' if waiting > 1 else ''} waiting for labels"
            ax.text(0.5, 0.06, note, transform=ax.transAxes, ha="center", fontsize=7, color="#777")
        ax.set_title(f"{label}" + (f" ({unit})" if unit and unit != "×" else ""), fontsize=10)
        if unit == "×":  # a ratio near 1: its own range, so a few per cent show
            ys = [p[1] for p in points] + [1.0, float(threshold or 1.0)]
            ax.set_ylim(min(ys) - 0.1, max(ys) + 0.1)
            ax.set_xlim(-0.5, len(xs) - 0.5)
        else:
            ax.set_ylim(bottom=0)
        ax.set_xticks(xs, labels, fontsize=8)
        ax.grid(alpha=0.3)
    used = len(gate_names)
    split_ax, req_ax = flat[used], flat[used + 1]
    chall = [s.challenger_percent for s in summary.steps]
    champ = [s.champion_percent for s in summary.steps]
    split_ax.bar(xs, champ, color="#90a4ae", label="champion")
    split_ax.bar(xs, chall, bottom=champ, color="#ef6c00", label="challenger")
    split_ax.set_title("traffic split (%)", fontsize=10)
    split_ax.set_ylim(0, 100)
    split_ax.set_xticks(xs, labels, fontsize=8)
    split_ax.legend(fontsize=7, loc="lower left")
    width = 0.38
    champion_requests = [s.champion_requests or 0 for s in summary.steps]
    challenger_requests = [s.challenger_requests or 0 for s in summary.steps]
    req_ax.bar([x - width / 2 for x in xs], champion_requests, width, color="#90a4ae", label="champion (run so far)")
    req_ax.bar([x + width / 2 for x in xs], challenger_requests, width, color="#ef6c00", label="challenger (step)")
    req_ax.set_ylim(top=max([*champion_requests, *challenger_requests, 1]) * 1.35)
    req_ax.legend(fontsize=7, loc="upper left", ncols=2)
    req_ax.set_title("requests", fontsize=10)
    req_ax.set_xticks(xs, labels, fontsize=8)
    req_ax.grid(alpha=0.3, axis="y")
    for ax in flat[used + 2 :]:
        ax.axis("off")
    fig.suptitle(
        f"{summary.title}: {summary.reason}   (champion {summary.champion} → challenger {summary.challenger})",
        color=summary.color,
        fontsize=12,
        fontweight="bold",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


# -- the page ----------------------------------------------------------------------------------

_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 0; color: #1d2430; background: #fff; }
.banner { padding: 22px 32px; color: #fff; }
.banner h1 { margin: 0; font-size: 34px; letter-spacing: 1px; }
.banner p { margin: 6px 0 0; font-size: 17px; }
main { padding: 16px 32px 32px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 4px 18px; font-size: 14px; }
dt { color: #5f6b7a; }
table { border-collapse: collapse; font-size: 13px; margin: 12px 0 20px; }
th, td { border: 1px solid #d5dbe3; padding: 5px 9px; text-align: right; vertical-align: top; }
th { background: #eef2f6; }
td.text { text-align: left; }
td.pass { background: #e3f4e8; }
td.fail { background: #fbe3e3; font-weight: bold; }
td.nodata { color: #8a94a3; }
img { max-width: 100%; border: 1px solid #d5dbe3; }
"""


def render_html(summary: Summary, png: bytes) -> str:
    e = html.escape
    gate_names = [g for g in GATE_LABELS if any(x["name"] == g for s in summary.steps for x in s.gates)]
    head = (
        "<tr><th>step</th><th>challenger %</th><th>champion %</th><th>challenger requests<br>(step)</th>"
        "<th>champion requests<br>(run so far)</th>"
        + "".join(f"<th>{e(GATE_LABELS[g][0])}</th>" for g in gate_names)
        + "<th>decision</th><th>why</th></tr>"
    )
    rows = []
    for s in summary.steps:
        cells = [
            f"<td>{s.number}{f'.{s.look}' if s.look > 1 else ''}</td>"
            f"<td>{s.challenger_percent}</td><td>{s.champion_percent}</td>",
            f"<td>{fmt_count(s.challenger_requests)}</td><td>{fmt_count(s.champion_requests)}</td>",
        ]
        for gate in gate_names:
            g = next((x for x in s.gates if x["name"] == gate), None)
            if g is None:
                cells.append("<td class='nodata'>-</td>")
                continue
            cls = "nodata" if g.get("value") is None else ("pass" if g.get("passed") else "fail")
            evidence = fmt_evidence(gate, g.get("evidence"))
            if gate in OPTIONAL_GATES and g.get("value") is None and g.get("note") and not evidence:
                evidence = str(g["note"])  # e.g. waiting for labels
            cells.append(
                f"<td class='{cls}'>{e(fmt_gate(gate, g.get('value')))}"
                f"<br><small>≤ {e(fmt_gate(gate, g.get('threshold')))}</small>"
                + (f"<br><small class='evidence'>{e(evidence)}</small>" if evidence else "")
                + "</td>"
            )
        cells.append(f"<td class='text'>{e(s.decision)}</td>")
        cells.append(f"<td class='text'>{e('; '.join(s.reasons) or 'all gates passed')}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    planned = ", ".join(f"{p}%" for p in summary.planned_steps) or "-"
    thresholds = ", ".join(f"{k} {v:g}" for k, v in summary.thresholds.items()) or "-"
    image = base64.b64encode(png).decode()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>rollout {e(summary.name)}: {e(summary.title)}</title>
<style>{_CSS}</style></head>
<body>
<div class="banner" id="decision" data-decision="{e(summary.decision)}" style="background:{summary.color}">
<h1>{e(summary.title)}</h1>
<p>{e(summary.reason)}</p>
</div>
<main>
<dl>
<dt>champion</dt><dd>{e(str(summary.champion))}</dd>
<dt>challenger</dt><dd>{e(str(summary.challenger))}</dd>
<dt>backend</dt><dd>{e(str(summary.backend))}</dd>
<dt>planned steps</dt><dd>{e(planned)}</dd>
<dt>thresholds</dt><dd>{e(thresholds)}</dd>
<dt>started</dt><dd>{e(_when(summary.started))}</dd>
<dt>finished</dt><dd>{e(_when(summary.finished))}</dd>
</dl>
<h2>Steps</h2>
<table id="steps">{head}{"".join(rows)}</table>
<h2>Gates per step</h2>
<img alt="gates per step against their thresholds, traffic split and request counts"
 src="data:image/png;base64,{image}">
</main>
</body></html>
"""


def report_paths(log_path: Path) -> tuple[Path, Path]:
    log_path = Path(log_path)
    return log_path.with_suffix(".html"), log_path.with_suffix(".png")


def write_report(log_path: str | Path) -> tuple[Path, Path]:
    """Write ``<log>.html`` and ``<log>.png`` next to the event log; returns both paths."""
    log_path = Path(log_path)
    summary = summarize(read_events(log_path), name=log_path.stem)
    png = render_png(summary)
    html_path, png_path = report_paths(log_path)
    png_path.write_bytes(png)
    html_path.write_text(render_html(summary, png), encoding="utf-8")
    return html_path, png_path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m rollout.report EVENTS.jsonl", file=sys.stderr)
        return 2
    path = Path(args[0])
    if not path.is_file():
        print(f"error: {path}: no such event log", file=sys.stderr)
        return 2
    for out in write_report(path):
        print(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
