"""Kubernetes objects for traefik's Kubernetes Gateway provider (scripts/gateway/traefik.sh).

``rbac``: the ClusterRole traefik documents for its Gateway provider (its module tree's
``kubernetes-gateway-rbac.yml``), renamed ``housing-traefik-gateway`` and bound to the identity
traefik runs as — a client-certificate user on the node tier (scripts/node/gateway-up.sh), a
ServiceAccount on kind. ``kind``: that, plus the namespace (Pod Security ``restricted``), the
ServiceAccount, the Deployment running traefik with the flags read from stdin (one per line:
``traefik_args``) and the NodePort Service kind publishes (scripts/kind/gateway.sh).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

NAME = "housing-traefik-gateway"
LABELS = {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/part-of": "housing"}
#: Pod Security: pods refused (enforce) and the Deployment warned about (warn) unless restricted.
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}


def rbac(path: str, subject: dict[str, str]) -> list[dict[str, Any]]:
    """traefik's documented ClusterRole and ClusterRoleBinding, renamed and bound to ``subject``."""
    with open(path) as handle:
        docs = [d for d in yaml.safe_load_all(handle) if d]
    for doc in docs:
        doc["metadata"]["name"] = NAME
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = NAME
            doc["subjects"] = [subject]
    return docs


def kind_objects(args: argparse.Namespace, flags: list[str]) -> list[dict[str, Any]]:
    """traefik in-cluster: namespace, ServiceAccount, RBAC, Deployment, NodePort Service."""
    ns = args.namespace
    sa = {"kind": "ServiceAccount", "name": "traefik", "namespace": ns}
    ports = {"web": args.web_port, "grpc": args.grpc_port, "metrics": args.metrics_port}
    restricted = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "name": "traefik",
        "image": f"docker.io/library/traefik:{args.version}",
        "args": flags,
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports.items()],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": "metrics"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/ping", "port": "metrics"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": restricted,
    }
    pod_labels = {**LABELS, "app.kubernetes.io/component": "gateway"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {**LABELS, **RESTRICTED}},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "traefik", "namespace": ns}},
        *rbac(args.rbac, sa),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "traefik", "namespace": ns, "labels": pod_labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": pod_labels},
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": {  # the chart's monitoring scrapes the gateway's per-backend series
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(args.metrics_port),
                            "prometheus.io/path": "/metrics",
                        },
                    },
                    "spec": {
                        "serviceAccountName": "traefik",
                        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [container],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "traefik", "namespace": ns, "labels": pod_labels},
            "spec": {
                "type": "NodePort",
                "selector": pod_labels,
                "ports": [
                    {"name": "web", "port": args.web_port, "targetPort": "web", "nodePort": args.web_node_port},
                    {
                        "name": "grpc",
                        "port": args.grpc_port,
                        "targetPort": "grpc",
                        "nodePort": args.grpc_node_port,
                        "appProtocol": "kubernetes.io/h2c",
                    },
                ],
            },
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("rbac", help="the RBAC bound to a user (the node tier)")
    node.add_argument("--rbac", required=True, help="traefik's kubernetes-gateway-rbac.yml")
    node.add_argument("--user", required=True)
    kind = sub.add_parser("kind", help="traefik in-cluster (kind); its flags on stdin, one per line")
    kind.add_argument("--rbac", required=True)
    kind.add_argument("--version", required=True)
    kind.add_argument("--namespace", required=True)
    for name in ("web-port", "grpc-port", "metrics-port", "web-node-port", "grpc-node-port"):
        kind.add_argument(f"--{name}", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "rbac":
        docs = rbac(args.rbac, {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": args.user})
    else:
        docs = kind_objects(args, [line for line in sys.stdin.read().splitlines() if line.strip()])
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
