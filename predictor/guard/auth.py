"""API keys: read from a file, re-read when it changes, compared in constant time.

The file (in Kubernetes a mounted Secret, which the kubelet swaps atomically on rotation) holds
one key per line; blank lines and lines starting with ``#`` are ignored. A client presents a key
as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` (gRPC: the same names as metadata).
Keys are compared as sha256 digests with :func:`hmac.compare_digest` against every configured
key, so neither a key's content nor its length shows in the timing. A key never reaches a log:
clients are identified by :func:`client_id`, a short digest.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common.config import API_KEY_HEADER as _API_KEY_HEADER

log = logging.getLogger("predictor")

API_KEY_HEADER = _API_KEY_HEADER.lower()
AUTHORIZATION_HEADER = "authorization"
BEARER = "bearer "
#: The ``WWW-Authenticate`` challenge of a 401 (RFC 6750 names the Bearer scheme).
CHALLENGE = 'Bearer realm="housing", ApiKey header="X-API-Key"'
#: How often (seconds) the file's stat is checked for a rotation; the check is one ``os.stat``.
RECHECK_SECONDS = 1.0


class AuthConfigError(ValueError):
    """The key file is missing, unreadable or holds no key."""


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def client_id(key: str) -> str:
    """A stable, non-reversible name for a key (rate-limit buckets, never the key itself)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def presented_key(get: Callable[[str], str | None]) -> str | None:
    """The key a request carries: ``X-API-Key``, else ``Authorization: Bearer …``; ``get`` reads a
    lower-case header (or gRPC metadata) name."""
    key = get(API_KEY_HEADER)
    if key:
        return key.strip()
    auth = get(AUTHORIZATION_HEADER)
    if auth and auth[: len(BEARER)].lower() == BEARER:
        return auth[len(BEARER) :].strip() or None
    return None


def parse_keys(text: str) -> list[str]:
    """One key per line; blank lines and ``#`` comments ignored."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class KeyFile:
    """The accepted keys, re-read when the file's (inode, size, mtime) changes."""

    def __init__(self, path: str | os.PathLike[str], recheck_seconds: float = RECHECK_SECONDS) -> None:
        self.path = Path(path)
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._digests: tuple[bytes, ...] = ()
        self._next_check = 0.0
        self.reload(strict=True)

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)  # follows the Secret volume's ..data symlink to the current file
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def reload(self, strict: bool = False) -> bool:
        """Re-read the file if it changed; True when the keys changed. ``strict``: raise on a bad
        file (start-up); otherwise a bad file keeps the previous keys and logs one warning."""
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            keys = parse_keys(self.path.read_text(encoding="utf-8"))
            if not keys:
                raise AuthConfigError(f"{self.path}: no API key in the file (one key per line)")
        except (OSError, UnicodeDecodeError, AuthConfigError) as exc:
            message = exc if isinstance(exc, AuthConfigError) else f"{self.path}: cannot read API keys ({exc})"
            if strict:
                raise AuthConfigError(str(message)) from None
            log.warning("api keys: %s; keeping the %d keys loaded before", message, len(self._digests))
            return False
        with self._lock:
            changed = self._stamp is not None
            self._digests = tuple(_digest(k) for k in keys)
            self._stamp = stamp
        if changed:
            log.info("api keys: %s changed, %d keys loaded", self.path, len(keys))
        return True

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.recheck_seconds
            self.reload()

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, key: str | None) -> bool:
        """True when ``key`` is one of the accepted keys (constant time in the key's content)."""
        self._maybe_reload()
        if not key:
            return False
        presented = _digest(key)
        ok = False
        for digest in self._digests:  # no early exit: every key is compared
            ok |= hmac.compare_digest(presented, digest)
        return ok
