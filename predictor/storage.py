"""Where the bundle comes from: a mounted directory, or a URI downloaded like KServe does.

* ``--model_dir`` (default ``/mnt/models``): KServe's storage-initializer already put it there.
* ``--storage_uri``: ``s3://`` (MinIO through ``AWS_ENDPOINT_URL``), ``file://``, a local path,
  anything else kserve-storage understands — downloaded with ``kserve_storage.Storage.download``,
  the code the storage-initializer runs — or ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``,
  resolved through the MLflow registry (:mod:`bundle.registry`) to the bundle URI (and digest) the training run recorded
  in its model-version tags.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bundle.registry import MODELS_SCHEME, RegistryError, resolve_uri
from housing.config import s3_endpoint_from_env


class StorageError(RuntimeError):
    """The bundle could not be located or downloaded."""


def download(uri: str, out_dir: str | None = None) -> tuple[Path, str | None]:
    """Make the bundle at ``uri`` available locally; returns (directory, registry digest)."""
    digest = None
    if uri.startswith(MODELS_SCHEME):
        try:
            resolved = resolve_uri(uri)
        except RegistryError as exc:
            raise StorageError(str(exc)) from exc
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
