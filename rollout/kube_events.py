"""Kubernetes Events on the InferenceService: what the rollout runner did, for ``kubectl describe``
and ``housing rollout status``.

:class:`EventRecorder` writes one core/v1 Event per rollout event (reason ``Rollout<What>``,
source ``housing-rollout``); a write that fails is logged, never raised — the rollout goes on.
:func:`recent_events` reads them back, newest last.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from common.kube import load_config
from rollout.backends.kserve_common import GROUP, VERSION

log = logging.getLogger("housing.rollout.events")

COMPONENT = "housing-rollout"
#: Events carry at most this much message (the API server refuses more than 1 kB on events.k8s.io)
MAX_MESSAGE = 1000


def core_api(api_client: Any | None = None) -> Any:  # pragma: no cover - needs a cluster
    """A CoreV1Api from ``api_client``, else the in-cluster config or ~/.kube/config."""
    from kubernetes import client

    if api_client is None:
        load_config()
    return client.CoreV1Api(api_client)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Events about one InferenceService, written through a CoreV1Api."""

    def __init__(self, api: Any, namespace: str, isvc: str, uid: str | None = None, host: str = "") -> None:
        self.api, self.namespace, self.isvc, self.uid, self.host = api, namespace, isvc, uid, host
        self.failures = 0

    def record(self, reason: str, message: str, warning: bool = False) -> None:
        """Create one Event (Normal, or Warning); failures are logged and counted, not raised."""
        now = _now()
        involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "name": self.isvc}
        involved["namespace"] = self.namespace
        if self.uid:
            involved["uid"] = self.uid
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{self.isvc}.{uuid.uuid4().hex[:16]}", "namespace": self.namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT, **({"host": self.host} if self.host else {})},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.host or COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.api.create_namespaced_event(self.namespace, body)
        except Exception as exc:  # noqa: BLE001 - ApiException or a connection error: the rollout goes on
            self.failures += 1
            log.warning("event %s on %s/%s not written: %s", reason, self.namespace, self.isvc, str(exc)[:200])


def recent_events(api: Any, namespace: str, isvc: str, limit: int = 20) -> list[dict[str, Any]]:
    """The rollout Events on ``isvc``, oldest first (the last ``limit``): time, type, reason, message."""
    selector = f"involvedObject.name={isvc},involvedObject.kind=InferenceService"
    items = api.list_namespaced_event(namespace, field_selector=selector).items
    ours = [e for e in items if (e.source and e.source.component == COMPONENT) or e.reporting_component == COMPONENT]

    def when(e: Any) -> str:
        ts = e.last_timestamp or e.first_timestamp or e.event_time or e.metadata.creation_timestamp
        return ts.isoformat() if ts else ""

    ours.sort(key=lambda e: (when(e), int(e.metadata.resource_version or 0)))
    return [{"time": when(e), "type": e.type, "reason": e.reason, "message": e.message} for e in ours[-limit:]]
