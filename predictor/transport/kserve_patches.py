"""Every place the predictor reaches into KServe's internals, listed once with the KServe version
they were written for.

KServe 0.21 offers no hook for what these do (our own REST workers and gRPC server, the binary-body
check before decoding, the V2 JSON fast route, draining on SIGTERM), so each replaces a module name,
overrides a method or reads a private attribute. The code stays where it is used (the module
named in ``where``); this list is what an upgrade must look at, and
``tests/predictor/transport/test_kserve_patches.py`` checks that the installed KServe is
``KSERVE_VERSION`` and still has every target, so a KServe that moves one fails there, by name,
before anything is served.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from dataclasses import dataclass

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
        "GRPCServer names: replaced by ours; its dataplane replaced by ServingDataPlane",
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
        "subclassed: workers started as our WorkerProcess and replaced when they die",
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
        "subclassed: start builds the server with our servicer (methods wrapped by CallGuard) from the private fields",
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
        "written: a decoded tensor built without the setters' copies (a fallback when they are gone)",
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
        "written: its uvicorn Server's should_exit, for a SIGTERM that came before uvicorn's own handler",
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
        "the middleware stack is built, after, rest_middleware.install swaps in our client-error handlers and "
        "drops the repository routes and request_logs.install drops the TimingMiddleware; a worker runs "
        "the pickled server's run after our setup on its dataplane; config.ws and limit_concurrency written",
    ),
    Patch(
        "predictor/observe/request_logs.py (install)",
        "kserve.protocol.rest.server:TimingMiddleware",
        ("__call__",),
        "removed by its class name from app.user_middleware (RESTServer._add_middlewares adds it) with the "
        "trace log off",
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
