"""The endpoint's guard, protocol-neutral: API keys, per-client rate limits, open paths.

:class:`Guard` decides; :mod:`predictor.rest` (an ASGI middleware) and
:mod:`predictor.grpc_server` (a gRPC interceptor) turn a :class:`Refusal` into a 401/429 or an
UNAUTHENTICATED/RESOURCE_EXHAUSTED status. Both checks are off by default; with both off the
REST middleware only compares the body's ``Content-Length`` with ``--max_body_bytes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from predictor.auth import CHALLENGE, KeyFile, client_id, presented_key
from predictor.ratelimit import TokenBuckets, retry_after

#: Paths that stay open with API keys on: liveness, readiness (server and model) and /metrics.
DEFAULT_OPEN_PATHS = ("/", "/metrics", "/v2/health/live", "/v2/health/ready", "/v2/models/*/ready")
#: gRPC methods that stay open (health): the last part of the full method name.
OPEN_GRPC_METHODS = frozenset({"ServerLive", "ServerReady", "ModelReady"})
#: The default largest request body (bytes) read at all; larger → 413 before parsing.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

#: Reasons, the ``reason`` label of the refused-requests series.
UNAUTHENTICATED, RATE_LIMITED = "Unauthenticated", "RateLimited"


class Refusal(NamedTuple):
    """Why a request is refused, and what to answer."""

    status: int  # HTTP status
    reason: str  # label value and log word
    message: str
    headers: dict[str, str]


@dataclass
class GuardConfig:
    """The guard's settings (``python -m predictor`` flags)."""

    api_keys_file: str | None = None
    rate_limit: float = 0.0  # requests per second per client; 0 = off
    rate_burst: float | None = None  # bucket size; default: one second of rate
    open_paths: tuple[str, ...] = DEFAULT_OPEN_PATHS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_clients: int = 10_000

    def validate(self) -> None:
        """Raise ValueError naming the setting for a value that cannot work."""
        if self.rate_limit < 0:
            raise ValueError(f"--rate_limit: must be >= 0 requests per second (0 = off), got {self.rate_limit}")
        if self.rate_burst is not None and self.rate_burst < 1:
            raise ValueError(f"--rate_burst: must be >= 1, got {self.rate_burst}")
        if self.max_body_bytes < 1:
            raise ValueError(f"--max_body_bytes: must be >= 1, got {self.max_body_bytes}")
        for path in self.open_paths:
            if not path.startswith("/"):
                raise ValueError(f"--open_paths: {path!r} must start with /")


def _path_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """Exact paths, and ``*`` for one path segment."""
    exact = frozenset(p for p in patterns if "*" not in p)
    globs = [p for p in patterns if "*" in p]
    if not globs:
        return exact.__contains__
    regex = re.compile("|".join(re.escape(g).replace(r"\*", "[^/]+") for g in globs))

    def match(path: str) -> bool:
        return path in exact or regex.fullmatch(path) is not None

    return match


@dataclass
class Guard:
    """Checks one request; counts refusals through ``on_refused(protocol, reason)``."""

    config: GuardConfig
    on_refused: Callable[[str, str], None] = lambda protocol, reason: None
    keys: KeyFile | None = field(init=False, default=None)
    buckets: TokenBuckets | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.config.validate()
        if self.config.api_keys_file:
            self.keys = KeyFile(self.config.api_keys_file)  # AuthConfigError: refuse to start
        if self.config.rate_limit > 0:
            self.buckets = TokenBuckets(self.config.rate_limit, self.config.rate_burst, self.config.max_clients)
        self.is_open = _path_matcher(self.config.open_paths)

    @property
    def active(self) -> bool:
        """True when keys or rate limits are on (otherwise nothing per request is checked)."""
        return self.keys is not None or self.buckets is not None

    def check(self, protocol: str, get: Callable[[str], str | None], address: str) -> Refusal | None:
        """None to let the request through. ``get`` reads a lower-case header / metadata name."""
        key = None
        if self.keys is not None:
            key = presented_key(get)
            if not self.keys.check(key):
                self.on_refused(protocol, UNAUTHENTICATED)
                what = "invalid API key" if key else "missing API key (X-API-Key or Authorization: Bearer)"
                return Refusal(401, UNAUTHENTICATED, what, {"www-authenticate": CHALLENGE})
        if self.buckets is not None:
            wait = self.buckets.take(client_id(key) if key else "addr:" + address)
            if wait > 0:
                self.on_refused(protocol, RATE_LIMITED)
                after = retry_after(wait)
                return Refusal(
                    429,
                    RATE_LIMITED,
                    f"rate limit of {self.config.rate_limit:g} requests/s per client exceeded; retry after {after} s",
                    {"retry-after": after},
                )
        return None
