"""The REST side of the guard: an ASGI middleware and quiet client-error handlers.

:class:`GuardMiddleware` (pure ASGI, ahead of FastAPI's routing) refuses, before anything is
parsed, a body above ``--max_body_bytes`` (413; by ``Content-Length``, or while a chunked body is
read), and — when on — a missing/invalid API key (401 with ``WWW-Authenticate``) or a client
over its rate (429 with ``Retry-After``). With keys and limits off it looks at one header.

:class:`V2BodyMiddleware` makes the body of ``POST /v2/models/{name}/infer`` read the way the
binary tensor extension defines it: JSON header plus binary tensor data when the request carries
``Inference-Header-Content-Length``, otherwise JSON whatever its ``Content-Type`` (NVIDIA's
``tritonclient`` sends none). FastAPI parses a body as JSON only when it is typed
``application/json`` and hands KServe anything else as bytes, which KServe takes for binary data
and refuses for want of that header.

:func:`install` also replaces KServe's handlers for client errors (which log each one at ERROR
with a traceback) by ones that log one WARNING line and count the reason
(:mod:`predictor.client_errors`). KServe registers its handlers when the server starts
(``RESTServer.create_application``), after anything registered here, so ours are put in place
when Starlette builds the middleware stack — after KServe's, before the first request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput, ModelNotFound
from starlette.exceptions import HTTPException as StarletteHTTPException

from predictor.client_errors import REQUEST_ID_HEADER, log_client_error, protocol_of, request_id
from predictor.codec import BatchTooLarge
from predictor.guard import Guard, Refusal

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
CountError = Callable[[str, str], None]

PAYLOAD_TOO_LARGE = "PayloadTooLarge"
INFERENCE_HEADER = b"inference-header-content-length"
JSON_TYPE = b"application/json"
BINARY_TYPE = b"application/octet-stream"


class PayloadTooLarge(Exception):
    """A request body above ``--max_body_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body: larger than the limit of {limit} bytes (--max_body_bytes)")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    reason: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer a refused request ourselves: one log line, the JSON error, the request id."""
    rid = request_id(_header(scope, REQUEST_ID_HEADER.encode()))
    log_client_error(scope.get("method", "?"), scope.get("path", "?"), status, reason, rid, message)
    response = JSONResponse({"error": message}, status_code=status, headers={**(headers or {}), REQUEST_ID_HEADER: rid})
    await response(scope, receive, send)


class GuardMiddleware:
    """Body-size limit, then (when on) API key and rate limit, ahead of everything else."""

    def __init__(self, app: Callable[..., Awaitable[None]], guard: Guard, count_error: CountError) -> None:
        self.app = app
        self.guard = guard
        self.max_body = guard.config.max_body_bytes
        self.count_error = count_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
                break
        if length is not None:
            if not length.isdigit() or len(length) > 18 or int(length) > self.max_body:
                self.count_error(protocol_of(scope["path"]), PAYLOAD_TOO_LARGE)
                await _refuse(scope, receive, send, 413, PAYLOAD_TOO_LARGE, str(PayloadTooLarge(self.max_body)))
                return
        elif scope["method"] in ("POST", "PUT", "PATCH"):
            receive = self._limited(receive)  # chunked: count while it is read
        guard = self.guard
        if guard.active and not guard.is_open(scope["path"]):
            refusal = self._check(scope)
            if refusal is not None:
                await _refuse(scope, receive, send, refusal.status, refusal.reason, refusal.message, refusal.headers)
                return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> Refusal | None:
        headers = scope["headers"]

        def get(name: str) -> str | None:
            wanted = name.encode()
            for key, value in headers:
                if key == wanted:
                    return value.decode("latin-1")
            return None

        client = scope.get("client")
        return self.guard.check(protocol_of(scope["path"]), get, client[0] if client else "unknown")

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(limit)
            return message

        return wrapped


def is_v2_infer(path: str) -> bool:
    """``/v2/models/{name}/infer`` (and its ``/versions/{v}`` form)."""
    return path.startswith("/v2/models/") and path.endswith("/infer")


def _is_json_type(value: bytes) -> bool:
    """``application/json`` or ``application/*+json``, parameters aside (what FastAPI parses as JSON)."""
    media = value.split(b";", 1)[0].strip().lower()
    return media == JSON_TYPE or (media.startswith(b"application/") and media.endswith(b"+json"))


class V2BodyMiddleware:
    """V2 infer bodies: binary with ``Inference-Header-Content-Length``, else JSON, whatever the type says."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and is_v2_infer(scope["path"]):
            content_type = None
            binary = False
            for key, value in scope["headers"]:
                if key == b"content-type":
                    content_type = value
                elif key == INFERENCE_HEADER:
                    binary = True
            is_json = content_type == JSON_TYPE or (content_type is not None and _is_json_type(content_type))
            if binary == is_json:  # FastAPI reads a body as JSON exactly when it is typed so: re-type it
                headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                headers.append((b"content-type", BINARY_TYPE if binary else JSON_TYPE))
                scope["headers"] = headers
        await self.app(scope, receive, send)


def _client_error_handler(count_error: CountError) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """The Starlette exception handler of every client error: log one line, count, answer."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        path = request.url.path
        status, reason, detail = _classify(exc, path)
        rid = request_id(request.headers.get(REQUEST_ID_HEADER))
        count_error(protocol_of(path), reason)
        log_client_error(request.method, path, status, reason, rid, detail)
        return JSONResponse({"error": detail}, status_code=status, headers={REQUEST_ID_HEADER: rid})

    return handler


def _classify(exc: Exception, path: str = "") -> tuple[int, str, str]:
    """(status, reason, message) of a client error on ``path``."""
    if isinstance(exc.__cause__, PayloadTooLarge):  # FastAPI wraps a failed body read in a 400
        exc = exc.__cause__
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            return 400, "RequestValidationError", _json_invalid(errors[0], path)
        parts = []
        for err in errors[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
        return 400, "RequestValidationError", "; ".join(parts) or "invalid request"
    if isinstance(exc, BatchTooLarge):
        return 413, "BatchTooLarge", str(exc)
    if isinstance(exc, PayloadTooLarge):
        return 413, PAYLOAD_TOO_LARGE, str(exc)
    if isinstance(exc, ModelNotFound):
        return 404, "ModelNotFound", str(exc)
    if isinstance(exc, NotImplementedError):
        return 400, "VersionNotSupported", "model_version: this server serves one model version; omit the version"
    if isinstance(exc, StarletteHTTPException) and isinstance(exc.__cause__, UnicodeDecodeError):
        return 400, "RequestValidationError", _json_invalid({"ctx": {"error": "not UTF-8 text"}}, path)
    if isinstance(exc, StarletteHTTPException):
        phrase = HTTPStatus(exc.status_code).phrase
        return exc.status_code, phrase.replace(" ", ""), str(exc.detail or phrase)
    return 400, type(exc).__name__, str(exc)


def _json_invalid(err: dict[str, Any], path: str) -> str:
    """The message of a body that is not JSON; on V2 infer, what a binary body lacks."""
    loc = err.get("loc", ())
    where = f" at position {loc[1]}" if len(loc) > 1 else ""
    message = f"body: not valid JSON{where} ({err.get('ctx', {}).get('error', 'decode error')})"
    if is_v2_infer(path):
        message += "; a body with binary tensor data needs the Inference-Header-Content-Length header"
    return message


CLIENT_ERRORS: tuple[type[Exception], ...] = (
    InvalidInput,
    RequestValidationError,
    PayloadTooLarge,
    ModelNotFound,
    StarletteHTTPException,
)


def install(app: FastAPI, guard: Guard, count_error: CountError) -> None:
    """Add the middlewares now (the guard outermost) and our client-error handlers when the app's stack is built."""
    app.add_middleware(V2BodyMiddleware)
    app.add_middleware(GuardMiddleware, guard=guard, count_error=count_error)
    handler = _client_error_handler(count_error)
    build = app.build_middleware_stack

    def build_with_quiet_handlers() -> Any:
        http_default = app.exception_handlers.get(StarletteHTTPException)
        not_implemented_default = app.exception_handlers.get(NotImplementedError)

        async def http_handler(request: Request, exc: Exception) -> Any:
            if isinstance(exc, StarletteHTTPException) and exc.status_code >= 500 and http_default is not None:
                return await http_default(request, exc)
            return await handler(request, exc)

        async def not_implemented_handler(request: Request, exc: Exception) -> Any:
            # KServe raises it for a model version in the path or query: the client's choice, a 400;
            # anything else not implemented stays KServe's 501 with its traceback
            versioned = "/versions/" in request.url.path or "model_version" in request.query_params
            if versioned or not_implemented_default is None:
                return await handler(request, exc)
            return await not_implemented_default(request, exc)

        for exc_class in CLIENT_ERRORS:
            app.exception_handlers[exc_class] = http_handler if exc_class is StarletteHTTPException else handler
        app.exception_handlers[NotImplementedError] = not_implemented_handler
        return build()

    app.build_middleware_stack = build_with_quiet_handlers  # type: ignore[method-assign]
