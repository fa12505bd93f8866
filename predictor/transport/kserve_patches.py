"""Every place the predictor reaches into KServe's internals, listed once with the KServe version
they were written for.

KServe 0.21 offers no hook for what these do (our own REST workers and gRPC server, the binary-body
check before decoding, the V2 JSON fast route, draining on SIGTERM), so each replaces a module name,
overrides a method, reads a private attribute or writes into an object KServe made. Every *write* is a
function of this module (below :data:`PATCHES`): the module names ``ModelServer.start`` builds its
servers from, the server's data plane, the REST server's uvicorn settings, the workers' target and
processes, the gRPC server's ``grpc.aio`` server, the single-process REST server's exit flag, and the
hook into the building of KServe's app (our handlers and routes after KServe's, its
``TimingMiddleware`` dropped); ``tests/predictor/transport/test_kserve_patches.py`` checks that no other
module assigns to them. What stays where it is used (the module named in ``where``) is a subclass's
overridden method and a read of a private attribute, and the routes and exception handlers of the app,
set through the app's own (Starlette) lists when this module's hook runs. This list is what an upgrade
must look at; the same test checks that the installed KServe is ``KSERVE_VERSION`` and still has every
target, so a KServe that moves one fails there, by name, before anything is served.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from kserve.model_server import ModelServer
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
    from kserve.protocol.rest.server import RESTServer

#: The kserve (and kserve-storage) release every patch below was written for and tested against.
KSERVE_VERSION = "0.21.0"


@dataclass(frozen=True)
class Patch:
    """One reach into KServe: ``target`` is ``module:Name`` (a class), with ``members`` that must
    exist on it — ``name`` for an attribute or method, ``self.name`` for an instance attribute its
    source assigns, ``Name(`` for a call its source makes."""

    where: str
    target: str
    members: tuple[str, ...]
    how: str


PATCHES: tuple[Patch, ...] = (
    Patch(
        "predictor/__main__.py (_install_guard)",
        "kserve.model_server:ModelServer",
        ("RESTServerMultiProcess(", "RESTServer(", "GRPCServer(", "self.dataplane"),
        "ModelServer.start builds its servers from kserve.model_server's RESTServerMultiProcess, RESTServer and "
        "GRPCServer names: replaced by ours (replace_servers); its dataplane replaced by ServingDataPlane "
        "(use_dataplane)",
    ),
    Patch(
        "predictor/transport/workers.py (RESTWorkers)",
        "kserve.protocol.rest.multiprocess.server:RESTServerMultiProcess",
        (
            "init_processes",
            "keep_subprocess_alive",
            "self._rest_server",
            "self._processes",
            "self.should_exit",
            "self.log_config_file",
        ),
        "subclassed: workers started as our WorkerProcess and replaced when they die (put_worker_process); "
        "what they run wrapped (wrap_worker_target)",
    ),
    Patch(
        "predictor/transport/workers.py (WorkerProcess)",
        "kserve.protocol.rest.multiprocess.server:RESTServerProcess",
        ("start", "is_alive", "kill", "wait_for_termination", "pid"),
        "subclassed in our module, so a spawned worker imports predictor.transport before kserve; "
        "RESTWorkers starts, watches and replaces it through these",
    ),
    Patch(
        "predictor/transport/grpc_server.py (GuardedGRPCServer)",
        "kserve.protocol.grpc.server:GRPCServer",
        ("start", "self._data_plane", "self._model_repository_extension", "self._kwargs", "self._server", "self._port"),
        "subclassed: start builds the server with our servicer (methods wrapped by CallGuard) from the private "
        "fields, and hands it to KServe's stop (set_grpc_server)",
    ),
    Patch(
        "predictor/transport/grpc_server.py (CheckedServicer)",
        "kserve.protocol.grpc.servicer:InferenceServicer",
        ("ModelInfer", "self._data_plane"),
        "subclassed: ModelInfer checks a request before KServe decodes it",
    ),
    Patch(
        "predictor/codec/v2_binary.py (CheckedDataPlane)",
        "kserve.protocol.dataplane:DataPlane",
        ("decode_inference_request",),
        "subclassed: binary V2 REST bodies checked before KServe decodes them",
    ),
    Patch(
        "predictor/transport/v1_rest.py (ServingDataPlane)",
        "kserve.protocol.dataplane:DataPlane",
        ("explain",),
        "overridden: V1 :explain answers with none of the request's headers (KServe's explain starts its "
        "response headers from the request's own dict: Authorization, X-API-Key, Cookie came back)",
    ),
    Patch(
        "predictor/transport/v2_rest.py",
        "kserve.protocol.infer_type:InferResponse",
        ("self._requested_outputs", "self._use_binary_outputs"),
        "read: the JSON route encodes the response itself",
    ),
    Patch(
        "predictor/transport/v2_rest.py",
        "kserve.protocol.infer_type:InferOutput",
        ("self._raw_data",),
        "read: binary outputs go back to KServe's encoder",
    ),
    Patch(
        "predictor/transport/grpc_server.py (encode_response)",
        "kserve.protocol.infer_type:InferResponse",
        ("self._use_binary_outputs",),
        "read: the gRPC answer is written directly unless binary outputs were asked for",
    ),
    Patch(
        "predictor/transport/grpc_server.py (encode_response)",
        "kserve.protocol.infer_type:InferOutput",
        ("self._raw_data",),
        "read: an output with raw data goes back to KServe's to_grpc",
    ),
    Patch(
        "predictor/codec/decode.py",
        "kserve.protocol.infer_type:InferInput",
        ("self._data", "self._shape", "self._name", "self._datatype"),
        "read: one-row tensors' fields as stored, not through the properties (the properties when they are "
        "gone); codec/ sits below the transport, so it only reads",
    ),
    Patch(
        "predictor/transport/shutdown.py (DrainingModelServer)",
        "kserve.model_server:ModelServer",
        (
            "stop",
            "self._rest_server",
            "self._rest_multiprocess_server",
            "self._grpc_server",
            "self.grace_period",
            "self.registered_models",
        ),
        "overridden: drain the servers (its private fields), then unload the models; the single-process REST "
        "server told to exit",
    ),
    Patch(
        "predictor/transport/shutdown.py (DrainingModelServer)",
        "kserve.protocol.rest.server:RESTServer",
        ("self._server",),
        "written (tell_rest_server_to_exit): its uvicorn Server's should_exit, for a SIGTERM that came before "
        "uvicorn's own handler",
    ),
    Patch(
        "predictor/transport/workers.py (install_rest, WorkerRESTServer, configured)",
        "kserve.protocol.rest.server:RESTServer",
        (
            "create_application",
            "self._add_middlewares(",
            "self._register_endpoints(",
            "self._add_exception_handlers(",
            "self.dataplane",
            "self.config",
        ),
        "KServe builds kserve.model_server's app when its server starts: our routes are on it before (V1 "
        "inserted first, V2 JSON infer and /metrics appended ahead of KServe's: the first match wins); when "
        "the middleware stack is built, after (before_stack_build), rest_middleware.install swaps in our "
        "client-error handlers and drops the repository routes and drop_timing_middleware drops the "
        "TimingMiddleware; a worker runs the pickled server's run after our setup on its dataplane; "
        "config.ws and limit_concurrency written (configure_rest)",
    ),
    Patch(
        "predictor/transport/kserve_patches.py (drop_timing_middleware)",
        "kserve.protocol.rest.server:TimingMiddleware",
        ("__call__",),
        "removed from app.user_middleware (RESTServer._add_middlewares adds it) with the trace log off",
    ),
    Patch(
        "predictor/transport/v1_rest.py (V1PredictRoute)",
        "kserve.protocol.rest.v1_endpoints:V1Endpoints",
        ("predict",),
        "its steps retaken in our route ahead of it: model known and ready, DataPlane.decode, infer, encode",
    ),
    Patch(
        "predictor/transport/rest_middleware.py (without_repository_routes)",
        "kserve.protocol.rest.v2_endpoints:V2Endpoints",
        ("load", "unload"),
        "their routes (under /v2/repository/) taken out of the app when its stack is built, a 404 in their place",
    ),
    Patch(
        "predictor/__main__.py (_install_guard)",
        "kserve.model_server:app",
        ("router", "add_api_route", "add_middleware", "build_middleware_stack", "exception_handlers"),
        "the module's FastAPI app (what a single-process RESTServer serves) set up before KServe's server starts",
    ),
    Patch(
        "bench/floor.py (QuietGRPCServer, main)",
        "kserve.protocol.grpc.server:GRPCServer",
        ("start", "self._data_plane", "self._model_repository_extension", "self._kwargs", "self._server", "self._port"),
        "the benchmark's KServe floor, not the predictor: its gRPC server without the LoggingInterceptor, put in "
        "kserve.model_server's GRPCServer, and KServe's TimingMiddleware dropped, as the predictor's log flags "
        "do; it writes them itself because importing predictor.transport would arm the deferred imports in the "
        "floor (tests/test_import_side_effects.py)",
    ),
    Patch(
        "predictor/core/storage.py",
        "kserve_storage:Storage",
        ("_get_s3_client_kwargs",),
        "called: the storage-initializer's S3 settings for our own downloads",
    ),
)


def _resolve(target: str) -> object:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def missing() -> list[str]:
    """What the installed KServe lacks of :data:`PATCHES` (``target member (where)``), plus a line
    when its version is not :data:`KSERVE_VERSION`; empty when every patch still fits."""
    problems = []
    for dist in ("kserve", "kserve-storage"):
        if (version := importlib.metadata.version(dist)) != KSERVE_VERSION:
            problems.append(f"{dist} {version} installed, the patches were written for {KSERVE_VERSION}")
    for patch in PATCHES:
        obj = _resolve(patch.target)
        source = inspect.getsource(obj) if inspect.isclass(obj) else ""
        for member in patch.members:
            if member.endswith("("):  # a call in the class's source
                found = member in source
            elif member.startswith("self."):  # an instance attribute its source assigns
                found = re.search(rf"{re.escape(member)}\s*(:[^=\n]*)?=", source) is not None
            else:
                found = hasattr(obj, member)
            if not found:
                problems.append(f"{patch.target} {member} ({patch.where})")
    return problems


# -- the writes: the one place that assigns into KServe's modules and objects ----------------------


def replace_servers(
    *,
    rest_workers: Callable[..., Any] | None = None,
    rest_server: Callable[..., Any] | None = None,
    grpc_server: Callable[..., Any] | None = None,
) -> None:
    """What ``ModelServer.start`` builds its servers from: ``kserve.model_server``'s module names
    ``RESTServerMultiProcess``, ``RESTServer`` and ``GRPCServer`` (None: KServe's own stays)."""
    from kserve import model_server

    if rest_workers is not None:
        model_server.RESTServerMultiProcess = rest_workers
    if rest_server is not None:
        model_server.RESTServer = rest_server
    if grpc_server is not None:
        model_server.GRPCServer = grpc_server


def use_dataplane(server: ModelServer, dataplane: DataPlane) -> None:
    """``dataplane`` in every server ``server.start`` builds (REST workers too: KServe pickles it into them)."""
    server.dataplane = dataplane


def configure_rest(server: RESTServer, *, ws: str, limit_concurrency: int | None) -> RESTServer:
    """``server`` (KServe's REST server, before it runs) with these uvicorn settings."""
    server.config.ws = ws
    server.config.limit_concurrency = limit_concurrency
    return server


def wrap_worker_target(workers: RESTServerMultiProcess, wrap: Callable[[RESTServer], Any]) -> RESTServer:
    """What each REST worker of ``workers`` runs (KServe's ``RESTServer``) replaced by ``wrap(it)``; the
    ``RESTServer`` that was there returned."""
    server = workers._rest_server
    workers._rest_server = wrap(server)
    return server


def put_worker_process(workers: RESTServerMultiProcess, process: RESTServerProcess, index: int | None = None) -> None:
    """``process`` among the worker processes ``workers`` watches and stops: appended, or in place of the one
    at ``index``."""
    if index is None:
        workers._processes.append(process)
    else:
        workers._processes[index] = process


def set_grpc_server(server: GRPCServer, aio_server: Any) -> None:
    """``aio_server`` (a ``grpc.aio`` server) as what ``server`` (KServe's ``GRPCServer``) stops."""
    server._server = aio_server


def tell_rest_server_to_exit(server: RESTServer) -> None:
    """Ask the uvicorn server of KServe's single-process ``RESTServer`` to exit (it drains first)."""
    server._server.should_exit = True


def before_stack_build(app: FastAPI, step: Callable[[], None]) -> None:
    """Run ``step`` when ``app`` builds its middleware stack: on KServe's app, after its ``RESTServer`` has
    registered its routes, exception handlers and middlewares (``create_application``) and before the stack
    is made of them. Steps run in the reverse order of these calls."""
    build = app.build_middleware_stack

    def build_after_step() -> Any:
        step()
        return build()

    app.build_middleware_stack = build_after_step  # type: ignore[method-assign]


def drop_timing_middleware(app: FastAPI) -> None:
    """Leave KServe's ``TimingMiddleware`` (its ``kserve.trace`` timing line, and a walk over the app's routes
    per request) out of ``app`` when its stack is built (``RESTServer._add_middlewares`` adds it at start)."""

    def drop() -> None:
        from kserve.protocol.rest.server import TimingMiddleware

        app.user_middleware = [m for m in app.user_middleware if m.cls is not TimingMiddleware]

    before_stack_build(app, drop)
