"""The gRPC side of the guard: KServe's gRPC server with our checks around every call.

KServe builds its ``grpc.aio`` server with a fixed interceptor tuple
(``kserve.protocol.grpc.server.GRPCServer.start``) whose exception interceptor logs every
client error at ERROR with a traceback. :class:`GuardedGRPCServer` builds the same server with no
interceptor at all — each would be a layer of Python and of gRPC's interceptor chain per call — and
:class:`CallGuard` around each method instead, one coroutine per call doing, in this order:

1. KServe's access line (``--access_log``), as its logging interceptor wrote it;
2. API keys and rate limits (only when keys or limits are on; not the health RPCs): UNAUTHENTICATED
   for a missing or invalid key (``x-api-key`` or ``authorization: Bearer`` metadata),
   RESOURCE_EXHAUSTED with ``retry-after`` trailing metadata over the rate;
3. when :class:`_GuardedMethods` found no slot of ``--max_concurrency`` free: a wait for one, first come
   first served, in a queue of ``--max_queued_rpcs`` calls (16 × the cap by default), or — that queue full
   too — the busy refusal;
4. the method, its exceptions mapped by :class:`QuietErrorsInterceptor`: client errors
   (INVALID_ARGUMENT, NOT_FOUND: the rows of :data:`predictor.transport.errors.CLIENT_ERRORS` with a
   gRPC code) as one WARNING line, counted by reason; everything else as KServe does it;

and every ModelInfer counted by the status it ended with, outermost; with :class:`CheckedServicer`:
KServe's servicer without the model repository RPCs
(``RepositoryModelLoad``/``Unload`` answer UNIMPLEMENTED: this server loads its one model at start),
whose ``ModelInfer`` charges the request's size to the guard's budget of bytes in flight
(RESOURCE_EXHAUSTED when it does not fit) and then offers the request to the model's decode entry
(:class:`predictor.codec.entry.DecodeEntry`), which refuses more input tensors than the model has
features before KServe turns each into Python objects (7 MB of empty tensors took 350 MB and 5 s of the
event loop) and decodes a plain request (:func:`predictor.codec.v2_grpc.decode_grpc`) from the protobuf
straight into the model's matrix — not into ~80 ``InferInput`` objects per row — and the model's
answer written into a ``ModelInferResponse`` directly (:func:`encode_response`); both go through
KServe's data plane in between (``DataPlane.infer``: the model's lookup, KServe's pre/predict/post
latency histograms); with the payload log on, the row keeps the protobuf request, read into values by
the log's writer thread, off the request path. Anything else takes KServe's own ``ModelInfer``, which
writes the error messages.
At most ``--max_concurrency`` RPCs run at once (:class:`_GuardedMethods`), at most ``--max_queued_rpcs`` more
wait for a slot; beyond, RESOURCE_EXHAUSTED naming both limits and their flags, as REST's 503 names its
limit. Calls not yet taken from gRPC core wait there, a bounded number (:func:`server_options`). The count
(:func:`~predictor.observe.request_count.ended_status`) takes a busy refusal (the full queue, the byte budget)
as 503, as REST counts it, not as the rate limit's 429 that RESOURCE_EXHAUSTED maps to.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc import aio
from kserve.logging import logger as kserve_logger
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferResponse, to_grpc_parameters
from kserve.utils.utils import to_headers

from predictor.codec.entry import decode_entry
from predictor.guard.client_errors import log_client_error, log_refusal, request_id
from predictor.guard.policy import OPEN_GRPC_METHODS, RATE_LIMITED, Guard, GuardConfig
from predictor.observe.request_count import INFER_METHOD, CountRequest, count_as, ended_status
from predictor.transport import errors, kserve_patches
from predictor.transport.rest_middleware import REPOSITORY_REFUSED, Refused

CountError = Callable[[str, str], None]
#: gRPC calls that may wait in gRPC core to be taken: BACKLOG_PER_HELD × what the process can hold
#: (``--max_concurrency`` in flight plus ``--max_queued_rpcs`` waiting), but at least MIN_GRPC_BACKLOG (about
#: core's own default of 1,000), so that a burst over a small queue still reaches the code that refuses it with
#: a reason (see :func:`server_options`).
BACKLOG_PER_HELD = 2
MIN_GRPC_BACKLOG = 1024
_CODES = {401: grpc.StatusCode.UNAUTHENTICATED, 429: grpc.StatusCode.RESOURCE_EXHAUSTED}


def _peer_address(peer: str) -> str:
    """``ipv4:127.0.0.1:5555`` → ``127.0.0.1``, ``ipv6:[::1]:5555`` → ``::1`` (the client, not its port)."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6") or ":" not in rest:
        return peer
    return rest.rsplit(":", 1)[0].strip("[]")


class CallGuard:
    """Everything around a call, in one coroutine per call: what five ``grpc.aio`` interceptors did, each a
    layer of Python (and of gRPC's interceptor chain) per call, in the same order with the same answers:

    1. KServe's access line (``--access_log``: ``grpc method: …`` at INFO, every RPC it serves);
    2. each ModelInfer counted by the status it ended with (:mod:`predictor.observe.request_count`);
    3. API keys and rate limits (only when keys or limits are on; not the health RPCs): UNAUTHENTICATED,
       or RESOURCE_EXHAUSTED with ``retry-after`` trailing metadata over the rate;
    4. ``queued`` (no slot of ``--max_concurrency`` was free, said by :class:`_GuardedMethods`): a wait for one
       in the queue of ``--max_queued_rpcs``; that full too, RESOURCE_EXHAUSTED with ``retry-after`` and
       the reason (both limits and the settings that raise them), counted as 503;
    5. the method, its exceptions mapped by :class:`QuietErrorsInterceptor` (client errors quiet and counted).

    :meth:`wrap` builds a method's handler once (:class:`_GuardedMethods`, which also holds the slots), not
    per call. ``count_error`` counts the client errors step 5 keeps quiet; ``refused`` gets the inference
    requests refused before the model (the payload log's rows).
    """

    def __init__(
        self,
        guard: Guard,
        count_error: CountError,
        count_request: CountRequest | None = None,
        refused: Refused | None = None,
        access_log: bool = False,
    ) -> None:
        self.guard = guard
        self.quiet = QuietErrorsInterceptor(count_error, refused)
        self.count_request = count_request
        self.refused = refused
        self.access_log = access_log

    def wrap(self, method_name: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` (a unary one: the V2 service has no streaming RPC) run inside this guard."""
        if handler.unary_unary is None:
            raise TypeError(f"{method_name}: only unary RPCs are guarded")
        behavior = handler.unary_unary
        handle_exception = self.quiet.handle_exception
        count, log_line = self.count_request, self.access_log
        short = method_name.rsplit("/", 1)[-1]
        is_open = short in OPEN_GRPC_METHODS
        checked = self.guard.active and not is_open
        infer = short == INFER_METHOD

        async def call(request: Any, context: Any, queued: bool = False) -> Any:
            if log_line:
                kserve_logger.info(f"grpc method: {method_name}")
            try:
                if checked:
                    await self._check(request, context, method_name)
                if queued:  # no slot was free when it was taken: wait in the queue, or be refused when it is full
                    await self._wait_for_slot(request, context, method_name)
                try:
                    response = await behavior(request, context)
                except aio.AbortError:  # the method aborted with its own status (a refusal): already answered
                    raise
                except Exception as ex:  # noqa: BLE001 - mapped (it raises), as the exception interceptor did
                    await handle_exception(ex, request, context, method_name)
            except BaseException:
                if count is not None and infer:
                    count("grpc", ended_status(context, raised=True))
                raise
            if count is not None and infer:
                count("grpc", ended_status(context, raised=False))
            return response

        return handler._replace(unary_unary=call)

    async def _wait_for_slot(self, request: Any, context: Any, method_name: str) -> None:
        """A slot of ``--max_concurrency``, after the calls ahead in the queue of ``--max_queued_rpcs``; the busy
        refusal when that queue is full, or when the request does not fit the budget of bytes in flight
        (``--max_inflight_body_bytes``) while it waits. The slot is given back when the call's task ends,
        however it ends."""
        guard = self.guard
        # grpc.aio has read the request before any handler runs: a waiting call holds its body, so it is charged
        # to the budget of bytes in flight while it waits (ModelInfer charges it again once it runs)
        size = request.ByteSize() if hasattr(request, "ByteSize") else 0
        refusal = guard.admit("grpc", size)
        if refusal is None:
            try:
                refusal = await guard.wait_rpc("grpc")
            finally:
                guard.inflight.release(size)
        if refusal is not None:
            await _refuse_busy(refusal, request, context, method_name, self.refused)
        task = asyncio.current_task()
        assert task is not None  # awaited in the call's task: wait_rpc could not have waited otherwise
        task.add_done_callback(lambda _task: guard.rpcs.release())

    async def _check(self, request: Any, context: Any, method_name: str) -> None:
        """API keys and the rate limit: abort with the refusal, if any."""
        metadata = dict(context.invocation_metadata() or ())
        refusal = self.guard.check("grpc", metadata.get, _peer_address(context.peer()))
        if refusal is None:
            return
        rid = request_id(getattr(request, "id", "") or None)
        if self.refused is not None and method_name.endswith("/ModelInfer"):
            name = getattr(request, "model_name", None)
            self.refused("grpc", name, refusal.status, f"{refusal.reason}: {refusal.message}", rid)
        log_refusal("gRPC", method_name, refusal.status, refusal.reason, rid, refusal.message)
        if refusal.reason == RATE_LIMITED:
            context.set_trailing_metadata((("retry-after", refusal.headers["retry-after"]),))
        await context.abort(_CODES[refusal.status], refusal.message)


async def _refuse_busy(refusal: Any, request: Any, context: Any, method_name: str, refused: Refused | None) -> None:
    """No slot of ``--max_concurrency`` left and no room in the queue of ``--max_queued_rpcs``:
    RESOURCE_EXHAUSTED, ``retry-after``, the reason naming both limits (counted as 503 as REST counts its
    busy answer). This replaces grpc.aio's ``maximum_concurrent_rpcs``, which refused with only
    ``Concurrent RPC limit exceeded!``."""
    rid = request_id(getattr(request, "id", "") or None)
    if refused is not None and method_name.endswith("/ModelInfer"):
        name = getattr(request, "model_name", None)
        refused("grpc", name, refusal.status, f"{refusal.reason}: {refusal.message}", rid)
    log_refusal("gRPC", method_name, refusal.status, refusal.reason, rid, refusal.message)
    count_as(refusal.status)  # 503, as REST counts it: RESOURCE_EXHAUSTED alone would be the rate limit's 429
    context.set_trailing_metadata((("retry-after", refusal.headers["retry-after"]),))
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message)


class _WrappingServer:
    """What ``add_GRPCInferenceServiceServicer_to_server`` registers on: the server, with one generic handler
    (:class:`_GuardedMethods`) in front of the servicer's. Registered method handlers are not registered: gRPC
    looks those up in C, and the slot of ``--max_concurrency`` is taken at the lookup (in
    :meth:`_GuardedMethods.service`), as the interceptor that held it did."""

    def __init__(self, server: Any, call_guard: CallGuard) -> None:
        self.server = server
        self.call_guard = call_guard

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        """Not registered: the generic handler serves the same methods (the servicer registers both)."""

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.server.add_generic_rpc_handlers(tuple(_GuardedMethods(h, self.call_guard) for h in handlers))


class _GuardedMethods(grpc.GenericRpcHandler):
    """The servicer's method handlers wrapped by :meth:`CallGuard.wrap` (each once, when first looked up), and,
    for every RPC but the health ones, a slot of ``--max_concurrency`` taken when its handler is looked up
    (before its request is read) and given back when its task has ended, however it ends; without one, the
    handler that waits for one in the queue of ``--max_queued_rpcs`` (:meth:`CallGuard._wait_for_slot`), or
    refuses when that is full (RESOURCE_EXHAUSTED naming both limits). This replaces grpc.aio's
    ``maximum_concurrent_rpcs``, which refused every call over the cap at once."""

    def __init__(self, inner: grpc.GenericRpcHandler, call_guard: CallGuard) -> None:
        self.inner = inner
        self.call_guard = call_guard
        self.wrapped: dict[str, tuple[grpc.RpcMethodHandler | None, bool]] = {}
        self.start_rpc = call_guard.guard.start_rpc
        rpcs = call_guard.guard.rpcs
        self.release_slot = lambda _task: rpcs.release()

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        try:
            handler, is_open = self.wrapped[method]
        except KeyError:
            found = self.inner.service(handler_call_details)
            handler = None if found is None else self.call_guard.wrap(method, found)
            is_open = method.rsplit("/", 1)[-1] in OPEN_GRPC_METHODS
            self.wrapped[method] = handler, is_open
        if handler is None or is_open:
            return handler
        if self.start_rpc():
            task = asyncio.current_task()  # grpc.aio runs each call in a task of its own
            if task is None:  # not a call's task: nothing could give the slot back
                self.release_slot(None)
            else:
                task.add_done_callback(self.release_slot)
            return handler
        return handler._replace(unary_unary=functools.partial(handler.unary_unary, queued=True))


class QuietErrorsInterceptor(ExceptionToStatusInterceptor):
    """KServe's exception → status mapping, with client errors quiet and counted."""

    def __init__(self, count_error: CountError, refused: Refused | None = None) -> None:
        super().__init__()
        self.count_error = count_error
        self.refused = refused

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str) -> None:
        row = errors.grpc_quiet(ex)  # the one table of both transports
        if row is not None and row.grpc is not None:
            code, status, reason = row.grpc, errors.GRPC_AS_HTTP[row.grpc], row.reason or type(ex).__name__
            self.count_error("grpc", reason)
            logged = getattr(ex, "request_id", None)  # the model logged it (predictor.transport.model)
            rid = logged or request_id(getattr(request_or_iterator, "id", "") or None)
            if logged is None and self.refused is not None and method_name.endswith("/ModelInfer"):
                name = getattr(request_or_iterator, "model_name", None)
                self.refused("grpc", name, status, f"{reason}: {ex}", rid)
            log_client_error("gRPC", method_name, status, reason, rid, str(ex))
            await context.abort(code, str(ex))
        await super().handle_exception(ex, request_or_iterator, context, method_name)


class CheckedServicer(InferenceServicer):
    """KServe's servicer; inference within the guard's byte budget, no model repository RPCs (load/unload)."""

    def __init__(
        self, data_plane: Any, model_repository_extension: Any, guard: Guard, refused: Refused | None = None
    ) -> None:
        super().__init__(data_plane, model_repository_extension)
        self.guard = guard
        self.refused = refused

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        size = request.ByteSize()
        refusal = self.guard.admit("grpc", size)
        if refusal is not None:
            rid = request_id(request.id or None)
            if self.refused is not None:
                self.refused("grpc", request.model_name, refusal.status, f"{refusal.reason}: {refusal.message}", rid)
            log_refusal("gRPC", "ModelInfer", refusal.status, refusal.reason, rid, refusal.message)
            count_as(refusal.status)  # 503, as REST's byte budget counts it
            context.set_trailing_metadata((("retry-after", refusal.headers["retry-after"]),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message)
        try:
            entry = decode_entry(self._data_plane.model_registry.get_model(request.model_name))
            decoded = entry.decode_grpc(request) if entry is not None else None
            if decoded is not None:
                response, _ = await self._data_plane.infer(
                    model_name=request.model_name, request=decoded, headers=to_headers(context)
                )
                return encode_response(response)
            return await super().ModelInfer(request, context)
        finally:
            self.guard.inflight.release(size)

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, REPOSITORY_REFUSED)

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, REPOSITORY_REFUSED)


def grpc_backlog(max_concurrency: int, queued: int) -> int:
    """How many gRPC calls may wait in gRPC core to be taken: twice the calls the process can hold
    (``max_concurrency`` in flight, ``queued`` waiting for a slot; 2,176 by default), at least
    :data:`MIN_GRPC_BACKLOG`."""
    return max(BACKLOG_PER_HELD * (max_concurrency + queued), MIN_GRPC_BACKLOG)


def server_options(config: GuardConfig, kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    """The ``grpc.aio`` server's channel arguments: KServe's message limits and a bounded backlog.

    grpc.aio takes calls from gRPC core one at a time (one outstanding ``request_call``), each a pass of
    the event loop that REST shares, so a burst waits in core's pending list before any code of ours sees
    it, and core refuses a call that finds ``max_pending_requests`` (and its hard limit) already there with
    status CANCELLED, no reason, never counted. That bound was 64 until 2026-12-08: a burst of 200 one-row
    calls on an idle predictor lost 30-60 % of its calls that way (``tests/predictor/transport/
    test_grpc_burst.py``). It is now :func:`grpc_backlog`, twice what the process can hold: the loop takes a
    burst while it is still arriving, so the part not yet taken must fit, and then our code serves each call,
    queues it for a slot (:class:`~predictor.guard.budget.QueuedSlots`) or refuses it with RESOURCE_EXHAUSTED
    naming the limits (:func:`~predictor.guard.policy.overloaded_message`). At once the process's size
    (1,088) bursts of 1,500-3,000 slow calls still lost 64-910 to core; at twice, bursts of 2,000 lost none
    (3,000: 0-201). Core still refuses (CANCELLED) beyond the bound: a loop that takes no call at all (a stall:
    the 2026-11-29 soak's calls waited in core to their deadline) or a burst far past what the process holds.
    """
    backlog = grpc_backlog(config.max_concurrency, config.queued_rpcs)
    return [
        ("grpc.max_send_message_length", kwargs.get("grpc_max_send_message_length")),
        ("grpc.max_receive_message_length", kwargs.get("grpc_max_receive_message_length")),
        ("grpc.server.max_pending_requests", backlog),
        ("grpc.server.max_pending_requests_hard_limit", backlog),
    ]


def encode_response(response: Any) -> Any:
    """The model's answer as a ``ModelInferResponse``: what ``InferResponse.to_grpc`` writes, built directly
    for the usual answer (FP64 values in a list, no binary outputs); anything else by KServe."""
    if type(response) is not InferResponse:
        return response if isinstance(response, pb.ModelInferResponse) else response.to_grpc()
    outputs = response.outputs
    if len(outputs) != 1 or response._use_binary_outputs:
        return response.to_grpc()
    output = outputs[0]
    data = output.data
    if output.datatype != "FP64" or type(data) is not list or output._raw_data is not None or output.parameters:
        return response.to_grpc()
    tensor = pb.ModelInferResponse.InferOutputTensor(
        name=output.name, datatype="FP64", shape=output.shape, contents=pb.InferTensorContents(fp64_contents=data)
    )
    parameters = response.parameters
    return pb.ModelInferResponse(
        id=response.id,
        model_name=response.model_name,
        model_version=response.model_version,
        outputs=[tensor],
        parameters=to_grpc_parameters(parameters) if parameters else None,
    )


class GuardedGRPCServer(GRPCServer):
    """``kserve.protocol.grpc.server.GRPCServer`` with ``calls`` (:class:`CallGuard`) around every method."""

    def __init__(self, *args: Any, calls: CallGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = calls
        # grpc.aio's Server.stop while its start is in progress is a SIGSEGV in grpc (a SIGTERM while
        # --workers are starting: the parent starts gRPC in the same gather): see start and stop
        self._stop_requested = False
        self._starting: asyncio.Future | None = None

    async def start(self, max_workers: int) -> None:  # same server as KServe's, our interceptors
        if self._stop_requested:  # stopped before it started: nothing to serve
            return
        guard, refused = self.calls.guard, self.calls.refused
        servicer = CheckedServicer(self._data_plane, self._model_repository_extension, guard, refused)
        server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            options=server_options(guard.config, self._kwargs),
        )  # no interceptors: CallGuard wraps each method, and the cap on RPCs in flight is its own
        kserve_patches.set_grpc_server(self, server)  # what KServe's stop stops
        wrapping = _WrappingServer(server, self.calls)  # no grpc.aio interceptor: each is a layer per call
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, wrapping)
        server.add_insecure_port(f"[::]:{self._port}")
        self._starting = asyncio.ensure_future(server.start())
        try:
            await asyncio.shield(self._starting)
        finally:
            if self._starting.done() and not self._starting.cancelled():
                self._starting.exception()  # retrieved: stop reports nothing twice
        await server.wait_for_termination()

    async def stop(self, sig: int | None = None) -> None:
        """KServe's stop, after a start in progress has finished (``grpc.aio`` crashes the process when a
        server is stopped while it starts); a server not started yet never starts."""
        self._stop_requested = True
        if self._starting is not None and not self._starting.done():
            await asyncio.wait([self._starting])
        await super().stop(sig)
