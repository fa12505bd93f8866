"""``/metrics`` on a port of its own (``--metrics_port``), so the route clients use never exposes it.

The series name the bundle's digest and version, the traffic and the drift of the features: what a
gateway route to the HTTP port must not hand to anyone. With ``--metrics_port`` the scrape is
served by prometheus_client's own HTTP server (a daemon thread of the parent process) on that port
only, and the HTTP port answers ``/metrics`` with 404 (:func:`not_here`). With ``--workers`` > 1
the parent serves the series merged over every process (:mod:`predictor.observe.multiproc`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from predictor.observe import multiproc

#: What the HTTP port answers to ``/metrics`` when the scrape has a port of its own.
MOVED = "metrics are not served on this port"


def serve(port: int, host: str = "0.0.0.0") -> Any:  # noqa: S104 - the pod's scraper reaches it by pod IP
    """Start the scrape endpoint on ``host:port`` (OSError when the port is taken); returns the server."""
    from prometheus_client import REGISTRY, start_http_server

    registry = multiproc.registry() if multiproc.directory() is not None else REGISTRY
    started = start_http_server(port, addr=host, registry=registry)
    return started[0] if isinstance(started, tuple) else started


async def not_here(request: Request) -> JSONResponse:
    """The HTTP port's ``/metrics`` when the scrape is elsewhere: 404, as for any unknown path."""
    return JSONResponse({"error": MOVED}, status_code=404)
