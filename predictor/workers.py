"""``--workers N`` > 1: KServe's REST worker processes get our middleware, handlers and ``/metrics``.

``ModelServer.start`` then builds ``RESTServerMultiProcess``, which *spawns* N fresh interpreters.
Each unpickles KServe's ``RESTServer`` (with its data plane — our
:class:`~predictor.v2_binary.CheckedDataPlane` and the model, so those arrive) and re-imports
``kserve.model_server:app``: a new FastAPI app, without what :func:`install_rest` added to the
parent's. :class:`RESTWorkers` (put in place of KServe's class, the name ``ModelServer.start``
builds it from) hands each worker a picklable :class:`WorkerSetup` that, in the worker and before
its app is built, installs the guard's middleware, our client-error handlers and our V2 JSON infer
route (:mod:`predictor.v2_rest`, given the worker's data plane) on that app and routes ``/metrics``
to the registry merged over processes (:mod:`predictor.multiproc`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from socket import socket
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess

from predictor import multiproc

if TYPE_CHECKING:
    from fastapi import FastAPI
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.rest.server import RESTServer

    from predictor.guard import Guard, GuardConfig
    from predictor.model import HousingModel

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


def install_rest(app: FastAPI, model: HousingModel, guard: Guard, dataplane: DataPlane) -> None:
    """The guard's middleware, our client-error handlers (counted into ``model``), our V1 predict and V2 JSON
    infer routes."""
    from predictor import rest, v1_rest, v2_rest

    count_error, count_refused = counters(model)
    guard.on_refused = count_refused
    rest.install(app, guard, count_error)
    v2_rest.install(app, dataplane)
    v1_rest.install(app, dataplane)  # first: most requests are V1 predictions


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

    def __call__(self, dataplane: DataPlane) -> None:
        from kserve import model_server

        from predictor.guard import Guard

        share_kserve_logging()
        model = dataplane.model_registry.get_model(self.model_name)
        app = model_server.app  # the app this worker's RESTServer.create_application builds on
        install_rest(app, model, Guard(self.guard_config), dataplane)
        # ahead of KServe's /metrics route, which RESTServer adds later: the first match wins
        app.add_api_route("/metrics", merged_metrics, methods=["GET"])
        log.info("REST worker [%d] serving %s with the guard and merged /metrics", os.getpid(), self.model_name)


class WorkerRESTServer:
    """KServe's ``RESTServer`` as a worker's target: :class:`WorkerSetup` first, then KServe's ``run``."""

    def __init__(self, server: RESTServer, setup: WorkerSetup) -> None:
        self.server = server
        self.setup = setup

    @property
    def config(self) -> Any:
        return self.server.config

    def run(self, sockets: list[socket] | None = None) -> None:
        self.setup(self.server.dataplane)
        self.server.run(sockets)


def without_websockets(server: RESTServer) -> RESTServer:
    """``server`` with uvicorn's WebSocket support off: no KServe route is a WebSocket, and uvicorn's
    default (``ws="auto"``) imports the ``websockets`` package at start when it is installed."""
    server.config.ws = "none"
    return server


def rest_server(*args: Any, **kwargs: Any) -> RESTServer:
    """KServe's single-process ``RESTServer`` (the name ``ModelServer.start`` builds it from), without WebSockets."""
    from kserve.protocol.rest.server import RESTServer

    return without_websockets(RESTServer(*args, **kwargs))


class RESTWorkers(RESTServerMultiProcess):
    """KServe's multi-process REST server, its workers set up by ``setup``; a dead worker's drift is dropped."""

    def __init__(self, *args: Any, setup: WorkerSetup, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        without_websockets(self._rest_server)
        self._rest_server = WorkerRESTServer(self._rest_server, setup)  # type: ignore[assignment]

    async def keep_subprocess_alive(self, sockets: list[socket]) -> None:
        before = [p.pid for p in self._processes]
        await super().keep_subprocess_alive(sockets)
        for old, process in zip(before, self._processes, strict=True):
            if old is not None and process.pid != old:  # replaced: its counts stay, its window goes
                multiproc.mark_dead(old)
