"""The backend interface every rollout target implements (KServe Standard, Serverless, local), and
the capabilities only some have, each a protocol of its own that callers test with ``isinstance``:
``HoldsLease`` and ``OnInferenceService`` (the KServe backends), ``AwaitsReady`` (KServe Standard),
``GatewayRouted`` (KServe Standard with a Gateway route) and ``Mirrors`` (local: its router shadows
requests). Nothing probes a backend with ``getattr``/``hasattr``: what a caller needs is on
``Backend`` or one of these (``tests/rollout/backends/test_capabilities.py``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

# re-exported for rollout/auto.py and rollout/auto_cli.py until they import rollout.errors themselves
from rollout.errors import RolloutError

if TYPE_CHECKING:
    from rollout.lease import RolloutLease

__all__ = [
    "AwaitsReady",
    "Backend",
    "GatewayRouted",
    "HoldsLease",
    "Mirrors",
    "OnInferenceService",
    "Prepared",
    "RolloutError",
    "RolloutStatus",
    "check_percent",
]


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

    def start(self, challenger_uri: str, percent: int, *, digest: str | None = None) -> RolloutStatus:
        """Deploy the challenger next to the champion and send it ``percent`` % of requests; with
        ``digest`` (the registered sha256 of its bundle.json) any other bundle is refused."""

    def set_weight(self, percent: int) -> RolloutStatus:
        """Move the challenger's share of traffic to ``percent`` %."""

    def promote(self) -> RolloutStatus:
        """Make the challenger the champion (100 % of traffic, no canary left)."""

    def rollback(self, reason: str) -> RolloutStatus:
        """Send all traffic back to the champion and retire the challenger."""

    def status(self) -> RolloutStatus:
        """Read the current state back from the target."""


@runtime_checkable
class HoldsLease(Protocol):
    """A backend whose rollouts hold the InferenceService's Lease (the KServe backends)."""

    #: Print what would be written instead of writing it (no Lease is taken then).
    dry_run: bool

    def lease(self, duration: int | None = None) -> RolloutLease:
        """The Lease that keeps a second run off this InferenceService."""


@runtime_checkable
class OnInferenceService(Protocol):
    """A backend acting on one InferenceService (the KServe backends): what the runner's events and
    notifications name as where they happened."""

    #: The InferenceService's name.
    isvc: str
    namespace: str


@runtime_checkable
class AwaitsReady(Protocol):
    """A backend that can tell when a just-deployed challenger is Ready (KServe Standard)."""

    def wait_ready(self, timeout: float, interval: float = 2.0) -> RolloutStatus:
        """Block until the challenger reports Ready; RolloutError after ``timeout`` s."""


@runtime_checkable
class GatewayRouted(Protocol):
    """A backend whose traffic may enter through a Gateway route (KServe Standard): the gates then
    also read the gateway's series of the Services behind it."""

    namespace: str

    def gateway_services(self, challenger_uri: str | None) -> dict[str, str] | None:
        """The route's Services by role (``champion``, ``challenger``), or None without a route."""


@runtime_checkable
class Mirrors(Protocol):
    """A backend running its own router, which can mirror requests to the challenger (local). Its
    router's address is its ``url`` (a property read only once it is up, so not part of this check)."""

    def up(self, champion_uri: str, port: int | None = None, sticky: bool = False) -> RolloutStatus:
        """Start the champion behind the router."""

    def set_shadow(self, fraction: float) -> RolloutStatus:
        """Mirror ``fraction`` of the champion's requests to the challenger."""

    def detach_challenger(self) -> RolloutStatus:
        """Stop the challenger; the champion keeps serving."""


def check_percent(percent: int) -> int:
    """``percent`` as an int within 0..100, or a ValueError with a one-line message."""
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ValueError(f"traffic percent must be an integer within 0..100, got {percent!r}")
    return percent
