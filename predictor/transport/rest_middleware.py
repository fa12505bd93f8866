"""The REST side of the guard: an ASGI middleware and quiet client-error handlers.

:class:`GuardMiddleware` (pure ASGI, ahead of FastAPI's routing) refuses, before anything is
parsed, a body above ``--max_body_bytes`` (413; by ``Content-Length``, or while a chunked body is
read), — when on — a missing/invalid API key (401 with ``WWW-Authenticate``) or a client
over its rate (429 with ``Retry-After``), and a body that does not fit the budget of body bytes in
flight now (503 with ``Retry-After``, :mod:`predictor.guard.budget`). With keys and limits off it
looks at one header and, for a request with a body, charges the budget, reads the body (within
``--body_timeout_seconds``, else 408) and takes one of ``--max_concurrency`` processing slots.

:class:`V2BodyMiddleware` makes the body of ``POST /v2/models/{name}/infer`` read the way the
binary tensor extension defines it: JSON header plus binary tensor data when the request carries
``Inference-Header-Content-Length``, otherwise JSON whatever its ``Content-Type`` (NVIDIA's
``tritonclient`` sends none). FastAPI parses a body as JSON only when it is typed
``application/json`` and hands KServe anything else as bytes, which KServe takes for binary data
and refuses for want of that header.

:func:`install` also replaces KServe's handlers for client errors (which log each one at ERROR
with a traceback) by ones that log one WARNING line and count the reason
(:mod:`predictor.guard.client_errors`). KServe registers its handlers when the server starts
(``RESTServer.create_application``), after anything registered here, so ours are put in place
when Starlette builds the middleware stack — after KServe's, before the first request. KServe's
model repository routes (``/v2/repository/models/{name}/load`` and ``/unload``) are taken out then
too: this server loads its one model at start, and an unload left the pod Ready while every
prediction answered 404 (anyone could send it; API keys did not protect it from a key holder).
A request there answers 404 naming why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from predictor.guard.client_errors import REQUEST_ID_HEADER, log_client_error, log_refusal, protocol_of, request_id
from predictor.guard.policy import Guard, Refusal
from predictor.observe.request_count import CLIENT_GONE
from predictor.transport import errors, kserve_patches
from predictor.transport.errors import PAYLOAD_TOO_LARGE, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
CountError = Callable[[str, str], None]
#: ``refused(protocol, model name, status, reason, request id)``: a request of a model refused before
#: the model saw it (the payload log's row: :meth:`predictor.transport.model.HousingModel.log_refused`).
Refused = Callable[[str, str | None, int, str, str], None]

REQUEST_TIMEOUT = "RequestTimeout"
INFERENCE_HEADER = b"inference-header-content-length"
JSON_TYPE = b"application/json"
BINARY_TYPE = b"application/octet-stream"
#: KServe's model repository extension (load/unload by name): not served.
REPOSITORY_PREFIX = "/v2/repository/"
REPOSITORY_REFUSED = "the model repository API is not served: this server loads its one model at start-up"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def inference_target(path: str) -> tuple[str, str] | None:
    """(protocol, model name) of an inference path — ``/v1/models/{name}:predict`` or ``:explain``,
    ``/v2/models/{name}[/versions/{v}]/infer`` — else None."""
    if path.startswith("/v1/models/"):
        name, colon, verb = path[len("/v1/models/") :].rpartition(":")
        if colon and verb in ("predict", "explain") and name and "/" not in name:
            return ("v1" if verb == "predict" else "explain"), name
        return None
    if is_v2_infer(path):
        name = path[len("/v2/models/") : -len("/infer")].split("/versions/", 1)[0]
        return ("v2", name) if name and "/" not in name else None
    return None


class Deadlines:
    """Body reads cancelled once they take longer than ``seconds``: one sweep a second over the reads in
    progress, instead of a timer per request (``asyncio.timeout`` cost ~12 µs a request; this ~1)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._reads: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    def watch(self, task: asyncio.Task) -> None:
        loop = task.get_loop()
        self._reads[task] = loop.time() + self.seconds
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = loop.create_task(self._sweep())

    def unwatch(self, task: asyncio.Task) -> None:
        self._reads.pop(task, None)

    def expired(self, task: asyncio.Task) -> bool:
        """True (once) when ``task`` was cancelled by the sweep; its cancellation is then taken back."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.seconds))
            if not self._reads:
                return  # idle: the next read starts a new sweep
            now = loop.time()
            for task, deadline in list(self._reads.items()):
                if deadline <= now:
                    del self._reads[task]
                    self._expired.add(task)
                    task.cancel()


class GuardMiddleware:
    """Body-size limit, then (when on) API key and rate limit, ahead of everything else."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        guard: Guard,
        count_error: CountError,
        refused: Refused | None = None,
    ) -> None:
        self.app = app
        self.guard = guard
        self.max_body = guard.config.max_body_bytes
        self.body_timeout = guard.config.body_timeout_seconds
        self.deadlines = Deadlines(self.body_timeout)
        self.count_error = count_error
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
                break
        size = 0
        if length is not None:
            if not length.isdigit() or len(length) > 18 or int(length) > self.max_body:
                self.count_error(protocol_of(scope["path"]), PAYLOAD_TOO_LARGE)
                await self._refuse(
                    scope, receive, send, 413, PAYLOAD_TOO_LARGE, str(PayloadTooLarge(self.max_body)), sampled=False
                )
                return
            size = int(length)
        elif scope["method"] in ("POST", "PUT", "PATCH"):
            receive = self._limited(receive)  # chunked: count while it is read
            size = self.max_body  # and charge the budget the most it may grow to
        guard = self.guard
        if guard.active and not guard.is_open(scope["path"]):
            refusal = self._check(scope)
            if refusal is not None:
                await self._refuse(
                    scope, receive, send, refusal.status, refusal.reason, refusal.message, refusal.headers
                )
                return
        if not size:  # no body (probes, metadata, /metrics): no budget, no slot
            await self.app(scope, receive, send)
            return
        refusal = guard.admit(protocol_of(scope["path"]), size)
        if refusal is not None:
            await self._refuse(scope, receive, send, refusal.status, refusal.reason, refusal.message, refusal.headers)
            return
        try:
            try:
                body = await self._read_body(receive)
            except TimeoutError:
                self.count_error(protocol_of(scope["path"]), REQUEST_TIMEOUT)
                message = f"body: not received within {self.body_timeout:g} s (--body_timeout_seconds)"
                await self._refuse(scope, receive, send, 408, REQUEST_TIMEOUT, message, {"connection": "close"}, False)
                return
            except PayloadTooLarge as exc:
                self.count_error(protocol_of(scope["path"]), PAYLOAD_TOO_LARGE)
                await self._refuse(
                    scope, receive, send, 413, PAYLOAD_TOO_LARGE, str(exc), {"connection": "close"}, False
                )
                return
            if body is None:  # the client went away: no answer, counted as 499 (not as a server error)
                scope[CLIENT_GONE] = True
                return
            await self._process(scope, _replay(body, receive), send)
        finally:
            guard.inflight.release(size)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        reason: str,
        message: str,
        headers: dict[str, str] | None = None,
        sampled: bool = True,
    ) -> None:
        """Answer a refused request ourselves: one log line (sampled for the guard's refusals, which a client
        can repeat at will; every one for a client error), the JSON error, the request id; and, for an
        inference request, ``self.refused`` (the payload log's row)."""
        rid = request_id(_header(scope, REQUEST_ID_HEADER.encode()))
        if self.refused is not None:
            target = inference_target(scope.get("path", ""))
            if target is not None:
                self.refused(target[0], target[1], status, f"{reason}: {message}", rid)
        log = log_refusal if sampled else log_client_error
        log(scope.get("method", "?"), scope.get("path", "?"), status, reason, rid, message)
        headers = {**(headers or {}), REQUEST_ID_HEADER: rid}
        response = JSONResponse({"error": message}, status_code=status, headers=headers)
        await response(scope, receive, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body (so a slow sender holds no processing slot), or None on disconnect; TimeoutError
        when it takes longer than --body_timeout_seconds."""
        task = asyncio.current_task()
        assert task is not None
        self.deadlines.watch(task)
        chunks = []
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except asyncio.CancelledError:
            if self.deadlines.expired(task):
                raise TimeoutError from None
            raise
        finally:
            self.deadlines.unwatch(task)

    async def _process(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, within --max_concurrency requests with a body at once (those without, probes among
        them, are never refused)."""
        refusal = self.guard.start_request(protocol_of(scope["path"]))
        if refusal is not None:
            await self._refuse(scope, receive, send, refusal.status, refusal.reason, refusal.message, refusal.headers)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.guard.processing.release(1)

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


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits on the client as before."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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


def _client_error_handler(
    count_error: CountError, refused: Refused | None = None
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """The Starlette exception handler of every client error: log one line, count, answer — and an
    inference request refused before the model logged it goes to ``refused`` (the payload log)."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        path = request.url.path
        status, reason, detail = _classify(exc, path, request.method)
        # the payload log's id when the model logged the request (predictor.transport.model), else the
        # client's or a new one
        logged = getattr(exc, "request_id", None)
        rid = logged or request_id(request.headers.get(REQUEST_ID_HEADER))
        if logged is None and refused is not None and (target := inference_target(path)) is not None:
            refused(target[0], target[1], status, f"{reason}: {detail}", rid)
        count_error(protocol_of(path), reason)
        log_client_error(request.method, path, status, reason, rid, detail)
        headers = {**(getattr(exc, "headers", None) or {}), REQUEST_ID_HEADER: rid}  # e.g. a 405's Allow
        return JSONResponse({"error": detail}, status_code=status, headers=headers)

    return handler


def _classify(exc: Exception, path: str = "", method: str = "") -> tuple[int, str, str]:
    """(status, reason, message) of a client error of a ``method`` request on ``path``: the status from the
    one table of both transports (:data:`predictor.transport.errors.CLIENT_ERRORS`), the message here."""
    if isinstance(exc.__cause__, PayloadTooLarge):  # FastAPI wraps a failed body read in a 400
        exc = exc.__cause__
    if isinstance(exc, StarletteHTTPException):  # the status is the exception's own
        if isinstance(exc.__cause__, UnicodeDecodeError):
            return 400, "RequestValidationError", _json_invalid({"ctx": {"error": "not UTF-8 text"}}, path)
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            message = f"{method or 'this method'} is not allowed on {path}; use {allow or 'another method'}"
            return 405, "MethodNotAllowed", message
        phrase = HTTPStatus(exc.status_code).phrase
        return exc.status_code, phrase.replace(" ", ""), str(exc.detail or phrase)
    row = errors.lookup(exc)
    status = 400 if row is None or row.http is None else row.http
    reason = type(exc).__name__ if row is None or row.reason is None else row.reason
    if isinstance(exc, RequestValidationError):
        found = exc.errors()
        if found and found[0].get("type") == "json_invalid":
            return status, reason, _json_invalid(found[0], path)
        parts = []
        for err in found[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
        return status, reason, "; ".join(parts) or "invalid request"
    if isinstance(exc, NotImplementedError):
        return status, reason, "model_version: this server serves one model version; omit the version"
    return status, reason, str(exc)


def _json_invalid(err: dict[str, Any], path: str) -> str:
    """The message of a body that is not JSON; on V2 infer, what a binary body lacks."""
    loc = err.get("loc", ())
    where = f" at position {loc[1]}" if len(loc) > 1 else ""
    message = f"body: not valid JSON{where} ({err.get('ctx', {}).get('error', 'decode error')})"
    if is_v2_infer(path):
        message += "; a body with binary tensor data needs the Inference-Header-Content-Length header"
    return message


async def _repository_refused(request: Request) -> Any:
    raise StarletteHTTPException(404, REPOSITORY_REFUSED)


def without_repository_routes(routes: list[BaseRoute]) -> None:
    """Drop KServe's model repository routes (load/unload) and answer their paths with a 404 naming why."""
    routes[:] = [r for r in routes if not getattr(r, "path", "").startswith(REPOSITORY_PREFIX)]
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes.insert(0, Route(REPOSITORY_PREFIX + "{rest:path}", _repository_refused, methods=methods))


def _quiet_unless_loud(
    row: errors.ClientError, quiet: Callable[[Request, Exception], Awaitable[JSONResponse]], kserves: Any
) -> Callable[[Request, Exception], Awaitable[Any]]:
    """The handler of ``row``'s exceptions: ``quiet``, or KServe's own (``kserves``) when the row says so."""
    if row.loud is None or kserves is None:
        return quiet
    loud = row.loud

    async def handle(request: Request, exc: Exception) -> Any:
        return await (kserves if loud(request, exc) else quiet)(request, exc)

    return handle


def install(app: FastAPI, guard: Guard, count_error: CountError, refused: Refused | None = None) -> None:
    """Add the middlewares now (the guard outermost) and our client-error handlers when the app's stack is
    built; ``refused`` hears of every inference request refused before the model saw it."""
    app.add_middleware(V2BodyMiddleware)
    app.add_middleware(GuardMiddleware, guard=guard, count_error=count_error, refused=refused)
    handler = _client_error_handler(count_error, refused)

    def quiet_handlers() -> None:
        for row in errors.rest_handled():  # KServe's, registered at start, still answer the loud cases
            app.exception_handlers[row.exc] = _quiet_unless_loud(row, handler, app.exception_handlers.get(row.exc))
        without_repository_routes(app.router.routes)  # KServe registered them at start, before this

    kserve_patches.before_stack_build(app, quiet_handlers)
