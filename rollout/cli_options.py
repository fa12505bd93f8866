"""The options more than one ``housing rollout`` command takes, declared once, as groups a command takes
as one parameter (:func:`flag_group`): the canary's steps (:class:`StepFlags`), the gates' thresholds
(:class:`GateFlags`) and the live-accuracy gate (:class:`LiveFlags`), all of ``run`` and ``auto``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar, get_type_hints

import typer

from rollout.analysis_config import DEFAULT_ALPHA, Thresholds
from rollout.live_accuracy import DEFAULT_MIN_LABELS
from rollout.live_accuracy import DEFAULT_TOLERANCE as LIVE_TOLERANCE
from rollout.live_step import LiveGateOptions, live_gate_options


@dataclass(frozen=True)
class StepFlags:
    """The canary's steps as given."""

    steps: str = typer.Option("10,25,50,100", help="challenger percents, increasing, ending at 100")
    interval: float = typer.Option(30.0, help="seconds per step")
    min_requests: int = typer.Option(50, help="challenger requests needed per step")
    max_failures: int = typer.Option(2, help="failed steps before an automatic rollback")


@dataclass(frozen=True)
class GateFlags:
    """The gates' thresholds as given."""

    max_error_rate: float = typer.Option(0.01, help="gate: challenger 5xx share")
    max_p95: float = typer.Option(0.5, help="gate: challenger p95 latency, seconds")
    max_mean_shift: float = typer.Option(0.10, help="gate: relative shift of the mean prediction vs champion")
    max_psi: float = typer.Option(0.25, help="gate: PSI of the prediction histogram vs champion")
    max_drift: float = typer.Option(0.5, help="gate: challenger drift score (largest feature PSI)")

    def thresholds(self, alpha: float = DEFAULT_ALPHA) -> Thresholds:
        return Thresholds(self.max_error_rate, self.max_p95, self.max_mean_shift, self.max_psi, self.max_drift, alpha)


@dataclass(frozen=True)
class LiveFlags:
    """``--live-gate`` and its flags as given (:meth:`options` checks them)."""

    live_gate: bool = typer.Option(
        False,
        "--live-gate",
        help="also gate every step on live accuracy: the challenger's RMSE on labelled payload rows "
        "(housing feedback) against the champion's (docs/monitoring.md)",
    )
    live_log: str = typer.Option(
        None, "--live-log", help="--live-gate: the payload log (default: HOUSING_PAYLOAD_LOG_URI)"
    )
    live_min_labels: int = typer.Option(
        DEFAULT_MIN_LABELS, "--live-min-labels", help="--live-gate: labelled rows each version needs before it judges"
    )
    live_tolerance: float = typer.Option(
        LIVE_TOLERANCE,
        "--live-tolerance",
        help="--live-gate: allowed excess of the challenger's live RMSE (0.02 = 2 %)",
    )
    live_days: float = typer.Option(
        7.0, "--live-days", help="--live-gate: window, the last DAYS days of labelled requests"
    )
    require_labels: bool = typer.Option(
        False,
        "--require-labels",
        help="--live-gate: too few labels holds the step (it waits; inconclusive at its last look) instead of passing",
    )

    def options(self) -> LiveGateOptions | None:
        """The checked options (None: the live gate is off); ValueError naming a bad flag."""
        return live_gate_options(
            self.live_gate,
            self.live_log,
            self.live_min_labels,
            self.live_tolerance,
            self.live_days,
            self.require_labels,
        )


Command = TypeVar("Command", bound=Callable[..., Any])


def flag_group(name: str, group: type) -> Callable[[Command], Command]:
    """A typer command whose parameter ``name`` stands for the fields of the dataclass ``group`` (each a
    ``typer.Option``): typer sees those fields' options in its place, the command gets them as one ``group``."""

    def decorate(command: Command) -> Command:
        hints = get_type_hints(group)
        own = get_type_hints(command)
        members = [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
            for f in fields(group)
        ]
        params = []
        for param in inspect.signature(command).parameters.values():
            if param.name == name:
                params.extend(members)
            else:
                params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=own[param.name]))

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in fields(group)}
            return command(**kwargs, **{name: group(**values)})

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper  # type: ignore[return-value]

    return decorate
