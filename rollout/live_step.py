"""The live-accuracy gate as a step gate of ``housing rollout run`` (``--live-gate``, off by default).

At every look of every step, the champion and the challenger are judged on their labelled payload
rows (:func:`rollout.live_accuracy.live_accuracy_gate`: the payload log joined with ground truth by
``housing feedback``) and the verdict joins the step's gates as ``live_rmse``:

- **pass** — the challenger's live RMSE ÷ the champion's is within 1 + tolerance: the gate passes;
- **fail** — it is above: the step fails like any failed gate (held, then rolled back after
  ``--max-failures`` failed steps);
- **waiting for labels** — either version has fewer than ``--live-min-labels`` labelled rows in the
  window. With ``--require-labels`` the gate wants evidence: the step waits, and a step still
  waiting at its last look ends the run *inconclusive* (nothing promoted or rolled back). Without,
  the gate passes and its note says it did not hold the rollout.

A log that cannot be read (MinIO down, no such bucket) is treated like *waiting for labels*, its
reason in the note. The figures go to the event log with the other gates (value: the RMSE ratio).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from rollout.evidence import NOT_ENOUGH
from rollout.gates import GateResult
from rollout.live_accuracy import DEFAULT_MIN_LABELS, DEFAULT_TOLERANCE, LiveVerdict, live_accuracy_gate

NAME = "live_rmse"


@dataclass(frozen=True)
class LiveGateOptions:
    """``--live-gate`` and its flags, checked."""

    log_uri: str
    min_labels: int = DEFAULT_MIN_LABELS
    tolerance: float = DEFAULT_TOLERANCE
    days: float = 7.0
    require_labels: bool = False

    def __post_init__(self) -> None:
        if self.min_labels < 2:
            raise ValueError(f"--live-min-labels must be at least 2, got {self.min_labels}")
        if math.isnan(self.tolerance) or self.tolerance < 0:
            raise ValueError(f"--live-tolerance must be 0 or more, got {self.tolerance:g}")
        if math.isnan(self.days) or self.days <= 0:
            raise ValueError(f"--live-days must be positive, got {self.days:g}")


def live_gate_options(
    enabled: bool, log: str | None, min_labels: int, tolerance: float, days: float, require_labels: bool
) -> LiveGateOptions | None:
    """The options of ``--live-gate`` (None when it is off); ValueError naming a bad flag."""
    if not enabled:
        if require_labels:
            raise ValueError("--require-labels needs --live-gate")
        return None
    from monitor.store import default_uri

    return LiveGateOptions(log or default_uri(), min_labels, tolerance, days, require_labels)


def live_gates(
    options: LiveGateOptions | None, champion: str, challenger: str, log: Any = None, echo: Callable[[str], Any] = print
) -> Callable[[], list[GateResult]] | None:
    """What the run loop calls at every look: ``[the live_rmse gate]`` for this pair (None when off); the
    options go to the event log ``log`` and one line to ``echo``."""
    if options is None:
        return None
    if log is not None:
        log.write("live_gate", champion=champion, challenger=challenger, **asdict(options))
    required = "required" if options.require_labels else "not required"
    echo(
        f"live gate   {options.log_uri}: ≥ {options.min_labels} labelled rows per version in {options.days:g} days "
        f"({required}), RMSE within +{options.tolerance:.1%} of the champion's"
    )

    def judge() -> list[GateResult]:
        return [live_rmse_gate(options, champion, challenger)]

    return judge


def live_rmse_gate(options: LiveGateOptions, champion: str, challenger: str) -> GateResult:
    """The ``live_rmse`` gate now (see the module docstring for the verdicts)."""
    limit = 1 + options.tolerance
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=options.days)
    try:
        gate = live_accuracy_gate(
            options.log_uri,
            champion,
            challenger,
            min_labels=options.min_labels,
            tolerance=options.tolerance,
            require_labels=options.require_labels,
            since=since,
        )
    except Exception as exc:  # noqa: BLE001 - an unreadable log is no evidence either way
        why = f"payload log {options.log_uri} not readable ({' '.join(str(exc).split())[:200]})"
        return _waiting(why, options.require_labels, limit, {})
    counts = {
        role: (fig or {}).get("count", 0)
        for role, fig in (("champion", gate.champion), ("challenger", gate.challenger))
    }
    if gate.verdict is LiveVerdict.WAITING:
        return _waiting(gate.reason, options.require_labels, limit, counts)
    assert gate.champion is not None and gate.challenger is not None
    champ, chall = gate.champion["rmse"], gate.challenger["rmse"]
    ratio = chall / champ if champ > 0 else (1.0 if chall == 0 else math.inf)
    return GateResult(NAME, ratio, limit, gate.verdict is LiveVerdict.PASS, gate.reason)


def _waiting(reason: str, required: bool, limit: float, counts: dict[str, Any]) -> GateResult:
    if not required:
        return GateResult(NAME, None, limit, True, reason)
    evidence = {"verdict": NOT_ENOUGH, "note": reason, "counts": counts, "comparison": "labelled rows"}
    return GateResult(NAME, None, limit, True, reason, evidence)
