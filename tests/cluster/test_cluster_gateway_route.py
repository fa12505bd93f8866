"""The Standard backend moving the chart's Gateway API routes, against a real kube-apiserver + etcd,
and what a real traefik (its Kubernetes Gateway provider, watching that API server) makes of them.

The Gateway API standard-channel CRDs (the ones the node tier installs) are created next to
KServe's; the chart renders the InferenceService, Gateway(Class), HTTPRoute, GRPCRoute and the
rollout Role, and every step runs as the chart's rollout ServiceAccount (impersonated), so the
Role is checked too. No controller runs: a canary is marked Ready by writing its status as the
KServe controller would. What is checked is what the API server stores (the CRDs' schemas and CEL
rules included): the weights of each step in both routes, the header rule, promotion and
rollback, and the refusals — a weight outside 0..100, a missing Gateway or route, a route another
owner changed — each leaving the route as it was. Last, traefik v3.6 (scripts/tools/traefik.sh)
watches the same API server and its own API shows the weighted round robin it applies after each
step (backend Services with EndpointSlices at documentation addresses: no request is sent; the
node tier sends them, tests/cluster/test_node_gateway.py).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollout.backends import kserve_common as common
from rollout.backends import kserve_standard as st
from rollout.backends.gateway_route import ANNOTATION_BACKENDS, GROUP, VERSION, backends_of
from rollout.errors import RolloutError
from testkit.servers import ServerProcess

from . import gateway_api
from .conftest import NAMESPACE, TOOLS_DIR, _missing, by_kind
from .node import poll

pytestmark = pytest.mark.cluster

kclient = pytest.importorskip("kubernetes.client")
ApiException = kclient.ApiException

CHALLENGER = "s3://models/housing/2"
PLURALS = {
    "HTTPRoute": "httproutes",
    "GRPCRoute": "grpcroutes",
    "Gateway": "gateways",
    "GatewayClass": "gatewayclasses",
}


@pytest.fixture(scope="module")
def admin(apiserver) -> Any:
    """CustomObjectsApi as system:masters, with the namespace and the Gateway API CRDs created."""
    return gateway_api.install_crds(apiserver, NAMESPACE)


def install(apiserver, admin, render, *sets: str) -> str:
    """Create what the chart renders with gateway.enabled (a unique release name); its name."""
    name = f"gw-{uuid.uuid4().hex[:6]}"
    objects = render(["gateway.enabled=true", f"fullnameOverride={name}", f"gateway.className={name}", *sets])
    api_client = apiserver.api_client()
    core, rbac = kclient.CoreV1Api(api_client), kclient.RbacAuthorizationV1Api(api_client)
    for obj in objects:
        kind = obj["kind"]
        if kind == "InferenceService":
            admin.create_namespaced_custom_object(common.GROUP, common.VERSION, NAMESPACE, common.PLURAL, obj)
        elif kind == "GatewayClass":
            admin.create_cluster_custom_object(GROUP, VERSION, PLURALS[kind], obj)
        elif kind in PLURALS:
            admin.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURALS[kind], obj)
        elif kind == "ServiceAccount" and obj["metadata"]["name"] == f"{name}-rollout":
            core.create_namespaced_service_account(NAMESPACE, obj)
        elif kind in ("Role", "RoleBinding") and obj["metadata"]["name"] == f"{name}-rollout":
            create = rbac.create_namespaced_role if kind == "Role" else rbac.create_namespaced_role_binding
            create(NAMESPACE, obj)
    return name


def as_rollout_account(apiserver, name: str) -> Any:
    """CustomObjectsApi as the chart's rollout ServiceAccount (what `housing rollout` runs as in-cluster)."""
    client = apiserver.api_client()
    client.set_default_header("Impersonate-User", f"system:serviceaccount:{NAMESPACE}:{name}-rollout")
    return kclient.CustomObjectsApi(client)


def route(admin, name: str, kind: str = "HTTPRoute") -> dict:
    return admin.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURALS[kind], name)


def isvc(admin, name: str) -> dict:
    return admin.get_namespaced_custom_object(common.GROUP, common.VERSION, NAMESPACE, common.PLURAL, name)


def mark_canary_ready(admin, name: str) -> None:
    """Write status.canaryStatuses as the KServe v0.20 controller does once the canary's pods are available."""
    spec = isvc(admin, name)["spec"]
    canary = spec["canary"][0]
    status = {
        "status": {
            "canaryStatuses": [
                {"name": canary["predictor"]["name"], "ready": True, "trafficPercent": canary["trafficPercent"]}
            ]
        }
    }
    admin.patch_namespaced_custom_object_status(
        common.GROUP,
        common.VERSION,
        NAMESPACE,
        common.PLURAL,
        name,
        status,
        _content_type="application/merge-patch+json",
    )


def variant_rules(obj: dict) -> list[dict]:
    return [r for r in obj["spec"]["rules"] if any(m.get("headers") for m in r.get("matches") or [])]


def test_every_step_moves_both_routes_and_promotion_hands_them_to_the_canary(apiserver, admin, render):
    name = install(apiserver, admin, render)
    champion, canary = f"{name}-predictor", f"{name}-v2-predictor"
    be = st.StandardBackend(name, NAMESPACE, api=as_rollout_account(apiserver, name), route=name)
    assert backends_of(route(admin, name)) == [(champion, 100)]

    be.start(CHALLENGER, 10)
    # not Ready yet: its Service has no endpoints, the route does not send it anything
    assert backends_of(route(admin, name)) == [(champion, 100)] and not variant_rules(route(admin, name))
    mark_canary_ready(admin, name)
    status = be.wait_ready(10, interval=0.2)
    assert status.detail["gateway"]["backends"] == [(champion, 90), (canary, 10)]
    for kind in ("HTTPRoute", "GRPCRoute"):
        stored = route(admin, name, kind)
        assert backends_of(stored) == [(champion, 90), (canary, 10)], kind
        (variant,) = variant_rules(stored)
        assert [ref["name"] for ref in variant["backendRefs"]] == [canary]
    assert route(admin, name, "GRPCRoute")["spec"]["rules"][0]["backendRefs"][0]["port"] == 8081

    for percent in (25, 50):
        be.set_weight(percent)
        assert backends_of(route(admin, name)) == [(champion, 100 - percent), (canary, percent)]
        assert backends_of(route(admin, name, "GRPCRoute")) == [(champion, 100 - percent), (canary, percent)]
        assert isvc(admin, name)["spec"]["canary"][0]["trafficPercent"] == percent  # KServe's bookkeeping

    be.promote()
    for kind in ("HTTPRoute", "GRPCRoute"):
        stored = route(admin, name, kind)
        assert backends_of(stored) == [(canary, 100)] and not variant_rules(stored), kind
    spec = isvc(admin, name)["spec"]
    assert spec["predictor"]["name"] == "v2" and "canary" not in spec  # KServe's Service is now the canary's


def test_rollback_sets_the_route_back_to_the_champion(apiserver, admin, render):
    name = install(apiserver, admin, render, "gateway.grpc=false")
    champion = f"{name}-predictor"
    be = st.StandardBackend(name, NAMESPACE, api=as_rollout_account(apiserver, name), route=name)
    be.start(CHALLENGER, 25)
    mark_canary_ready(admin, name)
    be.wait_ready(10, interval=0.2)
    assert backends_of(route(admin, name))[0] == (champion, 75)
    be.rollback("error gate")
    stored = route(admin, name)
    assert backends_of(stored) == [(champion, 100)] and not variant_rules(stored)
    assert "canary" not in isvc(admin, name)["spec"]


def test_a_weight_outside_0_100_changes_nothing(apiserver, admin, render):
    name = install(apiserver, admin, render, "gateway.grpc=false")
    be = st.StandardBackend(name, NAMESPACE, api=admin, route=name)
    be.start(CHALLENGER, 10)
    mark_canary_ready(admin, name)
    be.wait_ready(10, interval=0.2)
    before = route(admin, name)
    for bad in (101, -1):
        with pytest.raises(ValueError, match="0..100"):
            be.set_weight(bad)
    assert route(admin, name)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert isvc(admin, name)["spec"]["canary"][0]["trafficPercent"] == 10


def test_a_missing_gateway_or_route_is_refused_before_anything_is_deployed(apiserver, admin, render):
    name = install(
        apiserver, admin, render, "gateway.create=false", "gateway.gatewayName=nowhere", "gateway.grpc=false"
    )
    be = st.StandardBackend(name, NAMESPACE, api=admin, route=name)
    with pytest.raises(RolloutError, match=f"Gateway {NAMESPACE}/nowhere, which does not exist"):
        be.start(CHALLENGER, 10)
    assert "canary" not in isvc(admin, name)["spec"]
    be = st.StandardBackend(name, NAMESPACE, api=admin, route="no-such-route")
    with pytest.raises(RolloutError, match=f"HTTPRoute {NAMESPACE}/no-such-route not found"):
        be.start(CHALLENGER, 10)
    assert "canary" not in isvc(admin, name)["spec"]


def test_a_route_changed_by_another_owner_is_refused_by_name_and_left_alone(apiserver, admin, render):
    name = install(apiserver, admin, render, "gateway.grpc=false")
    champion, canary = f"{name}-predictor", f"{name}-v2-predictor"
    be = st.StandardBackend(name, NAMESPACE, api=admin, route=name)
    be.start(CHALLENGER, 10)
    mark_canary_ready(admin, name)
    be.wait_ready(10, interval=0.2)
    other = route(admin, name)  # someone (kubectl edit, another controller) sets their own weights
    other["spec"]["rules"][0]["backendRefs"][0]["weight"] = 50
    other["spec"]["rules"][0]["backendRefs"][1]["weight"] = 50
    admin.replace_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "httproutes", name, other)
    with pytest.raises(RolloutError, match=f"HTTPRoute {NAMESPACE}/{name} was changed by another owner"):
        be.set_weight(25)
    assert backends_of(route(admin, name)) == [(champion, 50), (canary, 50)]  # theirs, not overwritten
    assert isvc(admin, name)["spec"]["canary"][0]["trafficPercent"] == 10  # nothing half-done


class FailingIsvcWrites:
    """The API, but every InferenceService patch is refused (the step's second write fails)."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.api, attr)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if plural == common.PLURAL:
            raise ApiException(status=500, reason="injected: the InferenceService write failed")
        return self.api.patch_namespaced_custom_object(group, version, namespace, plural, *args, **kwargs)


def test_a_step_whose_inferenceservice_write_fails_leaves_the_previous_weights(apiserver, admin, render):
    name = install(apiserver, admin, render)
    champion, canary = f"{name}-predictor", f"{name}-v2-predictor"
    be = st.StandardBackend(name, NAMESPACE, api=admin, route=name)
    be.start(CHALLENGER, 10)
    mark_canary_ready(admin, name)
    be.wait_ready(10, interval=0.2)
    failing = st.StandardBackend(name, NAMESPACE, api=FailingIsvcWrites(admin), route=name)
    with pytest.raises(RolloutError, match="injected"):
        failing.set_weight(50)
    for kind in ("HTTPRoute", "GRPCRoute"):
        assert backends_of(route(admin, name, kind)) == [(champion, 90), (canary, 10)], kind
    # and the route is still the rollout's: the next step goes through
    be.set_weight(50)
    assert backends_of(route(admin, name)) == [(champion, 50), (canary, 50)]
    assert ANNOTATION_BACKENDS in route(admin, name)["metadata"]["annotations"]


def test_the_chart_renders_objects_this_api_server_accepts(apiserver, admin, render):
    """The canary value set (weights, header rule, gRPC method match) passes the CRDs' CEL rules too."""
    name = install(
        apiserver,
        admin,
        render,
        "canary.enabled=true",
        "canary.storageUri=s3://models/housing/2",
        "canary.trafficPercent=25",
    )
    objects = render(
        [
            "gateway.enabled=true",
            f"fullnameOverride={name}",
            f"gateway.className={name}",
            "canary.enabled=true",
            "canary.storageUri=s3://models/housing/2",
            "canary.trafficPercent=25",
        ]
    )
    for rendered in by_kind(objects, "HTTPRoute") + by_kind(objects, "GRPCRoute"):
        stored = route(admin, name, rendered["kind"])
        assert stored["spec"]["rules"] == rendered["spec"]["rules"] or backends_of(stored) == backends_of(rendered)


# -- what traefik applies ------------------------------------------------------------------------------
class Traefik(ServerProcess):
    """traefik with its Kubernetes Gateway provider against the test API server; its API on loopback."""

    name = "traefik"

    def __init__(self, workdir: Path, kubeconfig: Path) -> None:
        super().__init__(workdir)
        self.kubeconfig = kubeconfig
        from .apiserver import free_port

        self.web = free_port()  # a Gateway listener on this port is served by the entry point `web`
        self.grpc = free_port()  # … and the GRPCRoute's listener by `grpc`

    def command(self) -> list[str]:
        binary = TOOLS_DIR / "traefik"
        if not binary.is_file():
            _missing("traefik", "bash scripts/tools/traefik.sh")
        return [
            str(binary),
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
            "--log.level=INFO",
            "--log.noColor=true",
            f"--entryPoints.web.address=127.0.0.1:{self.web}",
            f"--entryPoints.grpc.address=127.0.0.1:{self.grpc}",
            f"--entryPoints.traefik.address=127.0.0.1:{self.port}",
            "--api.insecure=true",
            "--ping=true",
            "--providers.kubernetesgateway=true",
            "--providers.kubernetesgateway.throttleDuration=0s",
        ]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ping"

    def weights(self, *services: str) -> dict[str, int]:
        """The weighted round robin traefik applies to the route whose backends include ``services``."""
        names = {f"{NAMESPACE}-{s}-http-80@kubernetesgateway" for s in services}
        for svc in httpx.get(f"http://127.0.0.1:{self.port}/api/http/services", timeout=5).json():
            children = (svc.get("weighted") or {}).get("services") or []
            if any(f"{c['name']}@kubernetesgateway" in names or c["name"] in names for c in children):
                return {c["name"].removesuffix("@kubernetesgateway"): c.get("weight", 1) for c in children}
        return {}

    def routers(self) -> list[dict]:
        return httpx.get(f"http://127.0.0.1:{self.port}/api/http/routers", timeout=5).json()

    def header_routers(self) -> list[str]:
        routers = httpx.get(f"http://127.0.0.1:{self.port}/api/http/routers", timeout=5).json()
        return [r["rule"] for r in routers if "x-housing-variant" in r.get("rule", "")]


@pytest.fixture(scope="module")
def traefik(apiserver, admin, tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = Traefik(tmp_path_factory.mktemp("traefik"), apiserver.kubeconfig)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def backend_services(apiserver, *names: str) -> None:
    """KServe-shaped predictor Services (http1 80, grpc 8081) with one ready endpoint each, at
    documentation addresses (198.51.100.0/24): traefik only needs them to build its servers."""
    api_client = apiserver.api_client()
    core, disc = kclient.CoreV1Api(api_client), kclient.DiscoveryV1Api(api_client)
    for i, name in enumerate(names, start=1):
        ports = [{"name": "http1", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 8081, "targetPort": 8081}]
        core.create_namespaced_service(NAMESPACE, {"metadata": {"name": name}, "spec": {"ports": ports}})
        slice_ = {
            "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [
                {"name": "http1", "port": 8080, "protocol": "TCP"},
                {"name": "grpc", "port": 8081, "protocol": "TCP"},
            ],
            "endpoints": [{"addresses": [f"198.51.100.{i}"], "conditions": {"ready": True}}],
        }
        disc.create_namespaced_endpoint_slice(NAMESPACE, slice_)


def test_traefik_applies_the_weights_of_every_step(apiserver, admin, render, traefik):
    name = install(apiserver, admin, render, f"gateway.listenerPort={traefik.web}", "gateway.grpc=false")
    champion, canary = f"{name}-predictor", f"{name}-v2-predictor"
    backend_services(apiserver, champion, canary)
    key = {s: f"{NAMESPACE}-{s}-http-80" for s in (champion, canary)}

    def applied(expected: dict[str, int]) -> dict[str, int] | None:
        got = traefik.weights(champion, canary)
        return got if got == expected else None

    poll("traefik to route everything to the champion", lambda: applied({key[champion]: 100}), 60, 0.3)
    accepted = route(admin, name)["status"]["parents"][0]["conditions"]
    assert {c["type"]: c["status"] for c in accepted}["Accepted"] == "True"

    be = st.StandardBackend(name, NAMESPACE, api=as_rollout_account(apiserver, name), route=name)
    be.start(CHALLENGER, 10)
    mark_canary_ready(admin, name)
    be.wait_ready(10, interval=0.2)
    poll("traefik at 90/10", lambda: applied({key[champion]: 90, key[canary]: 10}), 60, 0.3)
    rules = traefik.header_routers()  # the header rule: a router of its own, more specific than the weighted one
    assert rules and all("challenger" in rule for rule in rules), rules
    be.set_weight(50)
    poll("traefik at 50/50", lambda: applied({key[champion]: 50, key[canary]: 50}), 60, 0.3)
    be.promote()
    poll("traefik on the promoted canary alone", lambda: applied({key[canary]: 100}), 60, 0.3)
    poll("the header rule gone", lambda: not traefik.header_routers(), 60, 0.3)


def test_the_grpc_route_has_a_listener_of_its_own_and_outranks_nothing(apiserver, admin, render, traefik):
    """The HTTPRoute and the GRPCRoute on listeners of their own: traefik accepts both and serves each
    on its entry point only, so the HTTPRoute's header rule (PathPrefix / with a header) can no longer
    take a tagged gRPC call to the REST port (what answered gRPC with 404 on the node)."""
    name = install(
        apiserver, admin, render, f"gateway.listenerPort={traefik.web}", f"gateway.grpcListenerPort={traefik.grpc}"
    )
    champion, canary = f"{name}-predictor", f"{name}-v2-predictor"
    backend_services(apiserver, champion, canary)
    be = st.StandardBackend(name, NAMESPACE, api=as_rollout_account(apiserver, name), route=name)
    be.start(CHALLENGER, 10)
    mark_canary_ready(admin, name)
    be.wait_ready(10, interval=0.2)

    def by_kind_and_entry_point() -> dict[str, set[str]] | None:
        seen: dict[str, set[str]] = {}
        for router in traefik.routers():
            for kind in ("httproute", "grpcroute"):
                if router["name"].startswith(f"{kind}-{NAMESPACE}-{name}-"):
                    seen.setdefault(kind, set()).update(router.get("entryPoints") or [])
        variants = [r for r in traefik.routers() if name in r["name"] and "x-housing-variant" in r.get("rule", "")]
        return seen if len(seen) == 2 and len(variants) == 2 else None

    seen = poll("traefik to load both routes with their header rules", by_kind_and_entry_point, 60, 0.3)
    assert seen == {"httproute": {"web"}, "grpcroute": {"grpc"}}, seen

    def accepted(kind: str) -> bool:
        parents = (route(admin, name, kind).get("status") or {}).get("parents") or []
        return any(c["type"] == "Accepted" and c["status"] == "True" for p in parents for c in p["conditions"])

    for kind in ("HTTPRoute", "GRPCRoute"):
        poll(f"the {kind} Accepted", lambda k=kind: accepted(k), 60, 0.3, lambda k=kind: str(route(admin, name, k)))
