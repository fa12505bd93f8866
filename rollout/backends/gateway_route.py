"""The Gateway API route a Standard-mode rollout owns: weights of an HTTPRoute (and GRPCRoute).

KServe v0.20 cannot weight routes, so the chart renders an HTTPRoute (``gateway.enabled``) whose
first rule sends every request to the champion's predictor Service, and the rollout moves its
``backendRefs`` weights: ``100 − p`` to the champion's Service, ``p`` to the canary's (the
Gateway implementation — traefik on the node tier — does the weighted round robin). While a
canary runs, a second rule sends requests carrying ``x-housing-variant: challenger`` to the
canary at any weight (a header match: testers reach the challenger on purpose).

Every write is a JSON patch guarded by a ``resourceVersion`` test (a concurrent writer makes it
fail: nothing half-written), and records what it wrote in an annotation; a route whose weighted
rule no longer says what the rollout last wrote was changed by another owner, and is refused
with its name rather than overwritten. A route whose Gateway is missing is refused the same way.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from rollout.backends import field_owners
from rollout.backends.base import check_percent
from rollout.errors import RolloutError

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
#: kind → plural of the routes a rollout moves (the GRPCRoute is optional).
KINDS = {"HTTPRoute": "httproutes", "GRPCRoute": "grpcroutes"}
GATEWAYS = "gateways"
#: What the rollout last wrote to the weighted rule, as JSON ``[[service, weight], …]``.
ANNOTATION_BACKENDS = "rollout.housing.dev/backends"
#: The header that sends a request to the canary whatever its weight.
VARIANT_HEADER = "x-housing-variant"
VARIANT_VALUE = "challenger"
_ANNOTATION_KEY = ANNOTATION_BACKENDS.replace("~", "~0").replace("/", "~1")  # as a JSON-pointer token

Op = dict[str, Any]
Backends = list[tuple[str, int]]


def predictor_service(isvc: str, predictor_name: str | None) -> str:
    """KServe v0.20's Service of a predictor (``constants.PredictorServiceName``)."""
    return f"{isvc}-{predictor_name}-predictor" if predictor_name else f"{isvc}-predictor"


def _is_variant_rule(rule: dict) -> bool:
    for match in rule.get("matches") or []:
        for header in match.get("headers") or []:
            if str(header.get("name", "")).lower() == VARIANT_HEADER:
                return True
    return False


def weighted_rule_index(rules: list[dict], name: str = "the route") -> int:
    """The index of the rule the weights live in: the first one that is not the variant rule."""
    for i, rule in enumerate(rules):
        if not _is_variant_rule(rule):
            return i
    raise RolloutError(f"{name} has no rule to weight (spec.rules is empty or holds only the variant header rule)")


def _name(route: dict) -> str:
    meta = route.get("metadata") or {}
    return f"{route.get('kind', 'route')} {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def backends_of(route: dict) -> Backends:
    """``[(service, weight), …]`` of the weighted rule (a missing weight is Gateway API's default, 1)."""
    return backends_of_rules((route.get("spec") or {}).get("rules") or [], _name(route))


def backends_of_rules(rules: list[dict], name: str = "the route") -> Backends:
    rule = rules[weighted_rule_index(rules, name)]
    return [(str(ref.get("name")), int(ref.get("weight", 1))) for ref in rule.get("backendRefs") or []]


def recorded_backends(route: dict) -> Backends | None:
    """What the rollout last wrote to the route (None: it never wrote it)."""
    raw = ((route.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_BACKENDS)
    if raw is None:
        return None
    try:
        return [(str(s), int(w)) for s, w in json.loads(raw)]
    except (TypeError, ValueError):
        return []


def check_owner(route: dict, champion: str) -> None:
    """Refuse a route another owner changed since the rollout last wrote it (or, never written by
    the rollout, one whose weighted rule does not route to the champion's Service)."""
    live = backends_of(route)
    recorded = recorded_backends(route)
    if recorded is None:
        if champion not in [s for s, w in live if w > 0]:
            raise RolloutError(
                f"{_name(route)} does not route to the champion's Service {champion} (its backends: {live}); "
                "point its first rule at it (the chart's gateway.enabled does) before a rollout"
            )
        return
    if live != recorded:
        raise RolloutError(
            f"{_name(route)} was changed by another owner: its backends are {live}, the rollout last wrote "
            f"{recorded}; check who changed it, then set it back or remove the {ANNOTATION_BACKENDS} annotation"
        )


def desired_backends(champion: str, canary: str | None, percent: int) -> Backends:
    """The weighted rule's backends: the champion at ``100 − percent``, the canary (if any) at ``percent``."""
    check_percent(percent)
    if canary is None:
        return [(champion, 100)]
    return [(champion, 100 - percent), (canary, percent)]


def route_ops(route: dict, backends: Backends, canary: str | None) -> list[Op]:
    """Ops writing ``backends`` into the weighted rule and the variant rule for ``canary`` (removed
    when None), guarded by the route's resourceVersion and recorded in its annotation."""
    spec_rules = copy.deepcopy((route.get("spec") or {}).get("rules") or [])
    index = weighted_rule_index(spec_rules, _name(route))
    weighted = spec_rules[index]
    refs = weighted.get("backendRefs") or []
    port = next((ref.get("port") for ref in refs if ref.get("port") is not None), None)
    if port is None:
        raise RolloutError(f"{_name(route)}: its weighted rule's backendRefs name no port")
    weighted["backendRefs"] = [{"name": s, "port": port, "weight": w} for s, w in backends]
    rules = [r for i, r in enumerate(spec_rules) if i == index or not _is_variant_rule(r)]
    if canary is not None:  # the weighted rule's matches, each with the header (so it is the more specific)
        header = {"name": VARIANT_HEADER, "value": VARIANT_VALUE}
        matches = [copy.deepcopy(m) for m in weighted.get("matches") or [{}]]
        for match in matches:
            match["headers"] = [*(match.get("headers") or []), header]
        rules.append({"matches": matches, "backendRefs": [{"name": canary, "port": port}]})
    meta = route.get("metadata") or {}
    record = json.dumps([[s, w] for s, w in backends])
    ops: list[Op] = []
    if meta.get("resourceVersion"):
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]})
    ops.append({"op": "replace", "path": "/spec/rules", "value": rules})
    if meta.get("annotations") is None:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION_BACKENDS: record}})
    else:
        ops.append({"op": "add", "path": f"/metadata/annotations/{_ANNOTATION_KEY}", "value": record})
    return ops


@dataclass
class Written:
    """One route write, kept so that a later failure of the same step can restore the route."""

    kind: str
    name: str
    rules: list[dict]
    recorded: Backends | None


class GatewayRoutes:
    """The HTTPRoute (required) and GRPCRoute (if it exists) named ``route`` in ``namespace``."""

    def __init__(self, api: Any, namespace: str, route: str) -> None:
        self.api = api
        self.namespace = namespace
        self.route = route

    def _get(self, plural: str, name: str) -> dict | None:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except Exception as exc:  # ApiException and connection errors alike
            if getattr(exc, "status", None) == 404:
                return None
            raise RolloutError(f"cannot read {plural} {self.namespace}/{name}: {exc}") from exc

    def read(self) -> dict[str, dict]:
        """``{kind: route}``: the HTTPRoute (a clear error when missing) and the GRPCRoute when there is one."""
        found = {}
        for kind, plural in KINDS.items():
            obj = self._get(plural, self.route)
            if obj is not None:
                found[kind] = obj
        if "HTTPRoute" not in found:
            raise RolloutError(
                f"HTTPRoute {self.namespace}/{self.route} not found; install the chart with gateway.enabled=true "
                "or pass the route's name with --route"
            )
        return found

    def check_gateways(self, route: dict) -> None:
        """Every Gateway the route attaches to exists (else traffic cannot reach it)."""
        for parent in (route.get("spec") or {}).get("parentRefs") or []:
            if parent.get("kind", "Gateway") != "Gateway":
                continue
            namespace = parent.get("namespace") or self.namespace
            try:
                self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, GATEWAYS, parent["name"])
            except Exception as exc:
                if getattr(exc, "status", None) == 403:
                    continue  # a Gateway in another namespace the rollout may not read: not checked
                if getattr(exc, "status", None) == 404:
                    raise RolloutError(
                        f"{_name(route)} attaches to Gateway {namespace}/{parent['name']}, which does not exist"
                    ) from exc
                raise RolloutError(f"cannot read Gateway {namespace}/{parent['name']}: {exc}") from exc

    def check(self, champion: str) -> dict[str, dict]:
        """Read the routes and refuse them (missing, Gateway missing, changed by another owner) before any write."""
        routes = self.read()
        self.check_gateways(routes["HTTPRoute"])
        for route in routes.values():
            check_owner(route, champion)
        return routes

    def set(self, champion: str, canary: str | None, percent: int, *, current: str | None = None) -> list[Written]:
        """Point every route at ``champion`` (100 − percent) and ``canary`` (percent); all or nothing.

        ``current`` is the champion's Service before this step (a promotion changes it). Returns
        what was there before, for :meth:`restore` if a later write of the same step fails.
        """
        backends = desired_backends(champion, canary, percent)
        routes = self.check(current or champion)
        before: list[Written] = []
        try:
            for kind, route in routes.items():
                self._patch(KINDS[kind], route_ops(route, backends, canary), route)
                before.append(Written(kind, self.route, route["spec"]["rules"], recorded_backends(route)))
        except RolloutError:
            self.restore(before)
            raise
        return before

    def _send(self, plural: str, name: str, ops: list[Op]) -> dict:
        """One JSON patch, recorded under the runner's own field manager."""
        return self.api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            plural,
            name,
            ops,
            field_manager=field_owners.FIELD_MANAGER,
            _content_type="application/json-patch+json",
        )

    def _patch(self, plural: str, ops: list[Op], route: dict) -> dict:
        try:
            written = self._send(plural, self.route, ops)
        except Exception as exc:
            if getattr(exc, "status", None) in (409, 422):
                raise RolloutError(
                    f"{_name(route)} changed while the rollout wrote it (another owner?); nothing was changed: {exc}"
                ) from exc
            raise RolloutError(f"patch of {_name(route)} failed: {exc}") from exc
        # the chart renders the live rules (lookup): give helm's server-side apply its rules back,
        # as for the InferenceService (rollout.backends.field_owners)
        return field_owners.hand_back(
            route,
            written,
            lambda back: self._send(plural, self.route, back),
            lambda: self._get(plural, self.route) or {},
            lambda exc: getattr(exc, "status", None) in (409, 422),
            _name(route),
        )

    def restore(self, written: list[Written]) -> None:
        """Put back the rules of routes already written by a step that then failed (best effort)."""
        for item in reversed(written):
            record = json.dumps([[s, w] for s, w in item.recorded or backends_of_rules(item.rules)])
            plural = KINDS[item.kind]
            try:
                before = self._get(plural, item.name) or {}
                written = self._send(
                    plural,
                    item.name,
                    [
                        {"op": "replace", "path": "/spec/rules", "value": item.rules},
                        {"op": "add", "path": f"/metadata/annotations/{_ANNOTATION_KEY}", "value": record},
                    ],
                )
                field_owners.hand_back(
                    before,
                    written,
                    lambda back, plural=plural, name=item.name: self._send(plural, name, back),
                    lambda plural=plural, name=item.name: self._get(plural, name) or {},
                    lambda exc: getattr(exc, "status", None) in (409, 422),
                    f"{item.kind} {self.namespace}/{item.name}",
                )
            except Exception:  # noqa: BLE001, S110 - the error being raised says what failed first
                pass

    def weights(self) -> dict[str, Any]:
        """What the HTTPRoute's weighted rule says now (for ``rollout status``)."""
        route = self._get(KINDS["HTTPRoute"], self.route)
        if route is None:
            return {"route": f"HTTPRoute {self.namespace}/{self.route} not found"}
        return {"route": f"HTTPRoute {self.namespace}/{self.route}", "backends": backends_of(route)}
