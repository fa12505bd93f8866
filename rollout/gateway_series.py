"""Names of the gateway's Prometheus series the gates read (traefik v3's): spelled once, here.

traefik counts every request it forwards per backend *service* — refused connections (502),
timeouts (504) and no endpoints (503) included — in ``traefik_service_requests_total`` (labels
``service``, ``code``, ``method``, ``protocol``) and times it in
``traefik_service_request_duration_seconds``. Its Kubernetes Gateway provider names the service
of a ``backendRef`` after the Kubernetes Service: ``<namespace>-<name>-http-<port>`` for an
HTTPRoute and ``<namespace>-<name>-<port>-grpc`` for a GRPCRoute, with the provider's
``@kubernetesgateway`` suffix (``pkg/provider/kubernetes/gateway/httproute.go``, ``grpcroute.go``).
"""

from __future__ import annotations

import re

GATEWAY_REQUESTS_TOTAL = "traefik_service_requests_total"
GATEWAY_REQUEST_SECONDS = "traefik_service_request_duration_seconds"
SERVICE_LABEL = "service"
PROVIDER = "kubernetesgateway"


#: A Kubernetes namespace or Service name (an RFC 1123 label): nothing in it is special to a regex.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def service_regex(namespace: str, service: str) -> str:
    r"""A PromQL regex of the gateway's series of Kubernetes Service ``namespace/service`` (REST and gRPC).

    The names go in as they are: both are DNS labels, with no regex metacharacter to escape — and
    Python's ``re.escape`` would write ``\-``, which PromQL's string literal refuses ("unknown escape
    sequence"), so Prometheus answered every gateway query with an error.
    """
    for what, name in (("namespace", namespace), ("service", service)):
        if not _DNS_LABEL.fullmatch(name):
            raise ValueError(f"{what} {name!r} is not a Kubernetes name (RFC 1123 label)")
    return f"{namespace}-{service}-(http-[0-9]+|[0-9]+-grpc)@{PROVIDER}"
