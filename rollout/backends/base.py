"""The backend interface every rollout target implements (KServe Standard, Serverless, local)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class RolloutError(RuntimeError):
    """A rollout operation could not be carried out (clear, one-line message)."""


class ConflictError(RolloutError):
    """Another writer changed the object between our read and our write (HTTP 409/test failure)."""


@dataclass
class RolloutStatus:
    """What is served right now: who is champion/challenger and how traffic is split."""

    backend: str
    champion: str | None = None  # storage URI (or version) serving the stable share
    challenger: str | None = None  # storage URI (or version) of the canary, if any
    champion_percent: int = 100
    challenger_percent: int = 0
    ready: bool = False
    champion_version: str | None = None
    challenger_version: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prepared:
    """What a backend set up for a rollout run, before its first step."""

    champion_version: str | None  # the ``model_version`` label the gates select the champion by
    challenger_version: str | None
    #: The challenger still to be deployed by the first step; None when it already runs at 0 %.
    challenger_uri: str | None
    #: Where traffic enters when the backend runs its own router (else None: the gates read the
    #: predictors' series and traffic arrives through the cluster).
    router_url: str | None = None
    #: A Prometheus file-SD target list of the processes the backend runs (None in a cluster).
    targets_file: Path | None = None


@runtime_checkable
class Backend(Protocol):
    """A place where a champion and a challenger can share traffic."""

    name: str
    #: True when the backend runs the champion itself (local), so it needs its bundle URI.
    runs_champion: bool

    def prepare(
        self, champion_uri: str | None, challenger_uri: str, *, port: int | None = None, sticky: bool = False
    ) -> Prepared:
        """Make the champion serve (local: start it behind the router) and get the challenger ready."""

    def close(self) -> None:
        """Stop whatever :meth:`prepare` started on this machine (nothing in a cluster)."""

    def start(self, challenger_uri: str, percent: int) -> RolloutStatus:
        """Deploy the challenger next to the champion and send it ``percent`` % of requests."""

    def set_weight(self, percent: int) -> RolloutStatus:
        """Move the challenger's share of traffic to ``percent`` %."""

    def promote(self) -> RolloutStatus:
        """Make the challenger the champion (100 % of traffic, no canary left)."""

    def rollback(self, reason: str) -> RolloutStatus:
        """Send all traffic back to the champion and retire the challenger."""

    def status(self) -> RolloutStatus:
        """Read the current state back from the target."""


def check_percent(percent: int) -> int:
    """``percent`` as an int within 0..100, or a ValueError with a one-line message."""
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ValueError(f"traffic percent must be an integer within 0..100, got {percent!r}")
    return percent
