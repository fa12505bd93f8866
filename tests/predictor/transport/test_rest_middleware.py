"""predictor.transport.rest_middleware: how a V2 infer body is read (JSON unless it carries the binary header)
and what its errors say."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from predictor.transport.rest_middleware import V2BodyMiddleware, _classify, inference_target

INFER = "/v2/models/housing/infer"
BINARY = (b"inference-header-content-length", b"120")


def _seen_content_type(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The Content-Type values the app behind the middleware sees."""
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["headers"])

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"host", b"x"), *headers]}
    asyncio.run(V2BodyMiddleware(app)(scope, None, None))
    return [v for k, v in seen[0] if k == b"content-type"]


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        (INFER, [], [b"application/json"]),  # tritonclient's JSON infer: no type at all
        (INFER, [(b"content-type", b"text/plain")], [b"application/json"]),
        (INFER, [(b"content-type", b"application/octet-stream")], [b"application/json"]),
        (INFER, [(b"content-type", b"application/json; charset=utf-8")], [b"application/json; charset=utf-8"]),
        (INFER, [(b"content-type", b"Application/JSON")], [b"Application/JSON"]),
        (INFER, [(b"content-type", b"application/cloudevents+json")], [b"application/cloudevents+json"]),
        (INFER, [BINARY], []),  # tritonclient's binary infer: bytes to KServe, as is
        (INFER, [BINARY, (b"content-type", b"application/octet-stream")], [b"application/octet-stream"]),
        (INFER, [BINARY, (b"content-type", b"application/json")], [b"application/octet-stream"]),
        ("/v2/models/housing/versions/1/infer", [], [b"application/json"]),
        ("/v1/models/housing:predict", [], []),
        ("/v2/models/housing/ready", [], []),
    ],
)
def test_infer_body_is_json_unless_it_carries_the_binary_header(
    path: str, headers: list[tuple[bytes, bytes]], expected: list[bytes]
) -> None:
    assert _seen_content_type("POST", path, headers) == expected


def test_other_methods_are_left_alone() -> None:
    assert _seen_content_type("GET", INFER, []) == []


def _json_invalid(position: int = 3) -> RequestValidationError:
    error = {"type": "json_invalid", "loc": ("body", position), "msg": "JSON decode error", "input": {}}
    return RequestValidationError([{**error, "ctx": {"error": "Expecting value"}}])


def test_json_errors_name_the_binary_header_on_infer() -> None:
    status, reason, message = _classify(_json_invalid(), INFER)
    assert (status, reason) == (400, "RequestValidationError")
    assert message == (
        "body: not valid JSON at position 3 (Expecting value); "
        "a body with binary tensor data needs the Inference-Header-Content-Length header"
    )
    assert _classify(_json_invalid(), "/v1/models/housing:predict")[2] == (
        "body: not valid JSON at position 3 (Expecting value)"
    )


def test_a_body_that_is_not_utf8_is_a_json_error() -> None:
    exc = HTTPException(400, "There was an error parsing the body")
    exc.__cause__ = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    status, reason, message = _classify(exc, INFER)
    assert (status, reason) == (400, "RequestValidationError")
    assert message.startswith("body: not valid JSON (not UTF-8 text); ")
    assert "Inference-Header-Content-Length" in message


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/v1/models/housing:predict", ("v1", "housing")),
        ("/v1/models/housing:explain", ("explain", "housing")),
        ("/v2/models/housing/infer", ("v2", "housing")),
        ("/v2/models/housing/versions/3/infer", ("v2", "housing")),
        ("/v1/models/housing", None),
        ("/v2/models/housing/ready", None),
        ("/v1/models/a/b:predict", None),
        ("/metrics", None),
    ],
)
def test_inference_target_names_protocol_and_model(path, target):
    """Only inference paths reach the payload log's refusal rows, under the model they were for."""
    assert inference_target(path) == target
