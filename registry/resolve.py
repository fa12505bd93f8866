"""``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` → the registered bundle's URI and digest: what serving asks.

A registered version points at its bundle through the tags ``bundle_uri`` and ``bundle_digest``
(:data:`common.config.TAG_BUNDLE_URI`, :data:`~common.config.TAG_BUNDLE_DIGEST`). For an http(s)
tracking URI the version is read over MLflow's REST API, so the serving image needs no ``mlflow``
package; MLflow is imported only inside functions, for the embedded (sqlite) store. The lifecycle
(register, promote, reject: :mod:`registry.lifecycle`) builds on the same types.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from common.config import TAG_BUNDLE_DIGEST, TAG_BUNDLE_URI, load_settings
from common.urls import redact

MODELS_SCHEME = "models:/"
#: The schemes a registered bundle URI may have (besides a plain path).
BUNDLE_URI_SCHEMES = ("s3://", "file://")


class RegistryError(RuntimeError):
    """The registry cannot be reached, or refuses what was asked; one line saying why."""


@dataclass
class VersionInfo:
    """A registered version and the bundle it points at."""

    version: str
    bundle_uri: str | None
    digest: str | None
    tags: dict[str, str]


@dataclass
class Resolved:
    """A ``models:/`` URI resolved to its bundle."""

    uri: str  # the bundle URI after resolving models:/
    digest: str | None  # the bundle digest recorded in the registry, if any
    source: str  # what the user asked for


def short_error(exc: BaseException) -> str:
    """``exc`` on one line of at most 300 characters, with the URLs in it redacted."""
    text = " ".join(str(exc).split())
    # URLs inside library messages may carry user:password@ or a presigned query: keep them out
    text = re.sub(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+", lambda m: redact(m.group(0)), text)
    return text[:300] or type(exc).__name__


def client(tracking_uri: str | None = None) -> Any:
    """An ``MlflowClient`` for ``tracking_uri`` (default: :func:`common.config.load_settings`)."""
    from mlflow import MlflowClient

    uri = tracking_uri or load_settings().tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def version_info(mv: Any) -> VersionInfo:
    """An MLflow ``ModelVersion`` as a :class:`VersionInfo`."""
    tags = dict(mv.tags or {})
    return VersionInfo(str(mv.version), tags.get(TAG_BUNDLE_URI), tags.get(TAG_BUNDLE_DIGEST), tags)


def resolve_uri(uri: str, tracking_uri: str | None = None) -> Resolved:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` → the registered bundle URI + digest.

    An ``http(s)://`` tracking URI is asked through MLflow's REST API (:func:`_rest_version`: the
    serving image has no ``mlflow`` package); any other (the embedded sqlite store) through MLflow.
    """
    spec = uri[len(MODELS_SCHEME) :]
    if "@" in spec:
        name, alias = spec.split("@", 1)
        path, params = "registered-models/alias", {"name": name, "alias": alias}
    elif "/" in spec:
        name, version = spec.split("/", 1)
        path, params = "model-versions/get", {"name": name, "version": version}
    else:
        raise RegistryError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    tracking = tracking_uri or load_settings().tracking_uri
    try:
        if tracking.startswith(("http://", "https://")):
            info = _rest_version(tracking, path, params)
        elif "alias" in params:
            info = version_info(client(tracking).get_model_version_by_alias(name, params["alias"]))
        else:
            info = version_info(client(tracking).get_model_version(name, params["version"]))
    except Exception as exc:  # noqa: BLE001 - MlflowException, HTTP and connection errors
        raise RegistryError(f"{uri}: cannot resolve through MLflow ({short_error(exc)})") from exc
    if not info.bundle_uri:
        raise RegistryError(f"{uri}: model version {info.version} has no {TAG_BUNDLE_URI!r} tag")
    if "://" in info.bundle_uri and not info.bundle_uri.startswith(BUNDLE_URI_SCHEMES):
        # an http(s):// tag would have the predictor fetch whatever it names (SSRF)
        raise RegistryError(
            f"{uri}: model version {info.version}'s {TAG_BUNDLE_URI!r} tag {redact(info.bundle_uri)} "
            "is not an s3:// or file:// URI or a path"
        )
    return Resolved(info.bundle_uri, info.digest, uri)


def _rest_version(tracking_uri: str, path: str, params: dict[str, str]) -> VersionInfo:
    """One model version from MLflow's REST API (``GET /api/2.0/mlflow/<path>``), with MLflow's
    client settings: ``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``,
    ``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``,
    ``MLFLOW_HTTP_REQUEST_TIMEOUT``. Raises ``RuntimeError`` with MLflow's error code and message."""
    import httpx

    env = os.environ.get
    headers = {"Authorization": f"Bearer {env('MLFLOW_TRACKING_TOKEN')}"} if env("MLFLOW_TRACKING_TOKEN") else {}
    user, password = env("MLFLOW_TRACKING_USERNAME"), env("MLFLOW_TRACKING_PASSWORD")
    verify: bool | str = env("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    if (env("MLFLOW_TRACKING_INSECURE_TLS") or "").lower() in ("1", "true"):
        verify = False
    with httpx.Client(
        auth=(user, password) if user and password else None,
        timeout=float(env("MLFLOW_HTTP_REQUEST_TIMEOUT") or 20),
        transport=httpx.HTTPTransport(retries=2, verify=verify),  # connection failures only
    ) as http:
        r = http.get(f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}", params=params, headers=headers)
    try:
        body = r.json()
    except ValueError:
        body = {}
    if r.status_code != 200 or "model_version" not in body:
        detail = ": ".join(str(body[k]) for k in ("error_code", "message") if k in body) or r.text[:200]
        raise RuntimeError(f"HTTP {r.status_code} from {redact(str(r.request.url))}: {detail}")
    mv = body["model_version"]
    tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
    return VersionInfo(str(mv["version"]), tags.get(TAG_BUNDLE_URI), tags.get(TAG_BUNDLE_DIGEST), tags)
