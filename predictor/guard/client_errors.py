"""Client errors: one WARNING line each, no traceback, counted by reason.

A client mistake is not the server's problem: it is logged as one line — method, path, status,
reason, request id and a short, sanitized detail — and counted by ``reason`` (the exception's
class name: ``InvalidInput``, ``BatchTooLarge``, ``RequestValidationError``,
``PayloadTooLarge``, ``ModelNotFound``, ``NotFound``, …). Server errors (5xx) keep KServe's
handlers and their tracebacks. Keys never appear: no header is logged.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable

log = logging.getLogger("predictor")

REQUEST_ID_HEADER = "x-request-id"
_UNSAFE = re.compile(r"[^\x20-\x7e]")
MAX_DETAIL = 200


def clean(text: str, limit: int = MAX_DETAIL) -> str:
    """One printable line of at most ``limit`` characters (client text goes into the log)."""
    text = _UNSAFE.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def request_id(given: str | None) -> str:
    """The client's (or the gateway's) ``x-request-id``, cleaned; else a new one."""
    return clean(given, 64) if given else uuid.uuid4().hex[:16]


def protocol_of(path: str) -> str:
    """The ``protocol`` label of a REST path: ``v1``, ``explain``, ``v2`` or ``other``."""
    if path.startswith("/v2/"):
        return "v2"
    if path.startswith("/v1/"):
        return "explain" if path.endswith(":explain") else "v1"
    return "other"


def log_client_error(method: str, path: str, status: int, reason: str, rid: str, detail: str = "") -> None:
    """The one WARNING line of a refused request."""
    log.warning(
        "client error: %s %s %d %s request_id=%s%s",
        method,
        clean(path, 120),
        status,
        reason,
        rid,
        f": {clean(detail)}" if detail else "",
    )


class SampledLog:
    """The log line of refusals a client can repeat at will (401, 429, 503): the first ``first`` of each
    reason per ``interval`` seconds, then none until the next interval, whose first line says how many
    were left out. The exact counts are the refused-requests series in /metrics."""

    def __init__(self, first: int = 5, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.first, self.interval, self.clock = first, interval, clock
        self._state: dict[str, list[float]] = {}  # reason -> [window start, lines in it, left out]
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, status: int, reason: str, rid: str, detail: str = "") -> bool:
        """Log the refusal unless it is sampled out; True when a line was written."""
        now = self.clock()
        with self._lock:
            state = self._state.setdefault(reason, [now, 0, 0])
            if now - state[0] >= self.interval:
                state[0], state[1] = now, 0
            if state[1] >= self.first:
                state[2] += 1
                return False
            state[1] += 1
            left_out, state[2] = int(state[2]), 0
        if left_out:
            detail = f"[{left_out} more {reason} not logged before this one; counts: /metrics] {detail}"
        log_client_error(method, path, status, reason, rid, detail)
        return True


#: The guard's refusals (keys, rate limits, the body budget) are logged through this one sampler.
log_refusal = SampledLog()
