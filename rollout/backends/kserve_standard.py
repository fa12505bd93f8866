"""KServe Standard (RawDeployment) mode: canaries as ``spec.canary[]`` entries.

The kserve 0.21 SDK models this directly (``V1beta1InferenceServiceSpec.canary`` is a
``list[V1beta1CanarySpec]`` of ``{trafficPercent, predictor}``; the predictor's ``name`` drives
the Deployment name ``{isvc}-{name}-predictor`` and is required in a canary entry). The SDK's own
documentation of the field says how to promote: "set predictor.name to the canary name and
remove the canary entry". So:

- start: add a canary entry — a copy of the champion predictor (same runtime, resources,
  service account; no autoscaling fields, which the webhook refuses on a canary) pointing at the
  challenger's storage URI and pinned to its registered digest, named after the challenger, with
  the controller's own replica rule written out — and raise the stable minReplicas by as much, so
  the champion keeps its pods;
  then wait until ``status.canaryStatuses`` reports it Ready (:meth:`StandardBackend.wait_ready`);
- set_weight: replace ``/spec/canary/0/trafficPercent`` (and the replicas with it);
- promote: replace ``/spec/predictor`` with the canary merged over the stable predictor the way
  the controller merges it (its name included, so the already-running canary Deployment becomes
  the primary without a restart) and remove ``/spec/canary``;
- rollback: remove ``/spec/canary`` (the controller deletes its Deployment and Service).

What a v0.20.0 controller does with these was checked on a real node (tests/cluster/
test_node_rollout.py): the address of the InferenceService moves with ``predictor.name``, so the
chart gives users a Service that does not (``<release>-inference``).

v0.20 cannot weight routes: with ``route`` (the chart's ``gateway.enabled`` HTTPRoute/GRPCRoute) the
backend also moves that route's weights (:mod:`rollout.backends.gateway_route`) — the canary gets
its weight once Ready, every step writes the route before ``trafficPercent``, promote points the
route at the canary's Service first, rollback sets it to 100/0 first.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable

from rollout.backends.base import RolloutStatus, check_percent
from rollout.backends.gateway_route import GatewayRoutes, predictor_service
from rollout.backends.kserve_common import (
    KServeBackend,
    Op,
    bundle_digest,
    check_digest,
    status_common,
    storage_uri,
    with_bundle,
)
from rollout.errors import RolloutError

#: KServe's name for the model server container (``constants.InferenceServiceContainerName``).
KSERVE_CONTAINER = "kserve-container"
#: Predictor keys holding a container-like model spec. In the kserve v0.20.0 CRD the copy of the
#: PredictorSpec under ``spec.canary[].predictor`` keeps the generated ``required: [name]`` (and
#: ``modelFormat`` for ``model``) that KServe strips from ``spec.predictor``, so a canary copied
#: from a champion written as ``model: {modelFormat, storageUri}`` is rejected by the API server
#: ("spec.canary[0].predictor.model.name: Required value"). KServe defaults that name to
#: ``kserve-container`` anyway, so start() sets it explicitly.
MODEL_KEYS = (
    "model",
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
)


#: Fields the v0.20.0 webhook rejects on a canary ("canary uses fixed replicas") or that the
#: controller merges from the stable predictor anyway; the canary entry sets its own minReplicas.
CANARY_OMIT = (
    "name",
    "canaryTrafficPercent",
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "autoScaling",
    "workerSpec",
)


def canary_name_for(uri: str) -> str:
    """A DNS-1123 label naming the challenger's predictor, from its URI (…/housing/3 → ``v3``)."""
    tail = [p for p in re.split(r"[/@:]", uri.rstrip("/")) if p][-1] if uri.strip("/") else "canary"
    name = re.sub(r"[^a-z0-9-]+", "-", tail.lower()).strip("-") or "canary"
    if not name[0].isalpha():
        name = "v" + name
    return name[:40].rstrip("-")


def canary_replicas(stable_replicas: int, percent: int) -> int:
    """Pods the canary gets: the controller's own rule, ceil(stable × percent / 100), at least one."""
    return max(1, math.ceil(stable_replicas * percent / 100))


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def stable_replicas(spec: dict) -> int:
    """The stable predictor's own minReplicas, without what a canary in progress added to it."""
    predictor = spec.get("predictor") or {}
    current = _int(predictor.get("minReplicas"), 1)
    canaries = spec.get("canary") or []
    added = sum(_int((c.get("predictor") or {}).get("minReplicas"), 0) for c in canaries)
    return max(1, current - added)


def capacity_ops(predictor: dict, stable: int, canary: int) -> list[Op]:
    """Keep the stable Deployment at ``stable`` pods while a canary of ``canary`` pods runs.

    The v0.20.0 controller scales the stable Deployment to minReplicas − (canary pods), lowering
    the champion's capacity the moment a canary starts (kserve issue 5983): so the stable
    minReplicas is raised by the canary's pods (and maxReplicas with it, when it would fall below).
    """
    want = stable + canary
    ops: list[Op] = [{"op": "add", "path": "/spec/predictor/minReplicas", "value": want}]
    top = predictor.get("maxReplicas")
    if isinstance(top, int) and top < want:
        ops.append({"op": "replace", "path": "/spec/predictor/maxReplicas", "value": want})
    return ops


def start_ops(
    obj: dict, challenger_uri: str, percent: int, canary_name: str | None = None, digest: str | None = None
) -> list[Op]:
    """Ops adding (or re-pointing) the canary entry for ``challenger_uri`` at ``percent`` %, its
    predictor pinned to ``digest`` (the registered sha256 of its bundle.json; None: unpinned).

    Only spec fields change (never the InferenceService's annotations: KServe copies them onto
    the pod template, so writing one would restart every predictor pod).
    """
    check_percent(percent)
    spec = obj.get("spec") or {}
    predictor = spec.get("predictor") or {}
    name = canary_name or canary_name_for(challenger_uri)
    if name == predictor.get("name"):
        raise RolloutError(f"the canary name {name!r} is the champion's predictor name; pass another --canary-name")
    stable = stable_replicas(spec)
    pods = canary_replicas(stable, percent)
    base = {k: copy.deepcopy(v) for k, v in predictor.items() if k not in CANARY_OMIT}
    canary_predictor = with_bundle(base, challenger_uri, check_digest(digest))
    canary_predictor["name"] = name
    canary_predictor["minReplicas"] = pods
    for key in MODEL_KEYS:  # the CRD requires the container name here (see MODEL_KEYS)
        if isinstance(canary_predictor.get(key), dict) and not canary_predictor[key].get("name"):
            canary_predictor[key]["name"] = KSERVE_CONTAINER
    entry = {"trafficPercent": percent, "predictor": canary_predictor}
    canaries = spec.get("canary") or []
    ops: list[Op] = []
    if not canaries:
        ops.append({"op": "add", "path": "/spec/canary", "value": [entry]})
    else:
        names = [(c.get("predictor") or {}).get("name") for c in canaries]
        if len(canaries) > 1 or names[0] != name:
            raise RolloutError(
                f"a canary is already in progress ({', '.join(map(str, names))}); promote or roll it back first"
            )
        ops.append({"op": "replace", "path": "/spec/canary/0", "value": entry})
    return ops + capacity_ops(predictor, stable, pods)


def _canary(obj: dict) -> dict:
    canaries = (obj.get("spec") or {}).get("canary") or []
    if not canaries:
        raise RolloutError("no canary in progress (spec.canary is empty)")
    return canaries[0]


def weight_ops(obj: dict, percent: int) -> list[Op]:
    """Ops moving the canary to ``percent`` % (its pods follow the controller's rule)."""
    check_percent(percent)
    _canary(obj)
    spec = obj.get("spec") or {}
    stable = stable_replicas(spec)
    pods = canary_replicas(stable, percent)
    return [
        {"op": "replace", "path": "/spec/canary/0/trafficPercent", "value": percent},
        {"op": "add", "path": "/spec/canary/0/predictor/minReplicas", "value": pods},
        *capacity_ops(spec.get("predictor") or {}, stable, pods),
    ]


def merged(stable: dict, canary: dict) -> dict:
    """``canary`` over ``stable`` the way the controller builds the canary (mergo, override)."""
    out = copy.deepcopy(stable)
    for key, value in canary.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        elif value not in (None, "", [], {}):
            out[key] = copy.deepcopy(value)
    return out


def promote_ops(obj: dict) -> list[Op]:
    """Ops making the canary the stable predictor: the same pod spec, so its pods stay (no restart)."""
    canary = _canary(obj)
    spec = obj.get("spec") or {}
    stable = stable_replicas(spec)
    predictor = merged(spec.get("predictor") or {}, canary["predictor"])
    predictor["minReplicas"] = stable
    return [
        {"op": "replace", "path": "/spec/predictor", "value": predictor},
        {"op": "remove", "path": "/spec/canary"},
    ]


def rollback_ops(obj: dict, reason: str) -> list[Op]:
    """Ops removing the canary (the controller deletes its Deployment and Service).

    The reason goes to the event log and the registry, not onto the object (see start_ops).
    """
    spec = obj.get("spec") or {}
    if spec.get("canary") is None:
        return []
    return [
        {"op": "remove", "path": "/spec/canary"},
        {"op": "add", "path": "/spec/predictor/minReplicas", "value": stable_replicas(spec)},
    ]


def parse_status(obj: dict) -> RolloutStatus:
    result = status_common(obj, "standard")
    spec = obj.get("spec") or {}
    result.champion = storage_uri(spec.get("predictor") or {})
    result.detail["championName"] = (spec.get("predictor") or {}).get("name")
    result.detail["championDigest"] = bundle_digest(spec.get("predictor") or {})
    canaries = spec.get("canary") or []
    if canaries:
        result.challenger = storage_uri(canaries[0].get("predictor") or {})
        result.detail["canaryDigest"] = bundle_digest(canaries[0].get("predictor") or {})
        result.detail["canaryName"] = (canaries[0].get("predictor") or {}).get("name")
        percent = int(canaries[0].get("trafficPercent") or 0)
        observed = [s for s in result.detail["canaryStatuses"] if s.get("name") == result.detail["canaryName"]]
        if observed:
            percent = int(observed[0].get("trafficPercent") or 0)
            result.detail["canaryReady"] = bool(observed[0].get("ready"))
        result.challenger_percent, result.champion_percent = percent, 100 - percent
    return result


#: What a step writes to the route: (champion's Service, canary's Service or None, canary percent).
RouteStep = tuple[str, str | None, int]


class StandardBackend(KServeBackend):
    """``spec.canary[]`` on a RawDeployment/Standard-mode InferenceService; with ``route``, the
    weights of that Gateway API route too (:mod:`rollout.backends.gateway_route`)."""

    name = "standard"

    def __init__(self, *args, canary_name: str | None = None, route: str | None = None, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.canary_name = canary_name
        self.route = route
        self._routes: GatewayRoutes | None = None

    @property
    def routes(self) -> GatewayRoutes | None:
        """The route this rollout moves (None: KServe's trafficPercent only, no gateway)."""
        if self.route is None or self.dry_run:
            return None
        if self._routes is None:
            self._routes = GatewayRoutes(self.api, self.namespace, self.route)
        return self._routes

    def services(self, obj: dict | None = None) -> tuple[str, str | None]:
        """KServe's Services of the champion and of the canary (None without one)."""
        spec = (obj if obj is not None else self.read()).get("spec") or {}
        champion = predictor_service(self.isvc, (spec.get("predictor") or {}).get("name"))
        canaries = spec.get("canary") or []
        canary = predictor_service(self.isvc, (canaries[0].get("predictor") or {}).get("name")) if canaries else None
        return champion, canary

    def _with_routes(
        self, routes_first: Callable[[dict], tuple[str, str | None, int]], build: Callable
    ) -> RolloutStatus:
        """Write the route(s) for the step, then the InferenceService; a failed InferenceService write
        puts the route(s) back, so a failed step leaves the previous weights."""
        current = self.read()
        champion, canary, percent = routes_first(current)
        written = self.routes.set(champion, canary, percent, current=self.services(current)[0])  # type: ignore[union-attr]
        try:
            return parse_status(self.patch(build))
        except Exception:
            self.routes.restore(written)  # type: ignore[union-attr]
            raise

    def start(self, challenger_uri: str, percent: int, *, digest: str | None = None) -> RolloutStatus:
        """Deploy the canary pinned to ``digest`` (the route gets its weight once it is Ready:
        :meth:`wait_ready`)."""
        check_percent(percent)
        check_digest(digest)
        if self.routes is not None:
            self.routes.check(self.services()[0])  # refused before anything is deployed
        return parse_status(self.patch(lambda obj: start_ops(obj, challenger_uri, percent, self.canary_name, digest)))

    def set_weight(self, percent: int) -> RolloutStatus:
        check_percent(percent)
        if self.routes is None:
            return parse_status(self.patch(lambda obj: weight_ops(obj, percent)))

        def routes(obj: dict) -> RouteStep:
            champion, canary = self.services(obj)
            if canary is None:
                raise RolloutError("no canary in progress (spec.canary is empty)")
            return champion, canary, percent

        return self._with_routes(routes, lambda obj: weight_ops(obj, percent))

    def promote(self) -> RolloutStatus:
        """The route to the canary's Service first (its pods become the champion's, so the Service
        stays), then the InferenceService: no request finds a gap."""
        if self.routes is None:
            return parse_status(self.patch(promote_ops))

        def routes(obj: dict) -> RouteStep:
            canary = self.services(obj)[1]
            if canary is None:
                raise RolloutError("no canary in progress (spec.canary is empty)")
            return canary, None, 0

        return self._with_routes(routes, promote_ops)

    def rollback(self, reason: str) -> RolloutStatus:
        """The route back to 100/0 first, then the canary removed (its pods get no new requests)."""
        if self.routes is None:
            return parse_status(self.patch(lambda obj: rollback_ops(obj, reason)))
        return self._with_routes(lambda obj: (self.services(obj)[0], None, 0), lambda obj: rollback_ops(obj, reason))

    def status(self) -> RolloutStatus:
        result = parse_status(self.read())
        if self.routes is not None:
            result.detail["gateway"] = self.routes.weights()
        return result

    def gateway_services(self, challenger_uri: str | None) -> dict[str, str] | None:
        """``{"champion": Service, "challenger": Service}`` behind the route (None without a route):
        the gateway's per-backend series are counted against the version behind each."""
        if self.route is None:
            return None
        champion, canary = self.services()
        if challenger_uri:
            canary = predictor_service(self.isvc, self.canary_name or canary_name_for(challenger_uri))
        return {"champion": champion, "challenger": canary or ""}

    def wait_ready(self, timeout: float, interval: float = 2.0) -> RolloutStatus:
        """Block until the canary reports Ready in ``status.canaryStatuses``; RolloutError after ``timeout`` s."""
        if self.dry_run:
            return self.status()
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.detail.get("canaryReady"):
                if self.routes is not None:  # now the canary's Service has endpoints: give it its weight
                    obj = self.read()
                    champion, canary = self.services(obj)
                    percent = int(_canary(obj).get("trafficPercent") or 0)  # what was asked (status may lag)
                    self.routes.set(champion, canary, percent)
                    status.detail["gateway"] = self.routes.weights()
                return status
            if time.monotonic() >= deadline:
                conditions = {c.get("type"): c for c in status.detail.get("conditions", [])}
                cond = conditions.get("CanaryPredictorReady") or {}
                why = cond.get("reason") or "no canaryStatuses yet"
                raise RolloutError(
                    f"canary {status.detail.get('canaryName')!r} not Ready after {timeout:.0f} s ({why}); "
                    "its pods never passed their readiness probe"
                )
            time.sleep(interval)
