"""One rollout at a time per InferenceService: a ``coordination.k8s.io/v1`` Lease next to it.

``housing rollout run`` takes the Lease ``<isvc>-rollout`` (holder: user@host:pid:nonce, a
duration), renews it from a background thread while it runs, writes its progress onto the
Lease's annotations (challenger, step, weight, event log) and releases it at the end. A second
run refuses while the Lease is held and not expired, naming the holder; a holder that crashed
stops renewing, so its Lease expires after ``duration`` seconds and the next run takes it over.
``housing rollout status`` reads the same Lease to say where a run stopped.

Writes carry the resourceVersion read before them (a replace of a stale object is a 409), so two
runs racing for a free Lease cannot both win. The Lease is a plain API object: the rollout Role
of the chart may get/create/update it, nothing else.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rollout.errors import RolloutError

GROUP, VERSION, PLURAL = "coordination.k8s.io", "v1", "leases"
PROGRESS_PREFIX = "rollout.housing.dev/"
DEFAULT_DURATION = 120


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(ts: datetime) -> str:
    """A MicroTime as the API server writes it."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def new_holder() -> str:
    """Who holds a Lease: user@host:pid:nonce (the nonce tells two runs of one process apart)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class LeaseState:
    """What a Lease says: its holder (None when released), since when, until when, the progress."""

    holder: str | None
    acquired: datetime | None
    renewed: datetime | None
    duration: int
    progress: dict[str, str] = field(default_factory=dict)

    @property
    def expires(self) -> datetime | None:
        return self.renewed + timedelta(seconds=self.duration) if self.renewed else None

    def live(self, now: datetime | None = None) -> bool:
        """Held, and renewed within its duration."""
        return bool(self.holder) and self.expires is not None and self.expires > (now or _now())

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """The Lease for ``status --json``: holder, times (RFC 3339), live, progress."""
        return {
            "holder": self.holder,
            "live": self.live(now),
            "acquired": self.acquired.isoformat() if self.acquired else None,
            "renewed": self.renewed.isoformat() if self.renewed else None,
            "expires": self.expires.isoformat() if self.expires else None,
            "duration_seconds": self.duration,
            "progress": dict(self.progress),
        }

    def describe(self, now: datetime | None = None) -> str:
        now = now or _now()
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.progress.items()))
        if self.live(now):
            left = (self.expires - now).total_seconds() if self.expires else 0
            return f"held by {self.holder} (expires in {left:.0f} s)" + (f"; {where}" if where else "")
        if self.holder:
            stopped = f"last held by {self.holder}, expired (the run stopped without releasing it)"
            return stopped + (f"; {where}" if where else "")
        return "free" + (f"; last run: {where}" if where else "")


def lease_name(isvc: str) -> str:
    return f"{isvc}-rollout"


class RolloutLease:
    """The Lease of one InferenceService, through a CustomObjectsApi (any API group works there)."""

    def __init__(
        self, api: Any, namespace: str, isvc: str, holder: str | None = None, duration: int = DEFAULT_DURATION
    ):
        self.api, self.namespace, self.isvc = api, namespace, isvc
        self.name = lease_name(isvc)
        self.holder = holder or new_holder()
        self.duration = duration
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.progress: dict[str, str] = {}
        self.renew_error: str | None = None

    # -- reading -----------------------------------------------------------------------------
    def _get(self) -> dict | None:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        except Exception as exc:  # noqa: BLE001 - ApiException or a connection error
            if getattr(exc, "status", None) == 404:
                return None
            if getattr(exc, "status", None) == 403:
                raise RolloutError(
                    f"reading Lease {self.namespace}/{self.name} is forbidden: the rollout needs get/create/update "
                    "on leases.coordination.k8s.io in the namespace (the chart's rollout Role grants them)"
                ) from exc
            raise RolloutError(f"cannot read Lease {self.namespace}/{self.name}: {_short(exc)}") from exc

    @staticmethod
    def state_of(obj: dict | None) -> LeaseState | None:
        if obj is None:
            return None
        spec = obj.get("spec") or {}
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        progress = {k[len(PROGRESS_PREFIX) :]: v for k, v in annotations.items() if k.startswith(PROGRESS_PREFIX)}
        return LeaseState(
            holder=spec.get("holderIdentity") or None,
            acquired=_parse(spec.get("acquireTime")),
            renewed=_parse(spec.get("renewTime")),
            duration=int(spec.get("leaseDurationSeconds") or DEFAULT_DURATION),
            progress=progress,
        )

    def state(self) -> LeaseState | None:
        """The Lease as it is now (None: no run ever took it)."""
        return self.state_of(self._get())

    def check_free(self) -> None:
        """RolloutError naming the holder when another live run holds the Lease."""
        state = self.state()
        if state is not None and state.live() and state.holder != self.holder:
            raise RolloutError(self._busy(state))

    def _busy(self, state: LeaseState) -> str:
        return f"another rollout of {self.namespace}/{self.isvc} is running: Lease {self.name} {state.describe()}"

    # -- writing -----------------------------------------------------------------------------
    def _body(self, obj: dict | None, holder: str | None, acquired: bool) -> dict:
        now = _micro(_now())
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": dict((obj or {}).get("spec") or {}),
        }
        if obj is not None:
            body["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
            kept = dict((obj["metadata"].get("annotations")) or {})
            if acquired:  # a new run: the last run's progress is not this one's (acquire() returned it)
                kept = {k: v for k, v in kept.items() if not k.startswith(PROGRESS_PREFIX)}
            body["metadata"]["annotations"] = kept
        annotations = body["metadata"].setdefault("annotations", {})
        for key, value in self.progress.items():
            annotations[PROGRESS_PREFIX + key] = value
        body["spec"]["holderIdentity"] = holder
        body["spec"]["leaseDurationSeconds"] = self.duration
        body["spec"]["renewTime"] = now
        if acquired:
            body["spec"]["acquireTime"] = now
            transitions = int(body["spec"].get("leaseTransitions") or 0)
            body["spec"]["leaseTransitions"] = transitions + (1 if obj is not None else 0)
        if holder is None:
            body["spec"].pop("holderIdentity")
        return body

    def _write(self, obj: dict | None, holder: str | None, acquired: bool = False) -> None:
        body = self._body(obj, holder, acquired)
        try:
            if obj is None:
                self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
            else:
                self.api.replace_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name, body)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) == 409:
                raise RolloutError(
                    f"another rollout of {self.namespace}/{self.isvc} took Lease {self.name} at the same moment"
                ) from exc
            raise RolloutError(f"cannot write Lease {self.namespace}/{self.name}: {_short(exc)}") from exc

    def acquire(self) -> LeaseState | None:
        """Take the Lease (refused while another live holder has it); returns what it said before."""
        with self._lock:
            obj = self._get()
            before = self.state_of(obj)
            if before is not None and before.live() and before.holder != self.holder:
                raise RolloutError(self._busy(before))
            self._write(obj, self.holder, acquired=True)
            return before

    def renew(self, **progress: Any) -> None:
        """Extend the Lease (and record progress); RolloutError if another holder took it meanwhile."""
        with self._lock:
            self.progress.update({k: str(v) for k, v in progress.items()})
            obj = self._get()
            state = self.state_of(obj)
            if state is None or state.holder != self.holder:
                raise RolloutError(
                    f"lost Lease {self.namespace}/{self.name}: now {state.describe() if state else 'deleted'}"
                )
            self._write(obj, self.holder)

    def release(self, **progress: Any) -> None:
        """Give the Lease up (keeping the last progress on it); a no-op if someone else holds it."""
        self.stop_renewing()
        with self._lock:
            self.progress.update({k: str(v) for k, v in progress.items()})
            obj = self._get()
            state = self.state_of(obj)
            if state is not None and state.holder == self.holder:
                self._write(obj, None)

    def keep_renewed(self) -> None:
        """Renew every duration/3 s from a daemon thread until :meth:`release`."""

        def loop() -> None:
            while not self._stop.wait(self.duration / 3):
                try:
                    self.renew()
                    self.renew_error = None
                except RolloutError as exc:
                    self.renew_error = str(exc)

        self._thread = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


def _short(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    status = getattr(exc, "status", None)
    return f"{status} {reason}" if status else str(exc).splitlines()[0][:200]
