"""V1 predict without FastAPI's per-request machinery: KServe's own steps, one route ahead of KServe's.

KServe's ``POST /v1/models/{name}:predict`` (``V1Endpoints.predict``) is a FastAPI route: every
request solves the endpoint's dependencies, runs it inside FastAPI's exit-stack and response
wrappers, and its answer is a (deprecated, warning-raising) ``ORJSONResponse``. Finding it costs
more: the router, and KServe's timing middleware naming the request, each ask every route before it
(FastAPI's included routers match slowly). For a one-row request that is more CPU than the model.

:class:`V1PredictRoute`, put first in the app's routes, answers the same requests with the same
steps of KServe's data plane, in KServe's order — the model known (404) and ready (503), the body
decoded by ``DataPlane.decode`` (orjson; CloudEvents; a body not typed JSON handed to the model as
bytes; a plain JSON body parsed here the same way, without KServe's debug-line formatting),
``DataPlane.infer`` (KServe's model call with its pre/predict/post latency histograms),
``DataPlane.encode`` — and writes the answer as ``ORJSONResponse`` would (orjson, same options, same
headers). Errors raise the same exceptions, answered by the same handlers.

It is a plain ``BaseRoute``, not a ``Route``: KServe's timing middleware names a request after a
matching ``Route``'s endpoint, otherwise after its path, so the ``kserve.trace`` lines keep KServe's
name (``kserve.io.v1.models.<name>:predict``). Anything but ``POST`` to that path, or to
``:explain``, is answered by :class:`V1WrongMethodRoute`: 405 with ``Allow: POST`` — KServe's
``GET /v1/models/{name}`` route would otherwise take ``housing:predict`` for a model name and
answer 404 "Model with name housing:predict does not exist".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.dataplane import JSON_HEADERS, DataPlane
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from predictor.codec.v2_binary import CheckedDataPlane
from predictor.guard.client_errors import REQUEST_ID_HEADER
from predictor.observe import payload_log

PREDICT_PATH = "/v1/models/{model_name}:predict"
#: The V1 verbs: POST only.
ACTION_PATHS = (PREDICT_PATH, "/v1/models/{model_name}:explain")
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class ServingDataPlane(CheckedDataPlane):
    """The data plane every server of ``python -m predictor`` uses: :class:`CheckedDataPlane`, and a V1
    ``:explain`` that answers with none of the request's headers.

    KServe 0.21's ``DataPlane.explain`` starts its response headers from the request's own headers dict
    (``response_headers = headers``), which ``V1Endpoints.explain`` sends back: a client's
    ``Authorization``, ``X-API-Key`` and ``Cookie`` came back in the answer, where caches, proxies and
    client logs keep them. Kept: what the model and KServe set that the request did not carry, and the
    request id (the client's ``x-request-id``, or the one the payload log made), as before.
    """

    async def explain(
        self, model_name: str, request: Any, headers: dict[str, str] | None = None
    ) -> tuple[Any, dict[str, str]]:
        sent = dict(headers or {})
        seen = dict(sent)  # what KServe and the model see (the model may set the request id in it)
        response, answered = await super().explain(model_name, request, seen)
        kept = {k: v for k, v in answered.items() if k not in sent or k == REQUEST_ID_HEADER}
        return response, kept


class V1Predict:
    """The endpoint: ``V1Endpoints.predict`` step for step, the answer written with orjson."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def predict(self, request: Request) -> Response:
        model_name = request.path_params["model_name"]
        dataplane = self.dataplane
        if not await dataplane.model_ready(model_name, True):  # ModelNotFound (404) for an unknown model
            raise ModelNotReady(model_name)
        body = await request.body()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
        infer_request, req_attributes = _decoded(dataplane, body, headers)
        if payload_log.capturing and type(infer_request) is dict and not req_attributes:  # no CloudEvent
            payload_log.keep_body(infer_request, body)  # the payload log queues the bytes, not a re-encoding
            try:
                response, response_headers = await dataplane.infer(
                    model_name=model_name, request=infer_request, headers=headers
                )
            finally:
                payload_log.drop_body(infer_request)
        else:
            response, response_headers = await dataplane.infer(
                model_name=model_name, request=infer_request, headers=headers
            )
        response, encode_headers = dataplane.encode(
            model_name=model_name, response=response, headers=headers, req_attributes=req_attributes
        )
        response_headers.update(encode_headers)
        response_headers.pop("content-length", None)
        if isinstance(response, (bytes, str)):
            return Response(content=response, headers=response_headers)
        if isinstance(response, AsyncIterator):
            return StreamingResponse(content=response)
        return Response(
            orjson.dumps(response, option=_ORJSON_OPTIONS), media_type="application/json", headers=response_headers
        )


def _decoded(dataplane: DataPlane, body: bytes, headers: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """``DataPlane.decode`` of a V1 body: a JSON body (no binary CloudEvent headers, typed JSON or not typed)
    parsed here as KServe parses it — without its per-request clock reads and debug-line formatting —
    and checked for a structured CloudEvent by KServe; any other body by ``DataPlane.decode`` itself."""
    if "ce-specversion" in headers or headers.get("content-type", JSON_HEADERS[0]) not in JSON_HEADERS:
        return dataplane.decode(body=body, headers=headers)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Unrecognized request format: {exc}") from None
    return dataplane.decode_cloudevent(doc)


class V1PredictRoute(BaseRoute):
    """``POST /v1/models/{model_name}:predict``; every other request is left to the routes after it."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.route = Route(PREDICT_PATH, V1Predict(dataplane).predict, methods=["POST"], include_in_schema=False)
        self.path = PREDICT_PATH

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST":
            return Match.NONE, {}
        match, child_scope = self.route.matches(scope)
        return (match, child_scope) if match is Match.FULL else (Match.NONE, {})

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        return self.route.url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.route.handle(scope, receive, send)


class V1WrongMethodRoute(BaseRoute):
    """Any method but ``POST`` on a V1 verb (``:predict``, ``:explain``): 405 naming the allowed method."""

    def __init__(self) -> None:
        self.routes = [Route(path, self._refuse, methods=["POST"], include_in_schema=False) for path in ACTION_PATHS]
        self.path = PREDICT_PATH

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] == "POST":
            return Match.NONE, {}
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is not Match.NONE:  # the path matched (PARTIAL: the method did not)
                return Match.FULL, child_scope
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        return self.routes[0].url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise HTTPException(405, headers={"Allow": "POST"})

    async def _refuse(self, request: Request) -> Response:  # pragma: no cover - never routed to
        raise HTTPException(405, headers={"Allow": "POST"})


def install(app: FastAPI, dataplane: DataPlane) -> None:
    """Our V1 predict route first in ``app``'s routes (KServe adds its own when its server starts)."""
    app.router.routes.insert(0, V1WrongMethodRoute())
    app.router.routes.insert(0, V1PredictRoute(dataplane))
