"""The local traffic router: the embedded stand-in for the cluster's gateway split.

A small FastAPI app in front of two real predictor processes (champion, challenger):

- every request is routed by weight (``weight`` = challenger percent, random per request), or,
  with ``sticky``, by a hash of the request id (``x-request-id`` header, else the V2 body ``id``),
  so one id always lands on the same side for a given weight;
- ``GET/POST /router/state`` reads and sets the split (the local backend's "patch");
- ``/metrics`` exports per-version request counters and latency histograms (label
  ``model_version``) for the analysis gates;
- shadow mode mirrors a fraction of the champion's requests to the challenger in the background,
  never returns its answer, and records how its predictions differ (``GET /router/shadow``).

Run with ``python -m rollout.router --port 9000 --champion http://127.0.0.1:8080 --champion-version 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import math
import random
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rollout.router_series import (
    ROUTER_REQUEST_SECONDS,
    ROUTER_REQUESTS,
    ROUTER_SHADOW_ABS_DIFF,
    ROUTER_SHADOW_DIFF_DOWN,
    ROUTER_SHADOW_DIFF_SQUARES,
    ROUTER_SHADOW_DIFF_UP,
    ROUTER_SHADOW_PAIRS,
    ROUTER_SHADOW_REL_DIFF,
    ROUTER_SHADOW_REQUESTS,
    ROUTER_WEIGHT_PERCENT,
)

ROLES = ("champion", "challenger")
REQUEST_ID_HEADER = "x-request-id"
VERSION_HEADER = "x-model-version"
ROLE_HEADER = "x-rollout-role"
_HOP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DIFF_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class Upstream:
    url: str
    version: str


@dataclass
class RouterState:
    champion: Upstream | None = None
    challenger: Upstream | None = None
    weight: int = 0  # percent of requests to the challenger
    sticky: bool = False
    shadow: float = 0.0  # fraction of champion requests mirrored to the challenger

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, data: dict[str, Any]) -> None:
        """Apply a partial update (validated; raises ValueError with a one-line reason)."""
        for role in ROLES:
            if role in data:
                value = data[role]
                if value is None:
                    setattr(self, role, None)
                elif isinstance(value, dict) and isinstance(value.get("url"), str) and value.get("version") is not None:
                    setattr(self, role, Upstream(value["url"].rstrip("/"), str(value["version"])))
                else:
                    raise ValueError(f"{role} must be null or {{url, version}}")
        if "weight" in data:
            w = data["weight"]
            if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 100:
                raise ValueError(f"weight must be an integer within 0..100, got {w!r}")
            self.weight = w
        if "sticky" in data:
            self.sticky = bool(data["sticky"])
        if "shadow" in data:
            s = data["shadow"]
            if isinstance(s, bool) or not isinstance(s, int | float) or not 0 <= s <= 1:
                raise ValueError(f"shadow must be a fraction within 0..1, got {s!r}")
            self.shadow = float(s)
        if self.champion is None:
            raise ValueError("a champion upstream is required")
        if self.challenger is None and (self.weight or self.shadow):
            raise ValueError("weight/shadow need a challenger upstream")


def sticky_bucket(request_id: str) -> float:
    """A stable position in [0, 100) for a request id."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100.0


def choose(state: RouterState, request_id: str | None, draw: float) -> str:
    """``"challenger"`` or ``"champion"`` for one request (``draw`` uniform in [0, 1))."""
    if state.challenger is None or state.weight <= 0:
        return "champion"
    if state.weight >= 100:
        return "challenger"
    position = sticky_bucket(request_id) if (state.sticky and request_id) else draw * 100.0
    return "challenger" if position < state.weight else "champion"


def body_request_id(body: bytes) -> str | None:
    """The V2 body's ``id`` (only parsed when the body mentions one)."""
    if b'"id"' not in body:
        return None
    try:
        value = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None


def predictions_of(payload: bytes) -> list[float] | None:
    """Flat predicted values from a V1 (``predictions``) or V2 (``outputs[0].data``) answer."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    values: Any = None
    if isinstance(body, dict) and "predictions" in body:
        values = body["predictions"]
    elif isinstance(body, dict) and body.get("outputs"):
        values = body["outputs"][0].get("data")
    if not isinstance(values, list):
        return None
    flat: list[float] = []
    for v in values:
        if isinstance(v, list):
            flat.extend(float(x) for x in v)
        elif isinstance(v, int | float):
            flat.append(float(v))
        else:
            return None
    return flat


@dataclass
class ShadowStats:
    """Running comparison of champion vs challenger predictions on mirrored requests."""

    requests: int = 0
    compared: int = 0
    challenger_errors: int = 0
    mismatched: int = 0
    sum_abs: float = 0.0
    sum_rel: float = 0.0
    max_abs: float = 0.0
    sum_champion: float = 0.0
    sum_challenger: float = 0.0
    rel_samples: list[float] = field(default_factory=list)

    def add(self, champion: list[float], challenger: list[float]) -> list[tuple[float, float]]:
        diffs = []
        for a, b in zip(champion, challenger, strict=True):
            d = abs(b - a)
            r = d / max(abs(a), 1e-9)
            self.compared += 1
            self.sum_abs += d
            self.sum_rel += r
            self.max_abs = max(self.max_abs, d)
            self.sum_champion += a
            self.sum_challenger += b
            if len(self.rel_samples) < 20_000:
                self.rel_samples.append(r)
            diffs.append((d, r))
        return diffs

    def report(self) -> dict[str, Any]:
        n = self.compared
        rel = sorted(self.rel_samples)
        p95 = rel[min(len(rel) - 1, math.ceil(0.95 * len(rel)) - 1)] if rel else None
        return {
            "mirrored_requests": self.requests,
            "compared_predictions": n,
            "challenger_errors": self.challenger_errors,
            "mismatched_answers": self.mismatched,
            "mean_abs_diff": self.sum_abs / n if n else None,
            "max_abs_diff": self.max_abs if n else None,
            "mean_rel_diff": self.sum_rel / n if n else None,
            "p95_rel_diff": p95,
            "champion_mean": self.sum_champion / n if n else None,
            "challenger_mean": self.sum_challenger / n if n else None,
        }


class Router:
    """State, metrics and the forwarding logic (one shared AsyncClient)."""

    def __init__(self, state: RouterState, timeout: float = 30.0) -> None:
        self.state = state
        self.timeout = timeout
        self.client: httpx.AsyncClient | None = None
        self.shadow_stats = ShadowStats()
        self._tasks: set[asyncio.Task] = set()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            ROUTER_REQUESTS,
            "Requests routed, by model version, role and HTTP code",
            ["model_version", "role", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            ROUTER_REQUEST_SECONDS,
            "Upstream round-trip seconds by model version",
            ["model_version", "role"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.weight_gauge = Gauge(ROUTER_WEIGHT_PERCENT, "Traffic percent by role", ["role"], registry=self.registry)
        self.shadow_requests = Counter(
            ROUTER_SHADOW_REQUESTS, "Mirrored requests by outcome", ["outcome"], registry=self.registry
        )
        self.shadow_abs = Histogram(
            ROUTER_SHADOW_ABS_DIFF,
            "|challenger − champion| per prediction (price units)",
            buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 25, 50, 100, 1000, 10000, 100000),
            registry=self.registry,
        )
        self.shadow_rel = Histogram(
            ROUTER_SHADOW_REL_DIFF,
            "|challenger − champion| / |champion| per prediction",
            buckets=DIFF_BUCKETS,
            registry=self.registry,
        )
        paired = ["model_version", "champion_version"]
        self.paired = {
            key: Counter(name, doc, paired, registry=self.registry)
            for key, name, doc in (
                ("pairs", ROUTER_SHADOW_PAIRS, "Predictions answered by both versions for the same row"),
                ("up", ROUTER_SHADOW_DIFF_UP, "Σ max(r, 0), r = (challenger − champion)/|champion| per pair"),
                ("down", ROUTER_SHADOW_DIFF_DOWN, "Σ max(−r, 0), r = (challenger − champion)/|champion| per pair"),
                ("squares", ROUTER_SHADOW_DIFF_SQUARES, "Σ r², r = (challenger − champion)/|champion| per pair"),
            )
        }
        self._set_gauges()

    def observe_pairs(self, champion: Upstream, challenger: Upstream, a: list[float], b: list[float]) -> None:
        """Count the signed relative differences of the two answers to the same rows (the paired gate's input)."""
        labels = (challenger.version, champion.version)
        up = down = squares = 0.0
        for x, y in zip(a, b, strict=True):
            r = (y - x) / max(abs(x), 1e-9)
            up, down, squares = up + max(r, 0.0), down + max(-r, 0.0), squares + r * r
        self.paired["pairs"].labels(*labels).inc(len(a))
        self.paired["up"].labels(*labels).inc(up)
        self.paired["down"].labels(*labels).inc(down)
        self.paired["squares"].labels(*labels).inc(squares)

    def _set_gauges(self) -> None:
        self.weight_gauge.labels("challenger").set(self.state.weight if self.state.challenger else 0)
        self.weight_gauge.labels("champion").set(100 - (self.state.weight if self.state.challenger else 0))

    def set_state(self, data: dict[str, Any]) -> dict[str, Any]:
        candidate = copy.deepcopy(self.state)
        candidate.update(data)
        self.state = candidate
        self._set_gauges()
        return self.state.to_dict()

    async def forward(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        assert self.client is not None
        state = self.state
        request_id = headers.get(REQUEST_ID_HEADER)
        if state.sticky and request_id is None and body:
            request_id = body_request_id(body)
        role = choose(state, request_id, random.random())
        upstream = state.challenger if role == "challenger" else state.champion
        assert upstream is not None
        url = upstream.url + path + (f"?{query}" if query else "")
        out_headers = {k: v for k, v in headers.items() if k.lower() not in _HOP_HEADERS}
        start = time.perf_counter()
        try:
            response = await self.client.request(method, url, content=body, headers=out_headers)
            status, content = response.status_code, response.content
            ctype = response.headers.get("content-type", "application/json")
        except httpx.HTTPError as exc:
            status, content, ctype = (
                502,
                json.dumps({"error": f"upstream {role} failed: {exc}"}).encode(),
                "application/json",
            )
        elapsed = time.perf_counter() - start
        self.requests.labels(upstream.version, role, str(status)).inc()
        self.latency.labels(upstream.version, role).observe(elapsed)
        if (
            role == "champion"
            and state.shadow > 0
            and state.challenger is not None
            and method == "POST"
            and status == 200
            and random.random() < state.shadow
        ):
            task = asyncio.create_task(
                self._mirror(state.challenger, url[len(upstream.url) :], out_headers, body, content, upstream)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return status, content, {"content-type": ctype, VERSION_HEADER: upstream.version, ROLE_HEADER: role}

    async def _mirror(
        self,
        challenger: Upstream,
        path: str,
        headers: dict[str, str],
        body: bytes,
        champion_answer: bytes,
        champion: Upstream | None = None,
    ) -> None:
        assert self.client is not None
        self.shadow_stats.requests += 1
        try:
            response = await self.client.post(challenger.url + path, content=body, headers=headers)
        except httpx.HTTPError:
            response = None
        if response is None or response.status_code != 200:
            self.shadow_stats.challenger_errors += 1
            self.shadow_requests.labels("challenger_error").inc()
            return
        a, b = predictions_of(champion_answer), predictions_of(response.content)
        if a is None or b is None or len(a) != len(b):
            self.shadow_stats.mismatched += 1
            self.shadow_requests.labels("mismatched").inc()
            return
        for d, r in self.shadow_stats.add(a, b):
            self.shadow_abs.observe(d)
            self.shadow_rel.observe(r)
        if champion is not None:
            self.observe_pairs(champion, challenger, a, b)
        self.shadow_requests.labels("compared").inc()


def _not_json(request: Request) -> JSONResponse | None:
    """415 unless the request says ``Content-Type: application/json``: a web page can send a cross-origin
    POST of a form or text/plain without asking first, but not of JSON (the browser's CORS preflight,
    which this server never grants), so a page cannot re-point or reset the router."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        return None
    return JSONResponse({"error": "content-type: must be application/json"}, status_code=415)


def create_app(state: RouterState, timeout: float = 30.0) -> FastAPI:
    router = Router(state, timeout)

    @asynccontextmanager
    async def lifespan(_app):  # noqa: ANN001, ANN202
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        router.client = httpx.AsyncClient(timeout=timeout, limits=limits)
        yield
        await router.client.aclose()

    app = FastAPI(title="housing rollout router", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.router = router

    @app.get("/router/state")
    async def get_state() -> dict:
        return router.state.to_dict()

    @app.post("/router/state")
    async def post_state(request: Request):  # noqa: ANN202
        refused = _not_json(request)
        if refused is not None:
            return refused
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            return router.set_state(data)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @app.get("/router/shadow")
    async def shadow() -> dict:
        return {"state": router.state.to_dict(), **router.shadow_stats.report()}

    @app.post("/router/shadow/reset")
    async def shadow_reset(request: Request):  # noqa: ANN202
        refused = _not_json(request)
        if refused is not None:
            return refused
        router.shadow_stats = ShadowStats()
        return {"reset": True}

    @app.get("/router/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(router.registry), media_type=CONTENT_TYPE_LATEST)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def proxy(path: str, request: Request) -> Response:
        body = await request.body()
        status, content, headers = await router.forward(
            request.method, "/" + path, request.url.query, dict(request.headers), body
        )
        return Response(content=content, status_code=status, headers=headers)

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m rollout.router", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--champion", required=True, help="champion predictor base URL")
    parser.add_argument("--champion-version", required=True)
    parser.add_argument("--challenger")
    parser.add_argument("--challenger-version")
    parser.add_argument("--weight", type=int, default=0)
    parser.add_argument("--sticky", action="store_true")
    parser.add_argument("--shadow", type=float, default=0.0)
    args = parser.parse_args(argv)
    state = RouterState()
    data: dict[str, Any] = {
        "champion": {"url": args.champion, "version": args.champion_version},
        "weight": args.weight,
        "sticky": args.sticky,
        "shadow": args.shadow,
    }
    if args.challenger:
        data["challenger"] = {"url": args.challenger, "version": args.challenger_version or "challenger"}
    try:
        state.update(data)
    except ValueError as exc:
        parser.error(str(exc))
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
