"""``--workers N`` > 1: KServe's REST worker processes get our middleware, handlers and ``/metrics``.

``ModelServer.start`` then builds ``RESTServerMultiProcess``, which *spawns* N fresh interpreters.
Each unpickles KServe's ``RESTServer`` (with its data plane — our
:class:`~predictor.transport.v1_rest.ServingDataPlane` and the model, so those arrive) and re-imports
``kserve.model_server:app``: a new FastAPI app, without what :func:`install_rest` added to the
parent's. :class:`RESTWorkers` (put in place of KServe's class, the name ``ModelServer.start``
builds it from) hands each worker a picklable :class:`WorkerSetup` that, in the worker and before
its app is built, installs the guard's middleware, our client-error handlers and our V2 JSON infer
route (:mod:`predictor.transport.v2_rest`, given the worker's data plane) on that app and routes ``/metrics``
to the registry merged over processes (:mod:`predictor.observe.multiproc`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from socket import socket
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess

from predictor.observe import multiproc
from predictor.transport import kserve_patches

if TYPE_CHECKING:
    from fastapi import FastAPI
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.rest.server import RESTServer

    from predictor.guard.policy import Guard, GuardConfig
    from predictor.transport.model import HousingModel

from predictor.observe.request_logs import RequestLogs

log = logging.getLogger("predictor")


def share_kserve_logging() -> None:
    """Our logger writes through KServe's handlers (same format, stderr)."""
    kserve_logger = logging.getLogger("kserve")
    ours = logging.getLogger("predictor")
    if kserve_logger.handlers and not ours.handlers:
        ours.handlers = list(kserve_logger.handlers)
        ours.setLevel(logging.INFO)
        ours.propagate = False


def counters(model: HousingModel) -> tuple[Callable[[str, str], None], Callable[[str, str], None]]:
    """``count_error(protocol, reason)`` and ``count_refused(protocol, reason)`` into the model's metrics."""

    def count_error(protocol: str, reason: str) -> None:
        if model.metrics is not None:
            model.metrics.error(protocol, reason)

    def count_refused(protocol: str, reason: str) -> None:
        if model.metrics is not None:
            model.metrics.refuse(protocol, reason)

    return count_error, count_refused


def request_counter(model: HousingModel) -> Callable[[str, int], None]:
    """``count(protocol, status)`` of every inference request into the model's metrics."""

    def count(protocol: str, status: int) -> None:
        if model.metrics is not None:
            model.metrics.answered(protocol, status)

    return count


def install_rest(
    app: FastAPI, model: HousingModel, guard: Guard, dataplane: DataPlane, logs: RequestLogs | None = None
) -> None:
    """The guard's middleware, our client-error handlers (counted into ``model``), our V1 predict and V2 JSON
    infer routes; KServe's timing middleware only with the trace log on (``logs``; default: all off)."""
    from predictor.observe.request_count import RequestCountMiddleware
    from predictor.transport import drain, rest_middleware, v1_rest, v2_rest

    if not (logs or RequestLogs()).trace:
        kserve_patches.drop_timing_middleware(app)

    count_error, count_refused = counters(model)
    guard.on_refused = count_refused
    rest_middleware.install(app, guard, count_error, model.log_refused)  # refusals reach the payload log
    v2_rest.install(app, dataplane)
    v1_rest.install(app, dataplane)  # first: most requests are V1 predictions
    # the payload log's last rows: a REST worker ends by re-raising SIGTERM once uvicorn has shut down
    # (no exit hooks run after that), but the app's shutdown handlers run before
    app.router.on_shutdown.append(model.close_payload_log)
    app.add_middleware(RequestCountMiddleware, count=request_counter(model))  # sees every status
    flag = drain.drain_file()
    if flag is not None:  # outermost: a refusal during the preStop drain closes its connection too
        app.add_middleware(drain.DrainMiddleware, flag=flag)


async def merged_metrics(request: Request) -> Response:
    """``/metrics`` of every process of the tree (KServe's handler serves this process's registry)."""
    from prometheus_client import exposition

    encoder, content_type = exposition.choose_encoder(request.headers.get("accept"))
    return Response(content=encoder(multiproc.registry()), headers={"content-type": content_type})


@dataclass(frozen=True)
class WorkerSetup:
    """What a REST worker needs to serve like the parent would (picklable: sent to each worker)."""

    model_name: str
    guard_config: GuardConfig
    metrics_here: bool = True  # False: /metrics has a port of its own (--metrics_port), 404 here
    logs: RequestLogs = RequestLogs()  # the per-request log lines (--access_log, --trace_log)

    def __call__(self, dataplane: DataPlane) -> None:
        from kserve import model_server

        from predictor.guard.policy import Guard
        from predictor.observe import request_logs

        share_kserve_logging()
        request_logs.apply(self.logs)
        model = dataplane.model_registry.get_model(self.model_name)
        app = model_server.app  # the app this worker's RESTServer.create_application builds on
        install_rest(app, model, Guard(self.guard_config), dataplane, self.logs)
        # ahead of KServe's /metrics route, which RESTServer adds later: the first match wins
        if self.metrics_here:
            app.add_api_route("/metrics", merged_metrics, methods=["GET"])
        else:
            from predictor.observe.metrics_port import not_here

            app.add_api_route("/metrics", not_here, methods=["GET"])
        log.info("REST worker [%d] serving %s with the guard and merged /metrics", os.getpid(), self.model_name)


class WorkerRESTServer:
    """KServe's ``RESTServer`` as a worker's target: :class:`WorkerSetup` first, then KServe's ``run``."""

    def __init__(self, server: RESTServer, setup: WorkerSetup) -> None:
        self.server = server
        self.setup = setup
        self.parent_pid = os.getpid()  # pickled with this object: the worker compares it with its parent

    @property
    def config(self) -> Any:
        return self.server.config

    def run(self, sockets: list[socket] | None = None) -> None:
        die_with_parent(self.parent_pid)
        self.setup(self.server.dataplane)
        self.server.run(sockets)


def die_with_parent(parent_pid: int) -> None:
    """Linux: this worker gets SIGTERM when the parent process dies, however it dies.

    A parent killed or crashed (a SIGTERM while workers were still starting ended it with SIGSEGV in
    grpc's stop, since fixed in :meth:`~predictor.transport.grpc_server.GuardedGRPCServer.stop`) left its
    REST workers running as orphans that kept the port; under Kubernetes the
    container's end kills them, on one machine nothing did.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent was already gone before the line above (not "== 1": in a
        os.kill(os.getpid(), signal.SIGTERM)  # container the parent is PID 1)


def configured(server: RESTServer, limit_concurrency: int | None) -> RESTServer:
    """``server`` with uvicorn's WebSocket support off — no KServe route is a WebSocket, and uvicorn's
    default (``ws="auto"``) imports the ``websockets`` package at start when it is installed — and at most
    ``limit_concurrency`` connections and requests at once (uvicorn answers 503 beyond)."""
    # uvicorn counts the connection asking too (503 when connections >= its limit): one more lets
    # exactly limit_concurrency connections be served
    limit = None if limit_concurrency is None else limit_concurrency + 1
    return kserve_patches.configure_rest(server, ws="none", limit_concurrency=limit)


def rest_server(*args: Any, limit_concurrency: int | None = None, **kwargs: Any) -> RESTServer:
    """KServe's single-process ``RESTServer`` (the name ``ModelServer.start`` builds it from), configured."""
    from kserve.protocol.rest.server import RESTServer

    return configured(RESTServer(*args, **kwargs), limit_concurrency)


class WorkerProcess(RESTServerProcess):
    """KServe's REST worker process, as a class of this module.

    A spawned worker unpickles its process object before anything else; the first class it meets
    decides what it imports first. With KServe's own class that was ``kserve/__init__`` — the
    Kubernetes client, which the serving image does not have (``--workers 2`` there: every worker
    died with ``No module named 'kubernetes'`` and was restarted forever). Ours imports
    :mod:`predictor.transport` first, which defers what serving never uses.
    """


class RESTWorkers(RESTServerMultiProcess):
    """KServe's multi-process REST server, its workers set up by ``setup`` and started as :class:`WorkerProcess`;
    a dead worker is replaced (with the same logging configuration) and its drift window dropped."""

    def __init__(self, *args: Any, setup: WorkerSetup, limit_concurrency: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kserve_patches.wrap_worker_target(
            self, lambda server: WorkerRESTServer(configured(server, limit_concurrency), setup)
        )

    def _start_worker(self, sockets: list[socket]) -> WorkerProcess:
        process = WorkerProcess(sockets, self._rest_server.run, log_config_file=self.log_config_file)
        process.start()
        log.info("started REST worker [%s]", process.pid)
        return process

    def init_processes(self, sockets: list[socket]) -> None:
        for _ in range(self._rest_server.config.workers):
            kserve_patches.put_worker_process(self, self._start_worker(sockets))

    async def keep_subprocess_alive(self, sockets: list[socket]) -> None:
        for index, process in enumerate(self._processes):
            if self.should_exit.is_set():
                return  # stopping: nothing is replaced
            if not process.is_alive():
                process.kill()  # hung or gone
                await process.wait_for_termination()
                if self.should_exit.is_set():
                    return
                log.warning("REST worker [%s] died; starting another", process.pid)
                if process.pid is not None:
                    multiproc.mark_dead(process.pid)  # its counts stay, its window goes
                kserve_patches.put_worker_process(self, self._start_worker(sockets), index)
