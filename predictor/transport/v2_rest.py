"""V2 REST infer with a JSON body: orjson in, orjson out, KServe's data plane in between.

KServe's own route (``V2Endpoints.infer``) has FastAPI parse the body with the standard library's
``json``, validate it into pydantic ``InferenceRequest`` models and copy those into an
``InferRequest``; the answer goes list → numpy → list (``InferResponse.to_rest``), through a
pydantic ``InferenceResponse`` and ``jsonable_encoder`` into ``json`` again. That is most of the
CPU a one-row request costs, and more than the model spends on a 10,000-row one.

:class:`V2InferRoute`, put ahead of KServe's routes for ``POST /v2/models/{name}/infer`` and its
``/versions/{version}`` form, does the same work with less:

- the body is parsed by orjson. A body of plain JSON types in the shape ``InferenceRequest``
  describes (the common case) becomes KServe's ``InferRequest`` directly; any other body is
  validated by KServe's pydantic ``InferenceRequest`` itself, so what is accepted (its lax
  coercions included) stays KServe's, and a refusal is a 400 ``RequestValidationError`` naming
  the field;
- a plain columnar body (one ``[n]`` tensor per feature, plain JSON values) is first offered to the
  model's decode entry (``codec.entry.DecodeEntry.decode_v2_json``: the model's own decoder), which
  reads the columns straight from the bytes into the model's matrix — no Python object per value;
  any other body goes the way above;
- then KServe's order of checks — a model version in the path (400), the model ready (404 for an
  unknown model) — and the model is called through KServe's data plane (``DataPlane.infer``:
  model lookup, KServe's pre/predict/post latency histograms and latency log);
- the answer is the JSON KServe writes (the same keys in the same order, nulls included),
  written by orjson; binary outputs (``binary_data_output``, an output's ``binary_data``) and
  anything unusual are encoded by KServe's ``InferResponse.to_rest`` as before.

Bodies with binary tensor data (``Inference-Header-Content-Length``) and CloudEvents requests
(``ce-*`` headers, ``application/cloudevents+json``) do not match this route: KServe's route
handles them, unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from kserve.errors import ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput
from kserve.protocol.rest.v2_datamodels import InferenceRequest, InferenceResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from predictor.codec.entry import decode_entry

INFER_PATHS = ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer")
_BINARY_HEADER = b"inference-header-content-length"
_CLOUDEVENT_TYPE = b"application/cloudevents+json"
#: What ``InferenceRequest``'s ``parameters`` values may be (StrictFloat, StrictInt, StrictBool, str).
_PARAMETER_TYPES = (str, int, float, bool)
#: Output datatypes written from a numeric array (BYTES and FP16 are left to KServe).
_NUMPY_TYPES = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP32": np.float32,
    "FP64": np.float64,
}


# -- request -----------------------------------------------------------------------------------
def _plain_parameters(value: Any) -> bool:
    """None, or an object whose values are what ``InferenceRequest`` takes as they are."""
    return value is None or (type(value) is dict and all(type(v) in _PARAMETER_TYPES for v in value.values()))


def _direct(doc: Any, model_name: str) -> InferRequest | None:
    """The ``InferRequest`` of a body of plain JSON types in ``InferenceRequest``'s shape; else None."""
    if type(doc) is not dict:
        return None
    request_id, parameters, tensors = doc.get("id"), doc.get("parameters"), doc.get("inputs")
    if (request_id is not None and type(request_id) is not str) or not _plain_parameters(parameters):
        return None
    if type(tensors) is not list:
        return None
    inputs = []
    for tensor in tensors:
        if type(tensor) is not dict:
            return None
        name, shape, datatype, data = (
            tensor.get("name"),
            tensor.get("shape"),
            tensor.get("datatype"),
            tensor.get("data"),
        )
        if type(name) is not str or type(datatype) is not str or type(data) is not list or type(shape) is not list:
            return None
        if (datatype == "FP16" and data) or not all(type(d) is int for d in shape):
            return None  # KServe's refusal of JSON FP16, a shape pydantic would coerce: its own code path
        tensor_parameters = tensor.get("parameters")
        if not _plain_parameters(tensor_parameters):
            return None
        inputs.append(InferInput(name, shape, datatype, data, {} if tensor_parameters is None else tensor_parameters))
    outputs = doc.get("outputs")
    requested = None
    if outputs is not None:
        if type(outputs) is not list:
            return None
        for out in outputs:
            if (
                type(out) is not dict
                or type(out.get("name")) is not str
                or not _plain_parameters(out.get("parameters"))
            ):
                return None
        if outputs:
            requested = [RequestedOutput(out["name"], out.get("parameters") or {}) for out in outputs]
    return InferRequest(model_name, inputs, request_id=request_id, parameters=parameters, request_outputs=requested)


def _validated(doc: Any, model_name: str) -> InferRequest:
    """Any other body, through KServe's own pydantic model and conversion (errors name the field)."""
    try:
        request = InferenceRequest.model_validate(doc)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_input=False)]
        for e in errors:
            if e["type"] == "model_type":  # "... or instance of RequestInput": a Python class the client never sees
                e["msg"] = "Input should be an object"
        raise RequestValidationError(errors) from None
    return InferRequest.from_inference_request(request, model_name)  # InvalidInput for JSON FP16


def parse_infer_request(body: bytes, model_name: str) -> InferRequest:
    """A V2 JSON infer body → KServe's ``InferRequest``; ``RequestValidationError`` (400) when it is not one.

    The errors read like FastAPI's for KServe's route: a missing body, JSON that does not parse
    (its position), text that is not UTF-8, a field ``InferenceRequest`` refuses.
    """
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in exc.msg:
            error = {
                "type": "json_invalid",
                "loc": ("body",),
                "msg": "JSON decode error",
                "ctx": {"error": "not UTF-8 text"},
            }
        else:
            error = {
                "type": "json_invalid",
                "loc": ("body", exc.pos),
                "msg": "JSON decode error",
                "ctx": {"error": exc.msg},
            }
        raise RequestValidationError([error]) from None
    return _direct(doc, model_name) or _validated(doc, model_name)


# -- response ----------------------------------------------------------------------------------
def _binary_outputs(response: InferResponse) -> bool:
    """Whether KServe's ``to_rest`` would send any output as binary data."""
    requested = response._requested_outputs
    if requested:
        return any(out.binary_data for out in requested)
    return bool(response._use_binary_outputs)


def _output_values(output: Any) -> list[Any] | None:
    """The output's values as ``to_rest`` writes them (through numpy, flattened); None: leave it to KServe."""
    dtype = _NUMPY_TYPES.get(output.datatype)
    data, shape = output.data, output.shape
    if dtype is None or output._raw_data is not None or type(shape) is not list:
        return None
    if isinstance(data, np.ndarray):
        if list(data.shape) != shape or data.dtype != dtype:
            return None
        return data.reshape(-1).tolist()
    if type(data) is not list:
        return None
    if not data:
        return data
    try:
        array = np.array(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        return None
    if array.size != math.prod(shape):
        return None
    return array.reshape(-1).tolist()


def encode_infer_response(response: InferResponse) -> bytes | None:
    """The JSON KServe's route answers with (``InferenceResponse``'s keys, nulls included); None when
    the response needs KServe's own encoding (binary outputs, BYTES/FP16 data, anything unusual)."""
    if _binary_outputs(response) or type(response.id) is not str or type(response.model_name) is not str:
        return None
    if response.model_version is not None and type(response.model_version) is not str:
        return None
    if response._requested_outputs:
        by_name = {out.name: out for out in response.outputs}
        outputs = [by_name.get(out.name) for out in response._requested_outputs]
    else:
        outputs = list(response.outputs)
    written = []
    for output in outputs:
        if output is None or not _plain_parameters(output.parameters or None):
            return None
        if output.parameters and "binary_data_size" in output.parameters:
            return None  # KServe drops it from a JSON output: its own encoding
        values = _output_values(output)
        if values is None:
            return None
        written.append(
            {
                "name": output.name,
                "shape": output.shape,
                "datatype": output.datatype,
                "parameters": dict(output.parameters) if output.parameters else None,
                "data": values,
            }
        )
    parameters = response.parameters
    if not _plain_parameters(parameters or None):
        return None
    return orjson.dumps(
        {
            "model_name": response.model_name,
            "model_version": response.model_version,
            "id": response.id,
            "parameters": dict(parameters) if parameters else None,
            "outputs": written,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


# -- route -------------------------------------------------------------------------------------
class V2Infer:
    """The endpoint: KServe's ``V2Endpoints.infer`` for JSON bodies, without FastAPI's body handling."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def infer(self, request: Request) -> Response:
        model_name = request.path_params["model_name"]
        try:
            body = await request.body()
        except ClientDisconnect as exc:  # what FastAPI answers when the body cannot be read
            raise HTTPException(400, "There was an error parsing the body") from exc
        infer_request = self._decoded(body, model_name) or parse_infer_request(body, model_name)
        if request.path_params.get("model_version"):
            raise NotImplementedError("Model versioning not supported yet.")
        dataplane = self.dataplane
        if not await dataplane.model_ready(model_name, True):  # ModelNotFound (404) for an unknown model
            raise ModelNotReady(model_name)
        headers = dict(request.headers)
        response, response_headers = await dataplane.infer(
            model_name=model_name, request=infer_request, headers=headers
        )
        content = encode_infer_response(response) if isinstance(response, InferResponse) else None
        if content is None:
            return self._kserve_encoded(model_name, response, headers, response_headers)
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)
        return Response(content, media_type="application/json", headers=response_headers)

    def _decoded(self, body: bytes, model_name: str) -> InferRequest | None:
        """The request already decoded by the model's own decode entry (``codec.entry.DecodeEntry``),
        when it offers one and the body is of the plain shape it reads; else None."""
        entry = decode_entry(self.dataplane.model_registry.get_model(model_name))
        return entry.decode_v2_json(body, model_name) if entry is not None else None

    def _kserve_encoded(
        self, model_name: str, response: Any, headers: dict[str, str], response_headers: dict[str, str]
    ) -> Response:
        """What KServe's route answers: binary data as is, anything else validated as an ``InferenceResponse``."""
        encoded, encode_headers = self.dataplane.encode(
            model_name=model_name, response=response, headers=headers, req_attributes={}
        )
        response_headers.update(encode_headers)
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)
        if isinstance(encoded, bytes):
            return Response(encoded, headers=response_headers)
        return JSONResponse(jsonable_encoder(InferenceResponse.model_validate(encoded)), headers=response_headers)


class V2InferRoute(Route):
    """``POST`` of a JSON infer body; binary-extension and CloudEvents requests fall through to KServe's route."""

    def matches(self, scope: Any) -> tuple[Match, Any]:
        if scope["type"] != "http" or scope["method"] != "POST":
            return Match.NONE, {}
        match, child_scope = super().matches(scope)  # the path first: every other request stops here
        if match is not Match.FULL:
            return Match.NONE, {}
        for key, value in scope["headers"]:
            if key == _BINARY_HEADER or key.startswith(b"ce-"):
                return Match.NONE, {}
            if key == b"content-type" and value.split(b";", 1)[0].strip().lower() == _CLOUDEVENT_TYPE:
                return Match.NONE, {}
        return match, child_scope


def install(app: FastAPI, dataplane: DataPlane) -> None:
    """Our infer routes on ``app``, ahead of KServe's (added when its server starts: the first match wins)."""
    endpoint = V2Infer(dataplane)
    for path in INFER_PATHS:
        app.router.routes.append(V2InferRoute(path, endpoint.infer, methods=["POST"], include_in_schema=False))
