"""Where the bundle comes from: a mounted directory, or a URI downloaded like KServe does.

* ``--model_dir`` (default ``/mnt/models``): KServe's storage-initializer already put it there.
* ``--storage_uri``: ``s3://`` (MinIO through ``AWS_ENDPOINT_URL``), ``file://``, a local path,
  anything else kserve-storage understands — downloaded with ``kserve_storage.Storage.download``,
  the code the storage-initializer runs — or ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``,
  resolved through the MLflow registry to the bundle URI (and digest) the training run recorded
  in its model-version tags.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from housing.config import TAG_BUNDLE_DIGEST, TAG_BUNDLE_URI, load_settings, s3_endpoint_from_env


class StorageError(RuntimeError):
    """The bundle could not be located or downloaded."""


@dataclass
class Resolved:
    uri: str  # the bundle URI after resolving models:/
    digest: str | None  # the bundle digest recorded in the registry, if any
    source: str  # what the user asked for


def resolve_models_uri(uri: str, tracking_uri: str | None = None) -> Resolved:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` → the registered bundle URI + digest."""
    from mlflow import MlflowClient

    spec = uri[len("models:/") :]
    client = MlflowClient(tracking_uri=tracking_uri or load_settings().tracking_uri)
    try:
        if "@" in spec:
            name, alias = spec.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        elif "/" in spec:
            name, version = spec.split("/", 1)
            mv = client.get_model_version(name, version)
        else:
            raise StorageError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - MlflowException, connection errors
        raise StorageError(f"{uri}: cannot resolve through MLflow ({' '.join(str(exc).split())[:300]})") from exc
    tags = mv.tags or {}
    bundle_uri = tags.get(TAG_BUNDLE_URI)
    if not bundle_uri:
        raise StorageError(f"{uri}: model version {mv.version} has no {TAG_BUNDLE_URI!r} tag")
    return Resolved(bundle_uri, tags.get(TAG_BUNDLE_DIGEST), uri)


def download(uri: str, out_dir: str | None = None) -> tuple[Path, str | None]:
    """Make the bundle at ``uri`` available locally; returns (directory, registry digest)."""
    digest = None
    if uri.startswith("models:/"):
        resolved = resolve_models_uri(uri)
        uri, digest = resolved.uri, resolved.digest
    if uri.startswith("s3://"):
        endpoint = s3_endpoint_from_env()
        if endpoint and not os.environ.get("AWS_ENDPOINT_URL"):
            os.environ["AWS_ENDPOINT_URL"] = endpoint  # kserve-storage reads AWS_ENDPOINT_URL
    local = uri[len("file://") :] if uri.startswith("file://") else uri
    if "://" not in local and Path(local).is_dir():
        return Path(local), digest  # already local: serve in place
    from kserve_storage import Storage

    target = out_dir or tempfile.mkdtemp(prefix="housing-model-")
    try:
        path = Storage.download(uri, target)
    except Exception as exc:  # noqa: BLE001 - every backend raises its own types
        raise StorageError(f"{uri}: download failed ({' '.join(str(exc).split())[:300]})") from exc
    return Path(path), digest
