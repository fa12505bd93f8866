"""Every inference request counted by protocol and status code, server errors included.

The rollout's error gate is failed requests ÷ requests (``housing_requests_total``, label
``code``): a challenger that answers 500 from an exception in its model, or whose guard refuses,
must be counted against its version like one that answers. The client-error counter
(``housing_request_errors_total``) says *why* a request was refused; this one says *how many*
requests were answered and with which code.

- REST: :class:`RequestCountMiddleware`, outermost, reads the status of ``http.response.start``;
  an exception that escapes the app (KServe's generic handler answers it further out) is counted
  as 500.
- gRPC: :func:`ended_status`, read by the one wrapper around every call
  (:class:`predictor.transport.grpc_server.CallGuard`), outermost: the status code the call ended with;
  gRPC codes are counted as the HTTP codes gateways map them to (:data:`GRPC_TO_HTTP`), so one
  ``code=~"5.."`` selects failures on every protocol. One code has two meanings: RESOURCE_EXHAUSTED
  is both the rate limit (REST's 429) and the server being busy (REST's 503: ``--max_concurrency``,
  the byte budget), so a refusal says which with :func:`count_as` — a busy server is a failure the
  rollout's 5xx gate must see on gRPC as it does on REST.

A REST client that goes away before its body has arrived gets no answer and is counted as 499 (nginx's
"client closed request", as gRPC's CANCELLED is): the middleware that reads the body marks the scope
(:data:`CLIENT_GONE`), so a client's disconnect never counts against a version as a server error.

Only inference calls are counted (V1 predict/explain, V2 infer, gRPC ModelInfer): probes and
metadata calls would dilute the error rate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

import grpc

CountRequest = Callable[[str, int], None]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

#: nginx's "client closed request": a gRPC call CANCELLED, and a REST client gone before its body arrived.
CLIENT_CLOSED = 499
#: gRPC status → the HTTP status gateways answer it with (grpc-gateway's mapping); others: 500.
GRPC_TO_HTTP = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: CLIENT_CLOSED,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
INFER_METHOD = "ModelInfer"
#: Scope key set by the body reader when the client disconnected before its body arrived (no answer sent).
CLIENT_GONE = "housing.client_gone"
#: The HTTP status the current gRPC call is counted as, when its code alone does not say (see count_as);
#: grpc.aio runs each call in a task of its own, so a value never outlives its call.
_COUNTED_AS: ContextVar[int | None] = ContextVar("housing_grpc_counted_as", default=None)


def count_as(status: int) -> None:
    """Count the current gRPC call as HTTP ``status`` (a refusal's own status: 503 busy, 429 rate limited)
    whatever its gRPC code maps to; called in the call's task before it aborts."""
    _COUNTED_AS.set(status)


def inference_protocol(path: str) -> str | None:
    """The ``protocol`` label of an inference REST path (``v1``, ``explain``, ``v2``), else None."""
    if path.startswith("/v1/models/"):
        if path.endswith(":predict"):
            return "v1"
        if path.endswith(":explain"):
            return "explain"
        return None
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "v2"
    return None


class RequestCountMiddleware:
    """Pure ASGI: count each inference request's response status (500 when the app raised or answered nothing,
    499 when the client went away before its body arrived)."""

    def __init__(self, app: Callable[..., Awaitable[None]], count: CountRequest) -> None:
        self.app = app
        self.count = count

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        protocol = inference_protocol(scope["path"]) if scope["type"] == "http" else None
        if protocol is None:
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except BaseException:
            self.count(protocol, status if status >= 500 else 500)
            raise
        self.count(protocol, status or (CLIENT_CLOSED if scope.get(CLIENT_GONE) else 500))


def grpc_status(code: Any) -> int:
    """The HTTP status counted for a gRPC status code (None: the call ended OK)."""
    return 200 if code is None else GRPC_TO_HTTP.get(code, 500)


def ended_status(context: Any, raised: bool) -> int:
    """The HTTP status a gRPC call is counted as once it has ended: its code's (:func:`grpc_status`), or what
    :func:`count_as` said; ``raised``: it ended by an exception (500 when no code was set)."""
    code = context.code()
    if not raised:
        return grpc_status(code)
    return _COUNTED_AS.get() or (grpc_status(code) if code not in (None, grpc.StatusCode.OK) else 500)
