"""The digest a predictor pod serves when it was given only a URI: looked up in the registry, handed over in a file.

The chart pins a predictor with ``HOUSING_BUNDLE_DIGEST`` when the digest is known at the render
(values, or ``housing rollout``'s patches). On ``helm install`` it is not: the training Job writes
and registers the first bundle afterwards. So the predictor pod's ``wait-for-bundle`` init
container (``python -m predictor.core.pin``) waits for ``<STORAGE_URI>/bundle.json`` and for the
registered version whose ``bundle_uri`` tag is ``STORAGE_URI``
(:func:`registry.resolve.registered_digest`), and writes that version's ``bundle_digest`` into a
pin file on a volume the predictor container mounts; the predictor reads it with
``--bundle_digest_file`` / ``HOUSING_BUNDLE_DIGEST_FILE`` (:func:`read_pin`) and refuses any other
``bundle.json``. When the chart knows the digest, the init container writes that one (no registry
call), so a predictor told to read a pin file always finds one. A version without the tag, or two
versions of the URI with different digests, fail the init container with one line naming the URI and the tag.

The pin file records the URI it was resolved for: a ``housing rollout`` canary is a copy of the
champion's pod spec whose init container still names the champion's URI; such a copy carries its
own ``HOUSING_BUNDLE_DIGEST`` (which wins), or was deployed unpinned on purpose
(``--skip-quality-gate``) — a pin for another URI is then ignored, with a warning.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bundle.manifest import MANIFEST
from common.config import BUNDLE_DIGEST_ENV, BUNDLE_DIGEST_FILE_ENV, DEFAULT_MODEL_NAME, load_settings, s3_client
from common.urls import redact
from registry.resolve import RegistryConflict, RegistryError, registered_digest

log = logging.getLogger("predictor")
SHA256 = re.compile(r"[0-9a-f]{64}")


class PinError(ValueError):
    """No digest can be pinned, or the pin file cannot be trusted; one line saying why."""


def write_pin(path: Path, storage_uri: str, model_name: str, version: str, digest: str) -> None:
    """The pin file at ``path`` (written whole, then renamed into place)."""
    body = {"storage_uri": storage_uri, "model_name": model_name, "version": version, "digest": digest}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body) + "\n")
    tmp.replace(path)


def read_pin(path: str | Path, storage_uri: str | None) -> str | None:
    """The digest the pin file at ``path`` holds for ``storage_uri`` (the URI the storage-initializer
    fetched: ``HOUSING_SOURCE_URI`` in the chart, as KServe rewrites STORAGE_URI to /mnt/models);
    None, with a warning, when it was written for another URI. Raises :class:`PinError` when the
    file is missing or malformed, or ``storage_uri`` is unknown: a pod told to pin never serves unpinned."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PinError(f"--bundle_digest_file {path}: cannot read it ({exc})") from exc
    digest, pinned_uri = body.get("digest") if isinstance(body, dict) else None, None
    if isinstance(body, dict):
        pinned_uri = body.get("storage_uri")
    if not isinstance(digest, str) or not SHA256.fullmatch(digest) or not isinstance(pinned_uri, str):
        raise PinError(f"--bundle_digest_file {path}: no storage_uri and sha256 digest in it")
    if not storage_uri:
        raise PinError(f"--bundle_digest_file {path}: no STORAGE_URI to match its {redact(pinned_uri)} against")
    if pinned_uri.rstrip("/") != storage_uri.rstrip("/"):
        log.warning(
            "--bundle_digest_file %s pins %s, not the served %s: unpinned (a copy of another predictor's spec)",
            path,
            redact(pinned_uri),
            redact(storage_uri),
        )
        return None
    return digest


def manifest_present(uri: str) -> str | None:
    """None when ``<uri>/bundle.json`` can be read (or ``uri`` is not ``s3://``), else why not."""
    if not uri.startswith("s3://"):
        return None
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    key = f"{prefix.rstrip('/')}/{MANIFEST}"
    try:
        s3_client(connect_timeout=5, read_timeout=20).head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - missing, no bucket, unreachable: all mean wait
        return f"no s3://{bucket}/{key} yet ({type(exc).__name__}: {exc})"
    return None


def wait(
    storage_uri: str,
    wait_seconds: float,
    pin_file: Path | None,
    *,
    model_name: str,
    tracking_uri: str | None = None,
    known_digest: str | None = None,
    interval: float = 3.0,
    say: Callable[[str], None] = print,
) -> str | None:
    """Wait up to ``wait_seconds`` (0: one look) for ``<storage_uri>/bundle.json`` and, with
    ``pin_file``, for the version of ``model_name`` registered with that URI, whose digest is then
    written to ``pin_file`` and returned (``known_digest``, the chart's, is written without asking
    the registry). Raises :class:`PinError` at once when the registry holds no usable digest for the
    URI, else when the time is up."""
    deadline = time.monotonic() + wait_seconds
    where = redact(storage_uri)
    while True:
        problem = manifest_present(storage_uri)
        if problem is None and pin_file is None:
            say(f"{where}: {MANIFEST} present")
            return None
        if problem is None and pin_file is not None and known_digest:
            write_pin(pin_file, storage_uri, model_name, "", known_digest)
            say(f"{where}: {MANIFEST} present; pinned to {known_digest} (given)")
            return known_digest
        if problem is None and pin_file is not None:
            try:
                found = registered_digest(storage_uri, model_name, tracking_uri)
            except RegistryConflict as exc:
                raise PinError(f"refusing to serve unpinned: {exc}") from exc
            except RegistryError as exc:
                found, problem = None, str(exc)
            if found is not None:
                version, digest = found
                write_pin(pin_file, storage_uri, model_name, version, digest)
                say(f"{where}: {MANIFEST} present; pinned to {digest} (model {model_name!r} version {version})")
                return digest
            problem = problem or f"no version of model {model_name!r} registered with bundle_uri {where} yet"
        if time.monotonic() >= deadline:
            raise PinError(f"{where}: gave up after {wait_seconds:g} s: {problem}")
        say(f"waiting: {problem}")
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    """``python -m predictor.core.pin``: the chart's wait-for-bundle init container."""
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m predictor.core.pin", description=wait.__doc__)
    parser.add_argument("--storage_uri", default=env("STORAGE_URI"), help="Default: STORAGE_URI.")
    parser.add_argument(
        "--wait_seconds", type=float, default=float(env("WAIT_SECONDS") or 0), help="Default: WAIT_SECONDS, else 0."
    )
    parser.add_argument(
        "--pin_file",
        type=Path,
        default=env(BUNDLE_DIGEST_FILE_ENV) or None,
        help=f"Write the registered digest here (default: {BUNDLE_DIGEST_FILE_ENV}); none: only wait for the bundle.",
    )
    parser.add_argument(
        "--bundle_digest",
        default=env(BUNDLE_DIGEST_ENV) or None,
        help=f"The digest already known (default: {BUNDLE_DIGEST_ENV}): written to --pin_file, no registry asked.",
    )
    parser.add_argument("--model_name", default=env("HOUSING_MODEL_NAME") or DEFAULT_MODEL_NAME)
    args = parser.parse_args(argv)
    if not args.storage_uri:
        parser.error("--storage_uri (or STORAGE_URI) is required")
    known = args.bundle_digest.strip().lower() if args.bundle_digest else None
    if known and not SHA256.fullmatch(known):
        parser.error(f"--bundle_digest {args.bundle_digest!r}: not a sha256 (64 hex digits)")
    tracking = load_settings().tracking_uri if args.pin_file and not known else None
    try:
        wait(
            args.storage_uri,
            args.wait_seconds,
            args.pin_file,
            model_name=args.model_name,
            tracking_uri=tracking,
            known_digest=known,
        )
    except PinError as exc:
        print(f"wait-for-bundle: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
