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
import uuid

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
