"""The install's registered digest, recorded in the cluster: the chart's first bundle pinned without MLflow.

``helm install`` renders the InferenceService before its training Job has written and registered the
bundle, so the chart cannot put the digest into the predictor's ``HOUSING_BUNDLE_DIGEST``. Instead the
predictor reads that variable from the release's ConfigMap ``<release>-bundle-pins``
(``valueFrom.configMapKeyRef``, key :func:`pin_key` of its storage URI), and the install's training
Job, once MLflow has registered the version (tag ``bundle_digest``), writes that same digest under
that key (:func:`record_pin`; ``HOUSING_PIN_CONFIGMAP`` / ``HOUSING_PIN_NAMESPACE`` name the
ConfigMap; the Job's own ServiceAccount may get and patch that one ConfigMap, nothing else).

So a predictor pod never asks MLflow: the pin lives in the cluster's API, survives a restart or loss
of the registry (the dev stack's MLflow keeps its registry on an emptyDir) and every later pod of
that URI reads it. Until the key exists the kubelet does not start the predictor container (the pod
shows ``CreateContainerConfigError: couldn't find key <key> in ConfigMap …`` and retries): nothing
unpinned is ever served. A ``bundle.json`` changed in the bucket after the registration fails the
predictor's digest check, so that pod never turns Ready.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from common.kube import load_config
from common.urls import redact

#: The training Job's variables naming the ConfigMap it records the digest in (the chart sets them
#: on the install's Job only).
PIN_CONFIGMAP_ENV = "HOUSING_PIN_CONFIGMAP"
PIN_NAMESPACE_ENV = "HOUSING_PIN_NAMESPACE"
_NOT_A_KEY_CHAR = re.compile(r"[^-._a-zA-Z0-9]")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class PinError(RuntimeError):
    """The digest could not be recorded; one line saying why."""


def pin_key(uri: str) -> str:
    """The ConfigMap key of the bundle at ``uri``: the URI without one trailing ``/``, every character a
    ConfigMap key may not hold replaced by ``_`` (``s3://models/housing/1`` → ``s3___models_housing_1``).
    The chart computes the same (``housing.pinKey`` in ``_helpers.tpl``; a render test holds them equal).
    Two URIs sharing a key could only make a pod refuse a bundle, never serve an unregistered one: the
    digest is still checked against the bundle's own ``bundle.json``."""
    return _NOT_A_KEY_CHAR.sub("_", uri.removesuffix("/"))


def record_pin(
    uri: str,
    digest: str,
    configmap: str,
    namespace: str,
    api: Any = None,
    *,
    attempts: int = 10,
    interval: float = 3.0,
    say: Callable[[str], None] = print,
) -> None:
    """Write ``digest`` under :func:`pin_key` of ``uri`` in the ConfigMap ``namespace/configmap`` (a
    strategic-merge patch: other keys stay). Retried ``attempts`` times ``interval`` s apart (the API
    server restarting, the ConfigMap not yet created by helm); raises :class:`PinError` after."""
    if not _SHA256.fullmatch(digest):
        raise PinError(f"refusing to pin {redact(uri)} to {digest!r}: not a sha256 (64 lowercase hex digits)")
    if api is None:
        api = core_api()
    key, last = pin_key(uri), ""
    for attempt in range(1, attempts + 1):
        try:
            api.patch_namespaced_config_map(configmap, namespace, {"data": {key: digest}})
        except Exception as exc:  # noqa: BLE001 - ApiException, connection errors: all retried
            status = getattr(exc, "status", None)
            last = f"HTTP {status}: {getattr(exc, 'reason', '')}" if status else f"{type(exc).__name__}: {exc}"
            if status in (401, 403):
                break  # no retry makes RBAC agree
            if attempt < attempts:
                time.sleep(interval)
            continue
        say(f"pinned {redact(uri)} to {digest} in ConfigMap {namespace}/{configmap} (key {key})")
        return
    raise PinError(f"could not record the digest of {redact(uri)} in ConfigMap {namespace}/{configmap}: {last}")


def core_api() -> Any:  # pragma: no cover - needs a cluster
    """A CoreV1Api from the pod's ServiceAccount token, else ~/.kube/config."""
    from kubernetes import client

    load_config()
    return client.CoreV1Api()


def pin_target() -> tuple[str, str] | None:
    """(ConfigMap, namespace) from ``HOUSING_PIN_CONFIGMAP`` / ``HOUSING_PIN_NAMESPACE``; None when unset."""
    configmap = os.environ.get(PIN_CONFIGMAP_ENV, "").strip()
    if not configmap:
        return None
    namespace = os.environ.get(PIN_NAMESPACE_ENV, "").strip()
    if not namespace:
        raise PinError(f"{PIN_CONFIGMAP_ENV} is set but {PIN_NAMESPACE_ENV} is not")
    return configmap, namespace
