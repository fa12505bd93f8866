"""The one exception → status table: what each transport answers a client error with."""

from __future__ import annotations

import grpc
import pytest
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput, ModelNotFound
from starlette.exceptions import HTTPException

from predictor.codec.decode import BatchTooLarge
from predictor.transport import errors
from predictor.transport.errors import PayloadTooLarge


@pytest.mark.parametrize(
    ("exc", "http", "code"),
    [
        (BatchTooLarge("rows"), 413, grpc.StatusCode.INVALID_ARGUMENT),
        (InvalidInput("x"), 400, grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFound("m"), 404, grpc.StatusCode.NOT_FOUND),
        (PayloadTooLarge(10), 413, None),
        (RequestValidationError([]), 400, None),
        (NotImplementedError(), 400, None),
        (HTTPException(405), None, None),
    ],
)
def test_each_client_error_has_one_row(exc: Exception, http: int | None, code: grpc.StatusCode | None) -> None:
    row = errors.lookup(exc)
    assert row is not None and (row.http, row.grpc) == (http, code)
    quiet = errors.grpc_quiet(exc)
    assert (quiet.grpc if quiet else None) == code


def test_other_exceptions_are_not_client_errors() -> None:
    assert errors.lookup(RuntimeError()) is None and errors.grpc_quiet(RuntimeError()) is None


def test_rest_registers_each_base_once() -> None:
    handled = [row.exc for row in errors.rest_handled()]
    assert BatchTooLarge not in handled
    assert {InvalidInput, ModelNotFound, PayloadTooLarge, NotImplementedError, HTTPException} <= set(handled)


def test_kserves_handler_keeps_server_errors_and_what_is_not_a_version() -> None:
    from starlette.requests import Request

    def request(path: str, query: str = "") -> Request:
        return Request({"type": "http", "method": "POST", "path": path, "query_string": query.encode(), "headers": []})

    http, not_implemented = errors.lookup(HTTPException(503)), errors.lookup(NotImplementedError())
    assert http is not None and http.loud is not None and not_implemented is not None and not_implemented.loud
    assert http.loud(request("/x"), HTTPException(503)) and not http.loud(request("/x"), HTTPException(404))
    assert not_implemented.loud(request("/v2/models/m/infer"), NotImplementedError())
    assert not not_implemented.loud(request("/v2/models/m/versions/1/infer"), NotImplementedError())
    assert not not_implemented.loud(request("/v2/models/m/infer", "model_version=1"), NotImplementedError())
    assert all(row.loud is None for row in errors.CLIENT_ERRORS if row.grpc is not None)
