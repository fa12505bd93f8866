"""``housing rollout status --watch``: a compact live view of a rollout, refreshed in place.

Each refresh reads the backend's status (who serves what share) and the newest event log of the
deployment (``$HOUSING_HOME/rollouts/<name>-*.jsonl``, as written by ``housing rollout run``), and
shows the same figures as the report (:mod:`rollout.report`): the decision so far, and per step
the split, the request counts and each gate's value against its threshold.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rollout.backends.base import RolloutStatus
from rollout.report import GATE_LABELS, TITLES, Summary, fmt_count, fmt_gate, read_events, summarize

STYLES = {
    "promoted": "bold white on green",
    "rolled_back": "bold white on red",
    "in_progress": "bold white on blue",
    "inconclusive": "bold black on yellow",
}


def latest_log(home: Path, name: str) -> Path | None:
    """The newest event log of deployment ``name``, if any."""
    logs = sorted((home / "rollouts").glob(f"{name}-*.jsonl"), key=lambda p: p.stat().st_mtime)
    return logs[-1] if logs else None


def status_line(status: RolloutStatus | None, error: str | None = None) -> Text:
    if status is None:
        return Text(f"status: {error or 'unavailable'}", style="yellow")
    line = Text()
    line.append(f"{status.backend}", style="bold")
    line.append("  ready " if status.ready else "  not ready ", style="green" if status.ready else "yellow")
    line.append(f"champion {status.champion_percent}% {status.champion_version or status.champion or '-'}")
    if status.challenger or status.challenger_percent:
        line.append(
            f"  challenger {status.challenger_percent}% {status.challenger_version or status.challenger or '-'}",
            style="bold",
        )
    return line


def steps_table(summary: Summary) -> Table:
    gates = [g for g in GATE_LABELS if any(x["name"] == g for s in summary.steps for x in s.gates)]
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for header in ("step", "split", "requests", *(GATE_LABELS[g][0] for g in gates), "decision"):
        table.add_column(header, justify="left" if header == "decision" else "right")
    for s in summary.steps:
        cells: list[Text | str] = [
            str(s.number),
            f"{s.challenger_percent}/{s.champion_percent}",
            f"{fmt_count(s.challenger_requests)}/{fmt_count(s.champion_requests)}",
        ]
        for gate in gates:
            g = next((x for x in s.gates if x["name"] == gate), None)
            if g is None or g.get("value") is None:
                cells.append(Text("-", style="dim"))
                continue
            ok = bool(g.get("passed"))
            cells.append(
                Text(
                    f"{fmt_gate(gate, g['value'])} {'≤' if ok else '>'} {fmt_gate(gate, g.get('threshold'))}",
                    style="green" if ok else "bold red",
                )
            )
        cells.append(s.decision + (f": {'; '.join(s.reasons)}" if s.reasons else ""))
        table.add_row(*cells)
    return table


def view(
    status: RolloutStatus | None, summary: Summary | None, log: Path | None, error: str | None = None
) -> RenderableType:
    parts: list[RenderableType] = [status_line(status, error)]
    if summary is None:
        parts.append(Text("no rollout run logged yet (housing rollout run writes one)", style="dim"))
        return Group(*parts)
    title = Text(f" {TITLES[summary.decision]} ", style=STYLES[summary.decision])
    title.append(f" {summary.reason}", style="default")
    parts.append(title)
    parts.append(Text(f"champion {summary.champion} → challenger {summary.challenger}   log {log}", style="dim"))
    if summary.steps:
        parts.append(steps_table(summary))
    parts.append(Text("split: challenger/champion %   requests: challenger (step)/champion (run)", style="dim"))
    return Group(*parts)


def snapshot(get_status: Callable[[], RolloutStatus], find_log: Callable[[], Path | None]) -> RenderableType:
    """One view; a failing status read is shown, not raised (the router may be restarting)."""
    status, error = None, None
    try:
        status = get_status()
    except Exception as exc:  # noqa: BLE001 - any failure is one line in the view
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log = find_log()
    summary = summarize(read_events(log), log.stem) if log is not None else None
    return view(status, summary, log, error)


def watch(
    get_status: Callable[[], RolloutStatus],
    find_log: Callable[[], Path | None],
    every: float = 2.0,
    count: int | None = None,
    console: Console | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Refresh the view every ``every`` seconds, ``count`` times (None: until Ctrl-C)."""
    console = console or Console()
    done = 0
    try:
        with Live(snapshot(get_status, find_log), console=console, auto_refresh=False) as live:
            while True:
                done += 1
                if count is not None and done >= count:
                    break
                sleep(every)
                live.update(snapshot(get_status, find_log), refresh=True)
    except KeyboardInterrupt:
        pass
