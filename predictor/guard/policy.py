"""The endpoint's guard, protocol-neutral: API keys, per-client rate limits, open paths.

:class:`Guard` decides; :mod:`predictor.transport.rest_middleware` (an ASGI middleware) and
:mod:`predictor.transport.grpc_server` (``CallGuard``, around every gRPC call) turn a :class:`Refusal`
into a 401/429 or an UNAUTHENTICATED/RESOURCE_EXHAUSTED status. Both checks are off by default; with both off the
REST middleware only compares the body's ``Content-Length`` with ``--max_body_bytes``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from predictor.guard.auth import CHALLENGE, KeyFile, client_id, presented_key
from predictor.guard.budget import InflightBytes, QueuedSlots
from predictor.guard.ratelimit import TokenBuckets, retry_after

#: Paths that stay open with API keys on: liveness, readiness (server and model) and /metrics.
DEFAULT_OPEN_PATHS = ("/", "/metrics", "/v2/health/live", "/v2/health/ready", "/v2/models/*/ready")
#: gRPC methods that stay open (health): the last part of the full method name.
OPEN_GRPC_METHODS = frozenset({"ServerLive", "ServerReady", "ModelReady"})
#: The default largest request body (bytes) read at all; larger → 413 before parsing. A V1 batch of
#: 10,000 ames rows as ``{feature: value}`` objects is 15.2 MB (the largest batch --max_batch_size allows).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: The default budget of request-body bytes in flight per process (:mod:`predictor.guard.budget`): one body
#: at the limit and room for small ones; at ~31× for the worst JSON, 20 MiB of bodies peak at ~650 MB of
#: objects, which with the ~90-190 MB a predictor holds fits the chart's 1 GiB memory limit.
DEFAULT_MAX_INFLIGHT_BODY_BYTES = 20 * 1024 * 1024
#: The default cap on requests being processed per process — REST: bodies received, probes and other
#: open paths not counted; gRPC: RPCs in flight, health RPCs not counted — over it 503 / RESOURCE_EXHAUSTED.
#: uvicorn's connection cap (limit_concurrency) is a backstop at CONNECTIONS_PER_SLOT times this.
DEFAULT_MAX_CONCURRENCY = 64
CONNECTIONS_PER_SLOT = 16
#: gRPC calls taken but waiting for one of those slots, by default, per slot: a burst of up to 16 × the cap
#: (1,024 calls at the default cap) waits its turn; beyond, RESOURCE_EXHAUSTED naming both limits. REST's
#: counterpart is uvicorn's connection backstop, the same multiple.
QUEUED_RPCS_PER_SLOT = CONNECTIONS_PER_SLOT
#: A request body must arrive within this many seconds (slow senders hold budget, not slots); else 408.
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0

#: Failed authentications a client address may make: a burst of 10, then one every 2 s; beyond → 429
#: before the key is even compared, so guessing keys is as slow as that.
AUTH_FAILURE_BURST, AUTH_FAILURE_RATE = 10.0, 0.5
FORWARDED_FOR = "x-forwarded-for"

#: Reasons, the ``reason`` label of the refused-requests series.
UNAUTHENTICATED, RATE_LIMITED, OVERLOADED = "Unauthenticated", "RateLimited", "Overloaded"


def overloaded_message(limit: int, queued: int | None = None) -> str:
    """Why a request was refused for overload: the limit reached and the setting that raises it; with ``queued``
    (gRPC, whose calls over the cap wait), the queue that was full too and its setting."""
    if queued:
        return (
            f"busy: {limit} calls in progress and {queued} waiting, the limits per process; raise them with "
            "--max_concurrency (HOUSING_MAX_CONCURRENCY, chart predictor.maxConcurrency) and --max_queued_rpcs "
            "(HOUSING_MAX_QUEUED_RPCS, chart predictor.maxQueuedRpcs) or add replicas; retry after 1 s"
        )
    return (
        f"busy: {limit} requests in progress, the limit per process; raise it with --max_concurrency "
        "(HOUSING_MAX_CONCURRENCY, chart predictor.maxConcurrency) or add replicas; retry after 1 s"
    )


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
    max_inflight_body_bytes: int = DEFAULT_MAX_INFLIGHT_BODY_BYTES
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    #: gRPC calls that may wait for a slot of max_concurrency; None: QUEUED_RPCS_PER_SLOT × max_concurrency
    max_queued_rpcs: int | None = None
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    max_clients: int = 10_000
    #: CIDRs of proxies (the gateway) whose X-Forwarded-For names the client; empty: the socket's peer is
    trusted_proxies: tuple[str, ...] = ()
    #: Failed authentications per client address: a bucket of this many, refilled at auth_failure_rate/s
    auth_failure_burst: float = AUTH_FAILURE_BURST
    auth_failure_rate: float = AUTH_FAILURE_RATE

    def validate(self) -> None:
        """Raise ValueError naming the setting for a value that cannot work."""
        if self.rate_limit < 0:
            raise ValueError(f"--rate_limit: must be >= 0 requests per second (0 = off), got {self.rate_limit}")
        if self.rate_burst is not None and self.rate_burst < 1:
            raise ValueError(f"--rate_burst: must be >= 1, got {self.rate_burst}")
        if self.max_body_bytes < 1:
            raise ValueError(f"--max_body_bytes: must be >= 1, got {self.max_body_bytes}")
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"--max_inflight_body_bytes: must be >= --max_body_bytes ({self.max_body_bytes}), "
                f"got {self.max_inflight_body_bytes}: a body at the limit could never be read"
            )
        if self.max_concurrency < 1:
            raise ValueError(f"--max_concurrency: must be >= 1, got {self.max_concurrency}")
        if self.queued_rpcs < 0:
            raise ValueError(
                f"--max_queued_rpcs: must be >= 0 (0: refuse at once over the cap), got {self.queued_rpcs}"
            )
        if not self.body_timeout_seconds > 0:
            raise ValueError(f"--body_timeout_seconds: must be > 0, got {self.body_timeout_seconds}")
        for path in self.open_paths:
            if not path.startswith("/"):
                raise ValueError(f"--open_paths: {path!r} must start with /")
        if self.auth_failure_burst < 1 or not self.auth_failure_rate > 0:
            raise ValueError(
                f"--auth_failure_burst/--auth_failure_rate: must be >= 1 and > 0, got "
                f"{self.auth_failure_burst}/{self.auth_failure_rate}"
            )
        self.proxy_networks()

    @property
    def queued_rpcs(self) -> int:
        """gRPC calls that may wait for a slot: ``max_queued_rpcs``, by default 16 × ``max_concurrency``."""
        if self.max_queued_rpcs is None:
            return QUEUED_RPCS_PER_SLOT * self.max_concurrency
        return self.max_queued_rpcs

    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The trusted proxies as networks; ValueError naming a CIDR that is none."""
        networks = []
        for cidr in self.trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError:
                raise ValueError(f"--trusted_proxies: {cidr!r} is not an IP address or CIDR") from None
        return tuple(networks)


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
    failures: TokenBuckets | None = field(init=False, default=None)
    inflight: InflightBytes = field(init=False)

    def __post_init__(self) -> None:
        self.config.validate()
        self.inflight = InflightBytes(self.config.max_inflight_body_bytes)
        self.processing = InflightBytes(self.config.max_concurrency)  # REST requests, one unit each
        # gRPC calls taken: the same limit in flight, and a bounded queue of calls waiting for a slot
        self.rpcs = QueuedSlots(self.config.max_concurrency, self.config.queued_rpcs)
        self.proxies = self.config.proxy_networks()
        if self.config.api_keys_file:
            self.keys = KeyFile(self.config.api_keys_file)  # AuthConfigError: refuse to start
            cfg = self.config
            self.failures = TokenBuckets(cfg.auth_failure_rate, cfg.auth_failure_burst, cfg.max_clients)
        if self.config.rate_limit > 0:
            self.buckets = TokenBuckets(self.config.rate_limit, self.config.rate_burst, self.config.max_clients)
        self.is_open = _path_matcher(self.config.open_paths)

    @property
    def active(self) -> bool:
        """True when keys or rate limits are on (otherwise nothing per request is checked)."""
        return self.keys is not None or self.buckets is not None

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    def client_address(self, peer: str, get: Callable[[str], str | None]) -> str:
        """The client's address: the socket's peer, or — when the peer is a trusted proxy — the nearest
        address in ``X-Forwarded-For`` that is not a trusted proxy (read from the right: the left part
        is whatever the client wrote)."""
        if not self.proxies or not self._trusted(peer):
            return peer
        forwarded = [a.strip() for a in (get(FORWARDED_FOR) or "").split(",") if a.strip()]
        for address in reversed(forwarded):
            if not self._trusted(address):
                try:
                    return str(ipaddress.ip_address(address))
                except ValueError:
                    return peer  # a malformed hop: fall back to what the socket says
        return forwarded[0] if forwarded else peer

    def check(self, protocol: str, get: Callable[[str], str | None], address: str) -> Refusal | None:
        """None to let the request through. ``get`` reads a lower-case header / metadata name."""
        key = None
        address = self.client_address(address, get)
        if self.keys is not None:
            assert self.failures is not None
            failed = "fail:" + address
            wait = self.failures.wait(failed)
            if wait > 0:  # too many failures from here: not even compared
                self.on_refused(protocol, RATE_LIMITED)
                after = retry_after(wait)
                message = f"too many failed authentications from this client; retry after {after} s"
                return Refusal(429, RATE_LIMITED, message, {"retry-after": after})
            key = presented_key(get)
            if not self.keys.check(key):
                self.failures.take(failed)
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

    def start_request(self, protocol: str) -> Refusal | None:
        """Take one of the ``max_concurrency`` processing slots (give it back with ``processing.release(1)``);
        a Refusal (503, retry after 1 s) when all are taken."""
        if self.processing.try_acquire(1):
            return None
        return self.overloaded(protocol)

    def start_rpc(self) -> bool:
        """Take one of the ``max_concurrency`` gRPC call slots now (give it back with ``rpcs.release()``); False
        when all are taken (then :meth:`wait_rpc`). REST and gRPC each have ``max_concurrency`` slots."""
        return self.rpcs.try_acquire()

    async def wait_rpc(self, protocol: str = "grpc") -> Refusal | None:
        """A gRPC call slot, waiting for one in the queue of ``--max_queued_rpcs`` when all are taken (the slot
        is held on return: give it back with ``rpcs.release()``); a Refusal (503, RESOURCE_EXHAUSTED on gRPC,
        naming both limits) only when the queue is full too."""
        if self.rpcs.try_acquire():
            return None
        if not self.rpcs.can_wait():
            return self.overloaded(protocol, queued=self.rpcs.max_waiting)
        await self.rpcs.wait()
        return None

    def overloaded(self, protocol: str, queued: int | None = None) -> Refusal:
        """The answer when every processing slot is taken (REST 503, gRPC RESOURCE_EXHAUSTED, both with
        ``retry-after: 1``): the limit and the setting that raises it (and, on gRPC, the full queue)."""
        self.on_refused(protocol, OVERLOADED)
        message = overloaded_message(self.config.max_concurrency, queued)
        return Refusal(503, OVERLOADED, message, {"retry-after": "1"})

    def admit(self, protocol: str, size: int) -> Refusal | None:
        """Charge a body of ``size`` bytes to the in-flight budget (release it with ``inflight.release``);
        a Refusal (503, retry after 1 s) when it does not fit now."""
        if self.inflight.try_acquire(size):
            return None
        self.on_refused(protocol, OVERLOADED)
        return Refusal(
            503,
            OVERLOADED,
            f"busy: {self.inflight.used} bytes of request bodies in flight, this one ({size} bytes) would pass "
            f"the budget of {self.inflight.limit} (--max_inflight_body_bytes); retry after 1 s",
            {"retry-after": "1"},
        )
