"""Where the kubernetes client finds its cluster: one rule for every writer we run in a pod or on a laptop."""

from __future__ import annotations


def load_config() -> None:  # pragma: no cover - needs a cluster
    """Configure the kubernetes client from the pod's ServiceAccount (in-cluster), else ~/.kube/config."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
