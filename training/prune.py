"""Bundles no registered version references: find them, and delete them when asked.

A bundle can stay behind unregistered (S3 or MLflow died between upload and registration, or a
version was deleted in MLflow). :func:`find_orphans` lists every bundle folder two levels under
the bundle root (``<root>/<model>/<version>``, where training writes) that no version of any
registered model points at through its ``bundle_uri`` tag, with its age (its newest file);
folders without ``bundle.json`` (a partial upload) count too. One younger than the grace period
is kept whatever it is — a training run may be uploading it right now. The registry must be
readable: when it is not, nothing is listed as an orphan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bundle.manifest import MANIFEST
from training.errors import TrainingError
from training.storage import s3_client, split_s3_uri

#: Default grace period: a bundle younger than this is never pruned.
DEFAULT_GRACE_HOURS = 24.0


@dataclass
class Candidate:
    """A bundle folder no registered version references."""

    uri: str
    age_hours: float
    files: int
    complete: bool  # has bundle.json
    keys: list[str]  # S3 keys (empty for a directory)


def _groups_s3(root: str) -> dict[str, tuple[list[str], float]]:
    bucket, prefix = split_s3_uri(root)
    base = f"{prefix}/" if prefix else ""
    groups: dict[str, tuple[list[str], float]] = {}
    now = time.time()
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
    for page in pages:
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(base) :].split("/")
            if len(parts) != 3:  # <model>/<version>/<file> only
                continue
            uri = f"s3://{bucket}/{base}{parts[0]}/{parts[1]}"
            keys, newest = groups.get(uri, ([], float("inf")))
            age = (now - obj["LastModified"].timestamp()) / 3600
            keys.append(obj["Key"])
            groups[uri] = (keys, min(newest, age))
    return groups


def _groups_dir(root: str) -> dict[str, tuple[list[str], float]]:
    base = Path(root.removeprefix("file://")).expanduser().resolve()
    groups: dict[str, tuple[list[str], float]] = {}
    now = time.time()
    for folder in sorted(p for p in base.glob("*/*") if p.is_dir()):
        files = [f for f in folder.iterdir() if f.is_file()]
        if files:
            groups[str(folder)] = ([f.name for f in files], min((now - f.stat().st_mtime) / 3600 for f in files))
    return groups


def _norm(uri: str) -> str:
    uri = uri.rstrip("/")
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return uri if uri.startswith("s3://") else str(Path(uri).expanduser().resolve())


def find_orphans(root: str, referenced: set[str]) -> list[Candidate]:
    """Every bundle folder under ``root`` whose URI is not in ``referenced``, oldest first."""
    try:
        groups = _groups_s3(root) if root.startswith("s3://") else _groups_dir(root)
    except TrainingError:
        raise
    except Exception as exc:  # noqa: BLE001 - connection refused, missing bucket, permissions
        raise TrainingError(f"cannot list the bundles under {root}: {' '.join(str(exc).split())[:300]}") from exc
    known = {_norm(u) for u in referenced}
    out = []
    for uri, (keys, age) in groups.items():
        if _norm(uri) in known:
            continue
        complete = any(k.rsplit("/", 1)[-1] == MANIFEST for k in keys)
        out.append(Candidate(uri, age, len(keys), complete, keys if uri.startswith("s3://") else []))
    return sorted(out, key=lambda c: -c.age_hours)


def delete(candidate: Candidate) -> None:
    """Remove one bundle folder (``bundle.json`` first, so a half-deleted folder is never a bundle)."""
    if candidate.uri.startswith("s3://"):
        bucket, _ = split_s3_uri(candidate.uri)
        client = s3_client()
        for key in sorted(candidate.keys, key=lambda k: not k.endswith("/" + MANIFEST)):
            try:
                client.delete_object(Bucket=bucket, Key=key)
            except Exception as exc:  # noqa: BLE001
                raise TrainingError(
                    f"could not delete s3://{bucket}/{key}: {' '.join(str(exc).split())[:200]}"
                ) from exc
        return
    import shutil

    folder = Path(candidate.uri)
    (folder / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(folder)


def stamp(hours: float) -> str:
    """An age for people: ``3.2 h`` or ``4.0 d``."""
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"
