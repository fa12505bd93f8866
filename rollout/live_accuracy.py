"""The live-accuracy gate: the challenger's RMSE on real, labelled requests against the champion's.

When both versions have at least ``min_labels`` labelled rows in the window (the payload log joined
with ground truth, :mod:`monitor.feedback`), the challenger passes if its live RMSE is at most the
champion's × (1 + ``tolerance``). Until then the gate is *waiting for labels*: with
``require_labels`` a rollout must not promote on it (it waits, or ends undecided); without, the gate
does not hold the rollout back and says so.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import typer

DEFAULT_MIN_LABELS = 200
DEFAULT_TOLERANCE = 0.02


class LiveVerdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WAITING = "waiting for labels"


@dataclass(frozen=True)
class LiveGate:
    """The verdict, whether it lets a rollout go on, and the figures it was judged on."""

    verdict: LiveVerdict
    blocks: bool
    reason: str
    champion: dict[str, Any] | None
    challenger: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict.value}


def live_accuracy_gate(
    log_uri: str,
    champion: str,
    challenger: str,
    *,
    min_labels: int = DEFAULT_MIN_LABELS,
    tolerance: float = DEFAULT_TOLERANCE,
    require_labels: bool = False,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> LiveGate:
    """Judge ``challenger`` against ``champion`` on the labelled rows of the log at ``log_uri``."""
    from monitor.quality import quality
    from monitor.store import Store

    found = {q.model_version: q for q in quality(Store(log_uri), since, until, [champion, challenger])}
    champ, chall = found.get(champion), found.get(challenger)
    figures = (champ.to_dict() if champ else None, chall.to_dict() if chall else None)
    counts = {v: (found[v].count if v in found else 0) for v in (champion, challenger)}
    if min(counts.values()) < min_labels:
        have = ", ".join(f"{v}: {n}" for v, n in counts.items())
        why = f"waiting for labels: need {min_labels} labelled rows per version, have {have}"
        why += " (required: the rollout waits)" if require_labels else " (not required: not holding the rollout)"
        return LiveGate(LiveVerdict.WAITING, require_labels, why, *figures)
    assert champ is not None and chall is not None
    bound = champ.rmse * (1 + tolerance)
    if chall.rmse <= bound:
        why = f"live RMSE {chall.rmse:,.4f} ≤ champion's {champ.rmse:,.4f} × {1 + tolerance:g} (n={chall.count})"
        return LiveGate(LiveVerdict.PASS, False, why, *figures)
    why = f"live RMSE {chall.rmse:,.4f} > champion's {champ.rmse:,.4f} × {1 + tolerance:g} = {bound:,.4f}"
    return LiveGate(LiveVerdict.FAIL, True, why, *figures)


def live_gate_command(
    champion: str = typer.Option(..., "--champion", help="The champion's model version."),
    challenger: str = typer.Option(..., "--challenger", help="The challenger's model version."),
    log: str = typer.Option(None, "--log", help="The payload log (default: HOUSING_PAYLOAD_LOG_URI)."),
    min_labels: int = typer.Option(DEFAULT_MIN_LABELS, "--min-labels", help="Labelled rows each version needs."),
    tolerance: float = typer.Option(DEFAULT_TOLERANCE, "--tolerance", help="Allowed RMSE excess (0.02 = 2 %)."),
    days: float = typer.Option(7.0, "--days", help="Window: the last DAYS days."),
    require_labels: bool = typer.Option(False, "--require-labels", help="Too few labels holds the rollout (exit 3)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The live-accuracy gate: exit 0 pass (or waiting, not required), 3 waiting for labels (required), 4 fail."""
    from monitor.store import default_uri

    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days) if days else None
    gate = live_accuracy_gate(
        log or default_uri(),
        champion,
        challenger,
        min_labels=min_labels,
        tolerance=tolerance,
        require_labels=require_labels,
        since=since,
    )
    typer.echo(json.dumps(gate.to_dict(), indent=2, default=str) if as_json else f"{gate.verdict.value}: {gate.reason}")
    if gate.blocks:
        raise typer.Exit(3 if gate.verdict is LiveVerdict.WAITING else 4)
