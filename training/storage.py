"""Where bundles go: a local directory or an ``s3://bucket/prefix`` (MinIO or any S3).

The S3 endpoint comes from :func:`common.config.s3_endpoint_from_env` and the credentials from
the usual ``AWS_*`` environment; retries and timeouts are kept short so an unreachable server
fails in seconds with a one-line :class:`~training.errors.TrainingError`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from bundle.manifest import MANIFEST, load_manifest
from common.config import s3_client as configured_s3_client
from common.config import s3_endpoint_from_env
from training.errors import TrainingError


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``."""
    rest = uri[len("s3://") :] if uri.startswith("s3://") else uri
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise TrainingError(f"{uri}: no bucket in S3 URI")
    return bucket, key.strip("/")


def s3_client() -> Any:
    """A boto3 S3 client for the configured endpoint with short timeouts and few retries."""
    return configured_s3_client(connect_timeout=5, read_timeout=30)


def _err(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def check_bucket(root: str) -> None:
    """Fail early when the S3 endpoint is unreachable or the bucket does not exist."""
    from botocore.exceptions import ClientError, NoCredentialsError

    bucket, _ = split_s3_uri(root)
    endpoint = s3_endpoint_from_env() or "the default AWS endpoint"
    try:
        s3_client().head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise TrainingError(f"S3 bucket {bucket!r} does not exist at {endpoint}") from exc
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise TrainingError(f"access to S3 bucket {bucket!r} at {endpoint} denied ({code})") from exc
        raise TrainingError(f"S3 at {endpoint} failed for bucket {bucket!r}: {_err(exc)}") from exc
    except NoCredentialsError as exc:
        raise TrainingError(f"no S3 credentials for {endpoint} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)") from exc
    except Exception as exc:  # noqa: BLE001 - connection refused, DNS, timeouts
        raise TrainingError(f"S3 endpoint {endpoint} unreachable: {_err(exc)}") from exc


def bundle_uri(root: str, model_name: str, version: str) -> str:
    """``<root>/<model_name>/<version>`` for a directory or S3 root."""
    if root.startswith("s3://"):
        bucket, prefix = split_s3_uri(root)
        key = "/".join(p for p in (prefix, model_name, version) if p)
        return f"s3://{bucket}/{key}"
    return str(Path(root.removeprefix("file://")).expanduser().resolve() / model_name / version)


def _ordered(directory: Path) -> list[Path]:
    """Bundle files with ``bundle.json`` last."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != MANIFEST)
    return [*files, directory / MANIFEST]


def publish(local_dir: Path, uri: str, digest: str) -> None:
    """Copy a written bundle to ``uri`` (bundle.json last), then verify it from there.

    On any failure, whatever was copied is removed again and a TrainingError is raised.
    """
    if uri.startswith("s3://"):
        _publish_s3(local_dir, uri, digest)
    else:
        _publish_dir(local_dir, Path(uri), digest)


def ensure_absent(uri: str) -> None:
    """Bundles are immutable: refuse a destination that already holds anything."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        try:
            found = s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix + "/", MaxKeys=1).get("KeyCount", 0)
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, timeouts
            raise TrainingError(f"could not check the bundle destination {uri}: {_err(exc)}") from exc
        if found:
            raise TrainingError(f"bundle destination {uri} already exists (bundles are never overwritten)")
    elif Path(uri.removeprefix("file://")).exists():
        raise TrainingError(f"bundle destination {uri} already exists (bundles are never overwritten)")


def _publish_dir(local_dir: Path, dest: Path, digest: str) -> None:
    ensure_absent(str(dest))
    try:
        dest.mkdir(parents=True)
        for path in _ordered(local_dir):
            shutil.copyfile(path, dest / path.name)
        load_manifest(dest, expected_digest=digest)
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(dest, ignore_errors=True)
        raise TrainingError(f"could not publish the bundle to {dest}: {_err(exc)}") from exc


def _publish_s3(local_dir: Path, uri: str, digest: str) -> None:
    bucket, prefix = split_s3_uri(uri)
    client = s3_client()
    uploaded: list[str] = []
    try:
        ensure_absent(uri)
        for path in _ordered(local_dir):
            key = f"{prefix}/{path.name}"
            client.upload_file(str(path), bucket, key)
            uploaded.append(key)
        with tempfile.TemporaryDirectory(prefix="housing-verify-") as tmp:
            download_s3(uri, Path(tmp), client=client)
            load_manifest(Path(tmp), expected_digest=digest)
    except Exception as exc:  # noqa: BLE001
        delete_s3(uri, client=client, keys=uploaded)
        raise TrainingError(f"could not upload the bundle to {uri}: {_err(exc)}") from exc


def download_s3(uri: str, dest: Path, client: Any = None) -> Path:
    """Download every object under an S3 prefix into ``dest`` (flat)."""
    bucket, prefix = split_s3_uri(uri)
    client = client or s3_client()
    dest.mkdir(parents=True, exist_ok=True)
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            name = obj["Key"][len(prefix) + 1 :]
            if name and "/" not in name:
                client.download_file(bucket, obj["Key"], str(dest / name))
    return dest


def delete_s3(uri: str, client: Any = None, keys: list[str] | None = None) -> None:
    """Best-effort removal of a published prefix (or of the given keys)."""
    try:
        bucket, prefix = split_s3_uri(uri)
        client = client or s3_client()
        if keys is None:
            keys = [
                o["Key"]
                for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
                for o in page.get("Contents", [])
            ]
        # bundle.json first, so a half-deleted prefix is never mistaken for a bundle
        for key in sorted(keys, key=lambda k: not k.endswith("/" + MANIFEST)):
            client.delete_object(Bucket=bucket, Key=key)
    except Exception:  # noqa: BLE001,S110 - the server may be the thing that is down
        pass


def unpublish(uri: str) -> None:
    """Remove a published bundle (used when registration fails after the upload)."""
    if uri.startswith("s3://"):
        delete_s3(uri)
    else:
        path = Path(uri)
        (path / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)


def read_manifest(uri: str, digest: str | None) -> dict[str, Any]:
    """The ``bundle.json`` of the bundle at ``uri`` (one small read), checked against ``digest``."""
    import hashlib
    import json

    try:
        if uri.startswith("s3://"):
            bucket, prefix = split_s3_uri(uri)
            raw = s3_client().get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")["Body"].read()
        else:
            raw = (Path(uri.removeprefix("file://")) / MANIFEST).read_bytes()
    except Exception as exc:  # noqa: BLE001 - missing object, connection refused, permissions
        raise TrainingError(f"cannot read {MANIFEST} of the bundle {uri}: {_err(exc)}") from exc
    if digest and hashlib.sha256(raw).hexdigest() != digest:
        raise TrainingError(f"{uri}/{MANIFEST} does not match the digest {digest} recorded in the registry")
    return json.loads(raw)
