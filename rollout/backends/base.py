"""The backend interface every rollout target implements (KServe Standard, Serverless, local)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


@runtime_checkable
class Backend(Protocol):
    """A place where a champion and a challenger can share traffic."""

    name: str

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
