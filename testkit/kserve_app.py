"""A real KServe REST app as ``python -m predictor`` builds it, for in-process tests (Starlette's TestClient).

``RESTServer``'s middlewares, routes and exception handlers, plus our guard, handlers and routes, around
one loaded :class:`~predictor.transport.model.HousingModel`.
"""

from __future__ import annotations

from fastapi import FastAPI
from kserve.model_repository import ModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer

from predictor.guard.policy import Guard, GuardConfig
from predictor.observe.request_logs import RequestLogs
from predictor.transport.model import HousingModel
from predictor.transport.v1_rest import ServingDataPlane, V1PredictRoute
from predictor.transport.workers import install_rest


def kserve_app(
    model: HousingModel, ours: bool = True, guard: GuardConfig | None = None, logs: RequestLogs | None = None
) -> FastAPI:
    """The app; ``ours=False`` takes our V1 predict route out, so KServe's ``V1Endpoints.predict`` answers;
    ``guard``: the guard's settings (default: off but the body limit); ``logs``: the per-request log lines
    (default: the predictor's, off)."""
    registry = ModelRepository()
    registry.update(model)
    dataplane = ServingDataPlane(registry)
    app = FastAPI()
    install_rest(app, model, Guard(guard or GuardConfig()), dataplane, logs)
    if not ours:
        app.router.routes[:] = [r for r in app.router.routes if not isinstance(r, V1PredictRoute)]
    server = RESTServer("kserve.model_server:app", dataplane, ModelRepositoryExtension(registry), http_port=0)
    server._add_middlewares(app)  # what RESTServer.create_application does to KServe's app
    server._register_endpoints(app)
    server._add_exception_handlers(app)
    return app
