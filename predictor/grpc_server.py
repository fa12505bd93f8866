"""The gRPC side of the guard: KServe's gRPC server with our interceptors.

KServe builds its ``grpc.aio`` server with a fixed interceptor tuple
(``kserve.protocol.grpc.server.GRPCServer.start``) whose exception interceptor logs every
client error at ERROR with a traceback. :class:`GuardedGRPCServer` builds the same server with:

1. :class:`GuardInterceptor` (only when keys or limits are on): UNAUTHENTICATED for a missing or
   invalid key (``x-api-key`` or ``authorization: Bearer`` metadata), RESOURCE_EXHAUSTED with
   ``retry-after`` trailing metadata over the rate; the health RPCs stay open.
2. KServe's logging interceptor, unchanged.
3. :class:`QuietErrorsInterceptor`: client errors (INVALID_ARGUMENT, NOT_FOUND) as one WARNING line,
   counted by reason; everything else as KServe does it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc import aio
from grpc_interceptor.server import AsyncServerInterceptor
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer

from predictor.client_errors import log_client_error, request_id
from predictor.guard import OPEN_GRPC_METHODS, RATE_LIMITED, Guard

CountError = Callable[[str, str], None]
_CODES = {401: grpc.StatusCode.UNAUTHENTICATED, 429: grpc.StatusCode.RESOURCE_EXHAUSTED}


def _peer_address(peer: str) -> str:
    """``ipv4:127.0.0.1:5555`` → ``ipv4:127.0.0.1`` (the client, not its port)."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


class GuardInterceptor(AsyncServerInterceptor):
    """API keys and rate limits for every RPC but the health ones."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept(self, method: Callable, request_or_iterator: Any, context: Any, method_name: str) -> Any:
        if method_name.rsplit("/", 1)[-1] not in OPEN_GRPC_METHODS:
            metadata = dict(context.invocation_metadata() or ())
            refusal = self.guard.check("grpc", metadata.get, _peer_address(context.peer()))
            if refusal is not None:
                rid = request_id(getattr(request_or_iterator, "id", "") or None)
                log_client_error("gRPC", method_name, refusal.status, refusal.reason, rid, refusal.message)
                if refusal.reason == RATE_LIMITED:
                    context.set_trailing_metadata((("retry-after", refusal.headers["retry-after"]),))
                await context.abort(_CODES[refusal.status], refusal.message)
        return await method(request_or_iterator, context)


class QuietErrorsInterceptor(ExceptionToStatusInterceptor):
    """KServe's exception → status mapping, with client errors quiet and counted."""

    def __init__(self, count_error: CountError) -> None:
        super().__init__()
        self.count_error = count_error

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str) -> None:
        if isinstance(ex, (InvalidInput, ModelNotFound)):
            not_found = isinstance(ex, ModelNotFound)
            code = grpc.StatusCode.NOT_FOUND if not_found else grpc.StatusCode.INVALID_ARGUMENT
            status = 404 if not_found else 400
            reason = type(ex).__name__
            self.count_error("grpc", reason)
            rid = request_id(getattr(request_or_iterator, "id", "") or None)
            log_client_error("gRPC", method_name, status, reason, rid, str(ex))
            await context.abort(code, str(ex))
        await super().handle_exception(ex, request_or_iterator, context, method_name)


class GuardedGRPCServer(GRPCServer):
    """``kserve.protocol.grpc.server.GRPCServer`` with the interceptors above."""

    def __init__(self, *args: Any, guard: Guard, count_error: CountError, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.count_error = count_error

    def interceptors(self) -> tuple[Any, ...]:
        quiet = QuietErrorsInterceptor(self.count_error)
        if self.guard.active:
            return (GuardInterceptor(self.guard), LoggingInterceptor(), quiet)
        return (LoggingInterceptor(), quiet)

    async def start(self, max_workers: int) -> None:  # same server as KServe's, our interceptors
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=self.interceptors(),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"[::]:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()
