"""The artifact bundle: the contract between training (writer) and the predictor (reader).

A bundle is a directory holding ``bundle.json`` plus the files it lists. ``bundle.json``
records the sha256 of every other file; the digest of the whole bundle is the sha256 of the
``bundle.json`` bytes, so pinning that one value pins every file. Training writes bundles only
through :func:`write_bundle`; the predictor reads them only through :func:`load_manifest`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST = "bundle.json"
#: File names inside a bundle (written by training, read by the predictor).
REFERENCE_FILE = "reference.json"
MODEL_FILES = {
    "xgboost": "model.ubj",
    "random_forest": "forest.npz",
    "linear": "linear.json",
}
FLAVORS = tuple(MODEL_FILES)


class BundleError(Exception):
    """A bundle is missing, malformed, or fails verification."""


@dataclass
class Manifest:
    """Everything ``bundle.json`` says about a bundle."""

    model_name: str
    model_version: str
    flavor: str
    target: dict[str, Any]
    schema: dict[str, Any]
    metrics: dict[str, Any]
    data_digest: str
    libraries: dict[str, str]
    created_at: str
    files: dict[str, str] = field(default_factory=dict)
    git_revision: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def model_file(self) -> str:
        """Name of the file that holds the fitted model."""
        return MODEL_FILES[self.flavor]

    def to_json(self) -> bytes:
        """Canonical bytes of the manifest (sorted keys, so the digest is stable)."""
        return json.dumps(asdict(self), sort_keys=True, indent=2, allow_nan=False).encode()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(directory: Path, manifest: Manifest) -> str:
    """Hash every file already in ``directory`` into the manifest and write ``bundle.json``.

    The manifest is written last and atomically, so a directory without ``bundle.json`` is
    never mistaken for a bundle. Returns the bundle digest.
    """
    directory = Path(directory)
    if manifest.flavor not in FLAVORS:
        raise BundleError(f"flavor: unknown flavor {manifest.flavor!r}; expected one of {FLAVORS}")
    if not (directory / manifest.model_file).is_file():
        raise BundleError(f"{manifest.model_file}: model file missing from {directory}")
    manifest.files = {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST}
    data = manifest.to_json()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bundle-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, directory / MANIFEST)
    return hashlib.sha256(data).hexdigest()


def bundle_digest(directory: Path) -> str:
    """The digest of a bundle: sha256 of its ``bundle.json`` bytes."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{MANIFEST}: not found in {directory}")
    return sha256_file(path)


def load_manifest(directory: Path, expected_digest: str | None = None) -> Manifest:
    """Read ``bundle.json`` and verify every file digest (and optionally the bundle digest).

    Raises :class:`BundleError` naming the first file that is missing or does not match.
    """
    return _verified(Path(directory), expected_digest, keep=False).manifest


@dataclass
class VerifiedBundle:
    """A manifest, the digest of the ``bundle.json`` bytes it was parsed from, and every listed file's
    bytes — the very bytes whose sha256 matched, so what is parsed is what was verified."""

    manifest: Manifest
    digest: str
    contents: dict[str, bytes]


def read_verified(directory: Path, expected_digest: str | None = None) -> VerifiedBundle:
    """Read ``bundle.json`` and every file it lists once, verifying each digest on the bytes kept.

    Unlike hashing the files and reading them again to parse them, nothing can change in between.
    Raises :class:`BundleError` as :func:`load_manifest` does.
    """
    return _verified(Path(directory), expected_digest, keep=True)


def _verified(directory: Path, expected_digest: str | None, keep: bool) -> VerifiedBundle:
    path = directory / MANIFEST
    if not path.is_file():
        raise BundleError(f"{MANIFEST}: not found in {directory}")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if expected_digest and digest != expected_digest.lower():
        raise BundleError(f"{MANIFEST}: bundle digest {digest} does not match the pinned {expected_digest}")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{MANIFEST}: not valid JSON ({exc})") from exc
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{MANIFEST}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    try:
        manifest = Manifest(**data)
    except TypeError as exc:
        raise BundleError(f"{MANIFEST}: malformed manifest ({exc})") from exc
    if manifest.flavor not in FLAVORS:
        raise BundleError(f"{MANIFEST}: unknown flavor {manifest.flavor!r}")
    if manifest.model_file not in manifest.files:
        raise BundleError(f"{manifest.model_file}: not listed in {MANIFEST}")
    contents: dict[str, bytes] = {}
    for name, expected in manifest.files.items():
        file = directory / name
        if Path(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"{name}: file names in a bundle must not contain a path")
        if not file.is_file():
            raise BundleError(f"{name}: listed in {MANIFEST} but missing")
        if keep:
            data = file.read_bytes()
            actual = hashlib.sha256(data).hexdigest()
        else:
            actual = sha256_file(file)
        if actual != expected:
            raise BundleError(f"{name}: sha256 {actual} does not match {expected} recorded in {MANIFEST}")
        if keep:
            contents[name] = data
    return VerifiedBundle(manifest, digest, contents)
