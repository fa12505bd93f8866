"""The one exception → status table of both transports: each client error's HTTP status, gRPC code and
whether it is answered quietly.

A *quiet* error is the client's: it is logged as one WARNING line (:mod:`predictor.guard.client_errors`),
counted by reason, and answered without a traceback. Everything else keeps KServe's handling (an ERROR
line with its traceback, KServe's own status). The REST handlers (:mod:`.rest_middleware`) and the gRPC
exception mapping (:class:`predictor.transport.grpc_server.QuietErrorsInterceptor`, run by ``CallGuard``)
both look an exception up here; the first row whose class it is an instance of wins, so a subclass stands
above its base.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput, ModelNotFound
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from predictor.codec.decode import BatchTooLarge

#: The reason of a body above ``--max_body_bytes``.
PAYLOAD_TOO_LARGE = "PayloadTooLarge"
#: The reason of a model version in the path or query (KServe raises ``NotImplementedError``).
VERSION_NOT_SUPPORTED = "VersionNotSupported"


class PayloadTooLarge(Exception):
    """A request body above ``--max_body_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body: larger than the limit of {limit} bytes (--max_body_bytes)")


@dataclass(frozen=True)
class ClientError:
    """One row: ``exc`` answered with HTTP ``http`` (None: the exception's own ``status_code``) and, on gRPC,
    ``grpc`` (None: not quiet there, KServe's interceptor maps and logs it); ``reason`` is what it is counted
    and logged as (None: the exception's class name)."""

    exc: type[BaseException]
    http: int | None
    grpc: grpc.StatusCode | None
    reason: str | None = None
    #: REST: ``loud(request, exc)`` True when KServe's own handler answers it instead (an ERROR line with a
    #: traceback, KServe's status); None: never
    loud: Callable[[Request, BaseException], bool] | None = None


def _server_error(request: Request, exc: BaseException) -> bool:
    return isinstance(exc, StarletteHTTPException) and exc.status_code >= 500


def _not_a_version(request: Request, exc: BaseException) -> bool:
    """KServe raises NotImplementedError for a model version in the path or query (the client's choice, a
    400); anything else not implemented stays KServe's 501."""
    return not ("/versions/" in request.url.path or "model_version" in request.query_params)


#: Most specific first.
CLIENT_ERRORS: tuple[ClientError, ...] = (
    ClientError(BatchTooLarge, 413, grpc.StatusCode.INVALID_ARGUMENT, "BatchTooLarge"),
    ClientError(InvalidInput, 400, grpc.StatusCode.INVALID_ARGUMENT),
    ClientError(ModelNotFound, 404, grpc.StatusCode.NOT_FOUND, "ModelNotFound"),
    ClientError(PayloadTooLarge, 413, None, PAYLOAD_TOO_LARGE),
    ClientError(RequestValidationError, 400, None, "RequestValidationError"),
    ClientError(NotImplementedError, 400, None, VERSION_NOT_SUPPORTED, loud=_not_a_version),
    ClientError(StarletteHTTPException, None, None, loud=_server_error),
)

#: The HTTP status a quiet gRPC error is logged with and given to the payload log (its code's equivalent).
GRPC_AS_HTTP = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404}


def lookup(exc: BaseException) -> ClientError | None:
    """The first row ``exc`` is an instance of; None: not a client error."""
    for row in CLIENT_ERRORS:
        if isinstance(exc, row.exc):
            return row
    return None


def grpc_quiet(exc: BaseException) -> ClientError | None:
    """The row of a client error answered quietly on gRPC (with ``row.grpc``); None: KServe's mapping."""
    for row in CLIENT_ERRORS:
        if row.grpc is not None and isinstance(exc, row.exc):
            return row
    return None


def rest_handled() -> tuple[ClientError, ...]:
    """The rows the REST side registers its client-error handler for (a base's row covers its subclasses)."""
    classes = [row.exc for row in CLIENT_ERRORS]
    return tuple(
        row for row in CLIENT_ERRORS if not any(row.exc is not base and issubclass(row.exc, base) for base in classes)
    )
