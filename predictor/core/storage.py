"""Where the bundle comes from: a mounted directory, a local path, ``s3://`` or the MLflow registry.

* ``--model_dir`` (default ``/mnt/models``): KServe's storage-initializer already put it there.
* ``--storage_uri``: ``file://`` or a local path (served in place); ``s3://bucket/prefix`` (MinIO
  through ``AWS_ENDPOINT_URL``, with kserve-storage's S3 client settings); or
  ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION``, resolved through the MLflow registry
  (:mod:`registry.resolve`) to the bundle URI (and digest) the training run recorded.

An ``s3://`` bundle is fetched by name, not by listing: ``<prefix>/bundle.json`` first, then each
file it lists, each name checked to be flat (no ``/``, no ``..``) and written under the target
directory. kserve-storage's ``Storage.download`` wrote every key under the prefix to
``f"{dir}/{key}"`` (a key with ``../`` escaped it) and matched the prefix without a trailing ``/``
(``housing/1`` also pulled ``housing/10/…``). What was fetched is verified afterwards by
:func:`bundle.manifest.load_manifest` (every digest). URIs in messages carry no credentials.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

from bundle.manifest import MANIFEST
from common.config import s3_endpoint_from_env
from common.urls import redact
from registry.resolve import MODELS_SCHEME, RegistryError, resolve_uri, short_error

log = logging.getLogger("predictor")
#: A file name a bundle may list: flat, no path separators, not "." or "..".
FLAT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
#: The largest bundle.json read (a real one is a few kB).
MAX_MANIFEST_BYTES = 1 << 20
SCHEMES = ("s3://", "file://")


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
    if "://" in uri and not uri.startswith(SCHEMES):
        raise StorageError(f"{redact(uri)}: unsupported scheme; a bundle URI is s3://, file:// or a path")
    if not uri.startswith("s3://"):
        local = Path(uri.removeprefix("file://"))
        if not local.is_dir():
            raise StorageError(f"{redact(uri)}: not a directory")
        return local, digest  # already local: serve in place
    endpoint = s3_endpoint_from_env()
    if endpoint and not os.environ.get("AWS_ENDPOINT_URL"):
        os.environ["AWS_ENDPOINT_URL"] = endpoint  # kserve-storage's client settings read AWS_ENDPOINT_URL
    target = Path(out_dir or tempfile.mkdtemp(prefix="housing-model-"))
    try:
        _download_s3(uri, target)
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore raises its own types
        raise StorageError(f"{redact(uri)}: download failed ({short_error(exc)})") from exc
    return target, digest


def s3_location(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → (``bucket``, ``a/b/``): the prefix always ends in ``/``, so it is exact."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    if not bucket or not prefix:
        raise StorageError(f"{redact(uri)}: expected s3://BUCKET/PREFIX")
    return bucket, prefix + "/"


def listed_files(manifest: bytes, where: str) -> list[str]:
    """The file names ``bundle.json`` lists, each a flat name (refused before anything is written)."""
    try:
        files = json.loads(manifest)["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{where}{MANIFEST}: no files listed ({type(exc).__name__})") from None
    if not isinstance(files, dict):
        raise StorageError(f"{where}{MANIFEST}: files must be an object of name → sha256")
    for name in files:
        if not FLAT_NAME.fullmatch(name) or name == MANIFEST:
            raise StorageError(f"{where}{MANIFEST}: listed file {name[:80]!r} is not a flat file name")
    return sorted(files)


def _download_s3(uri: str, target: Path) -> None:
    import boto3
    from kserve_storage import Storage

    bucket, prefix = s3_location(uri)
    where = f"s3://{bucket}/{prefix}"
    client = boto3.client("s3", **Storage._get_s3_client_kwargs())  # the storage-initializer's settings
    head = client.head_object(Bucket=bucket, Key=prefix + MANIFEST)
    if head["ContentLength"] > MAX_MANIFEST_BYTES:
        raise StorageError(f"{where}{MANIFEST}: {head['ContentLength']} bytes, more than {MAX_MANIFEST_BYTES}")
    manifest = client.get_object(Bucket=bucket, Key=prefix + MANIFEST)["Body"].read(MAX_MANIFEST_BYTES + 1)
    names = listed_files(manifest, where)
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        client.download_file(bucket, prefix + name, str(target / name))
    (target / MANIFEST).write_bytes(manifest)  # last: a directory without it is no bundle
    log.info("downloaded %s: %s and %d listed files", where, MANIFEST, len(names))
