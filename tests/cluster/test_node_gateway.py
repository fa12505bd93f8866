"""The cluster splits canary traffic: a Gateway API route on the node tier (traefik), moved by rollouts.

One release (``gateway.enabled``: the chart's Gateway, HTTPRoute and GRPCRoute; MinIO for the
bundles) serves a champion trained here; challengers derived from it are uploaded to the in-cluster
MinIO. Every request enters through the Gateway — traefik v3.6 on the host with its Kubernetes
Gateway provider (scripts/node/gateway-up.sh): REST on the HTTPRoute's listener, V2 gRPC on the
GRPCRoute's — and ``housing rollout … --route`` moves the routes' weights as the chart's rollout
ServiceAccount. The client never picks a backend.

- the observed split equals the route's weight at 10, 25 and 50 % (≥ 2,000 requests each);
- a request carrying ``x-housing-variant: challenger`` reaches the canary at 10 %, over REST and
  over gRPC (ModelInfer through the GRPCRoute);
- the gateway's overhead (p50/p99) next to the same load sent straight to the predictor Service;
- promote and rollback under a steady stream through the Gateway lose no request;
- a failing challenger is rolled back by ``housing rollout run``'s error gate from the gateway's
  own series: its predictor listens for REST on another port than its pod declares (a
  configuration mistake, written into the canary's args and probes), so it is Ready (its probes
  follow it) and every REST request the Gateway sends it is refused — 502s that its predictor
  never sees. Chosen over killing the canary's pods (tried: 0.5 % of a step failed in one run and
  nothing in the next, as Kubernetes took the pod out of the endpoints at once) because every
  request to it fails, every time: no test-only fault flag in the predictor. (The same mistake on
  the gRPC port is invisible to the gateway's series: traefik v3.6 labels an answered gRPC call and
  an undelivered one alike, ``code="2"``, so the gate leaves gRPC to the predictor's own counts —
  rollout/analysis_config.py.)

Shadow traffic is not here: traefik v3.6's Gateway provider refuses the HTTPRoute
``RequestMirror`` filter ("unsupported filter"), see rollout/README.md.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from predictor.client.cli import to_v2
from rollout.backends.gateway_route import VARIANT_HEADER, VARIANT_VALUE, predictor_service
from rollout.backends.kserve_standard import canary_name_for
from testkit.holdout import sample_records

from .node import Node, poll
from .node_release import (
    V2_PATH,
    GatewayTraffic,
    NodePrometheus,
    champion_and_derived,
    grpc_infer_request,
    installed,
    node_prometheus,
    rollout_command,
    rollout_home_env,
    serving_sets,
    upload,
    uri_of,
    version_of,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(2400)]

NS = "gateway"
RELEASE = "housing"
ISVC = RELEASE
SPLIT_REQUESTS = 2000
SPLIT_TOLERANCE = 3.0  # percentage points


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The champion (trained here, linear) and challengers derived from it, each its own version."""
    shifts = dict.fromkeys(("split", "good", "back", "misport"), 0.001)
    return champion_and_derived(tmp_path_factory, "gateway-bundles", shifts, uuid.uuid4().hex[:6])


@pytest.fixture(scope="module")
def release(node: Node, bundles: dict[str, Path]) -> Iterator[Node]:
    """``helm install`` with the chart's Gateway and routes (restricted namespace, one predictor pod)."""
    sets = serving_sets(node, NS, uri_of(bundles, "champion"), "predictor.minReplicas=1", "predictor.maxReplicas=1")
    with installed(
        node,
        NS,
        RELEASE,
        sets,
        then=lambda: upload(node, NS, RELEASE, bundles, list(bundles)),
        ready_what="the champion InferenceService Ready",
    ):
        poll(
            "the HTTPRoute accepted by traefik",
            lambda: route_accepted(node),
            120,
            2,
            lambda: json.dumps(node.get("httproute", RELEASE, NS).get("status"), indent=1),
        )
        yield node


def route_accepted(node: Node) -> bool:
    status = node.get("httproute", RELEASE, NS).get("status") or {}
    conditions = [c for parent in status.get("parents") or [] for c in parent.get("conditions") or []]
    return any(c["type"] == "Accepted" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return sample_records("ames", 4, 11)


@pytest.fixture(scope="module")
def rollout_env(release: Node, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``housing rollout`` as the chart's rollout ServiceAccount, moving the chart's route; bundle URIs
    given on the command line (no MLflow here), so the registry steps are off."""
    return rollout_home_env(release, NS, RELEASE, tmp_path_factory.mktemp("gateway-rollout-home"))


@pytest.fixture(scope="module")
def prometheus(release: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodePrometheus]:
    with node_prometheus(release, NS, tmp_path_factory.mktemp("prometheus"), pods=1) as server:
        yield server


def housing(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return rollout_command(env, ISVC, NS, *args, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    return out


def start_canary(env: dict[str, str], uri: str, percent: str = "50") -> str:
    """``housing rollout start`` of ``uri`` at ``percent`` %, without the quality gate; its output."""
    return ok(housing(env, "start", "--percent", percent, "--challenger-uri", uri, "--skip-quality-gate"))


def route_backends(node: Node) -> list[tuple[str, int]]:
    rule = node.get("httproute", RELEASE, NS)["spec"]["rules"][0]
    return [(ref["name"], ref.get("weight", 1)) for ref in rule["backendRefs"]]


def service_of(bundles: dict[str, Path], name: str) -> str:
    """KServe's Service of bundle ``name``'s canary (``housing rollout start`` names it from the URI)."""
    return predictor_service(ISVC, canary_name_for(uri_of(bundles, name)))


def gateway_reloaded_since(node: Node, since: float) -> bool:
    """traefik applied a configuration at or after ``since`` (its last successful reload, epoch seconds)."""
    text = httpx.get(f"http://{node.gateway_metrics}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("traefik_config_last_reload_success "):
            return float(line.split()[1]) >= since
    return False


def settle(node: Node, since: float) -> None:
    poll("traefik to apply the route", lambda: gateway_reloaded_since(node, since - 1), 60, 0.2)
    time.sleep(1.0)


def measure(client: httpx.Client, url: str, body: dict, n: int, headers: dict[str, str] | None = None) -> dict:
    """``n`` sequential requests: answers by (status, model_version) and each one's seconds."""
    seen: Counter = Counter()
    seconds = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post(url, json=body, headers=headers or {})
        seconds.append(time.perf_counter() - t0)
        seen[(r.status_code, r.json().get("model_version") if r.status_code == 200 else None)] += 1
    seconds.sort()
    return {
        "answers": seen,
        "p50_ms": 1000 * statistics.median(seconds),
        "p99_ms": 1000 * seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))],
    }


def grpc_through_gateway(node: Node, rows: list[dict[str, Any]]) -> dict[str, Counter]:
    """ModelInfer over h2c through the Gateway's gRPC listener: 20 calls with the variant header, 100 without."""
    import grpc
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    seen: dict[str, Counter] = {"tagged": Counter(), "untagged": Counter()}
    with grpc.insecure_channel(node.gateway_grpc) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for key, n, metadata in (("tagged", 20, ((VARIANT_HEADER, VARIANT_VALUE),)), ("untagged", 100, ())):
            for _ in range(n):
                seen[key][stub.ModelInfer(grpc_infer_request(rows), metadata=metadata, timeout=10).model_version] += 1
    return seen


def test_the_route_splits_as_weighted_and_a_header_reaches_the_canary(
    release: Node, rollout_env: dict[str, str], rows: list, bundles: dict
) -> None:
    champion, split = version_of(bundles, "champion"), version_of(bundles, "split")
    body = to_v2({"instances": rows[:1]})
    url = f"http://{release.gateway}{V2_PATH}"
    figures = []
    with httpx.Client(timeout=10) as client:
        for percent in (10, 25, 50):
            since = time.time()
            args = ["start", "--percent", str(percent), "--challenger-uri", uri_of(bundles, "split")]
            ok(housing(rollout_env, *args, "--skip-quality-gate", "--ready-timeout", "300"))
            assert route_backends(release) == [
                (predictor_service(ISVC, None), 100 - percent),
                (service_of(bundles, "split"), percent),
            ]
            settle(release, since)
            got = measure(client, url, body, SPLIT_REQUESTS)["answers"]
            assert sum(n for (status, _), n in got.items() if status != 200) == 0, got
            observed = 100 * got[(200, split)] / SPLIT_REQUESTS
            figures.append((percent, observed, got[(200, champion)], got[(200, split)]))
            print(f"\nroute {100 - percent}/{percent}: canary {observed:.2f} % of {SPLIT_REQUESTS} requests")
            assert abs(observed - percent) <= SPLIT_TOLERANCE, figures
            if percent == 10:  # testers reach the challenger on purpose, whatever its weight
                tagged = measure(client, url, body, 50, {VARIANT_HEADER: VARIANT_VALUE})["answers"]
                assert tagged == {(200, split): 50}, tagged
                untagged = measure(client, url, body, 50, {VARIANT_HEADER: "champion"})["answers"]
                assert untagged[(200, champion)] > 0, untagged  # another value: the weighted rule
                grpc_seen = grpc_through_gateway(release, rows[:1])  # the GRPCRoute, its own listener
                print(f"\ngRPC through the Gateway (GRPCRoute) at 10 %: {dict(grpc_seen)}")
                assert grpc_seen["tagged"] == {split: 20}, grpc_seen
                assert set(grpc_seen["untagged"]) <= {champion, split}, grpc_seen
                assert grpc_seen["untagged"][champion] > 0, grpc_seen
    print("\nsplit accuracy (weight %, observed canary %, champion answers, canary answers):", figures)
    ok(housing(rollout_env, "rollback", "--no-registry", "--reason", "split measured"))
    assert route_backends(release) == [(predictor_service(ISVC, None), 100)]


def test_gateway_overhead_next_to_the_predictor_service(release: Node, rows: list) -> None:
    """The same sequential load through the Gateway and straight to the predictor Service (ClusterIP)."""
    body = to_v2({"instances": rows[:1]})
    svc = release.get("service", predictor_service(ISVC, None), NS)
    direct = f"http://{svc['spec']['clusterIP']}:80{V2_PATH}"
    through = f"http://{release.gateway}{V2_PATH}"
    results = {}
    with httpx.Client(timeout=10) as client:
        for name, url in (("warm-up", through), ("gateway", through), ("direct", direct), ("gateway again", through)):
            results[name] = measure(client, url, body, 1000 if name != "warm-up" else 100)
            assert set(results[name]["answers"]) <= {(200, next(iter(results[name]["answers"]))[1])}
    lines = []
    for name in ("gateway", "direct", "gateway again"):
        p50, p99 = results[name]["p50_ms"], results[name]["p99_ms"]
        lines.append(f"| {name} | {p50:.2f} | {p99:.2f} |")
        print(f"\n{name:>13}: p50 {p50:.2f} ms, p99 {p99:.2f} ms (1000 requests)")
    if os.environ.get("HOUSING_GATEWAY_BENCH_MD"):  # docs/benchmarks.md's figures come from this run
        from bench.sections import write_section

        write_section(
            Path(os.environ["HOUSING_GATEWAY_BENCH_MD"]),
            "gateway",
            [
                "## Gateway overhead (node tier)",
                "",
                f"{time.strftime('%Y-%m-%d')}, `tests/cluster/test_node_gateway.py`, load average "
                f"{os.getloadavg()[0]:.1f}: 1,000 sequential one-row V2 REST requests (keep-alive) through traefik "
                "v3.6.12 (the chart's HTTPRoute, one backend), then the same straight to the predictor Service's "
                "ClusterIP (kube-proxy), same pod, same client, then through the gateway again.",
                "",
                "| path | p50 ms | p99 ms |",
                "| --- | ---: | ---: |",
                *lines,
            ],
        )


def test_promote_and_rollback_under_load_lose_no_request(
    release: Node, rollout_env: dict[str, str], rows: list, bundles: dict
) -> None:
    good, back = version_of(bundles, "good"), version_of(bundles, "back")
    with GatewayTraffic(release, rows) as traffic:
        time.sleep(3)
        start_canary(rollout_env, uri_of(bundles, "good"))
        poll("answers from the canary", lambda: traffic.versions(last=40)[good] > 0, 60, 0.5)
        before_promote = len(traffic.answers)
        ok(housing(rollout_env, "promote", "--no-registry"))
        assert route_backends(release) == [(service_of(bundles, "good"), 100)]
        poll("answers from the promoted model only", lambda: set(traffic.versions(last=40)) == {good}, 120, 1)
        poll(
            "the old stable Deployment deleted",
            lambda: not release.get("deployments", namespace=NS, selector=f"app=isvc.{ISVC}-predictor")["items"],
            180,
            1,
        )
        promoted = len(traffic.answers) - before_promote
        start_canary(rollout_env, uri_of(bundles, "back"))
        poll("answers from the second canary", lambda: traffic.versions(last=40)[back] > 0, 60, 0.5)
        before_rollback = len(traffic.answers)
        ok(housing(rollout_env, "rollback", "--no-registry", "--reason", "rollback under load"))
        assert route_backends(release) == [(service_of(bundles, "good"), 100)]
        canary = f"{ISVC}-{canary_name_for(uri_of(bundles, 'back'))}-predictor"
        poll(
            "the rolled-back canary's Deployment deleted",
            lambda: not release.get("deployments", namespace=NS, selector=f"app=isvc.{canary}")["items"],
            180,
            1,
        )
        time.sleep(8)  # past the canary pods' preStop: requests that could still have reached them
        rolled_back = len(traffic.answers) - before_rollback
    print(
        f"\nthrough the Gateway: {len(traffic.answers)} requests, {len(traffic.failures)} failed "
        f"({promoted} from promote on, {rolled_back} from rollback on); by version {dict(traffic.versions())}"
    )
    assert len(traffic.answers) > 200
    assert not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    assert set(traffic.versions(last=40)) == {good}


def canary_pods_moved(node: Node, deployment: str, port: str) -> bool:
    """Every pod of the canary's Deployment runs with the moved REST port, Ready, none terminating."""
    pods = node.get("pods", namespace=NS, selector=f"app=isvc.{deployment}")["items"]
    if not pods:
        return False
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            return False
        (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "kserve-container"]
        if container.get("args", [])[-2:] != ["--http_port", port]:
            return False
        if node.condition(pod, "Ready") != "True":
            return False
    return True


def test_a_challenger_refusing_requests_is_rolled_back_by_the_gateways_5xx(
    release: Node, rollout_env: dict[str, str], prometheus: NodePrometheus, rows: list, bundles: dict
) -> None:
    """The challenger's predictor listens for REST on 8090 (its probes follow it) while its pod, and
    so KServe's Service, say 8080: Ready, weighted 25 % by the routes, and every request the Gateway
    sends it is refused (traefik answers 502). Its predictor never sees those requests, so only the
    gateway's per-backend series can count them against it: ``housing rollout run`` rolls it back at
    its first step by the error gate, and the routes go back to the champion alone."""
    uri = uri_of(bundles, "misport")
    champion_service = route_backends(release)[0][0]  # whoever serves now (the earlier tests promote)
    deployment = f"{ISVC}-{canary_name_for(uri)}-predictor"
    start_canary(rollout_env, uri, percent="25")
    container = "/spec/canary/0/predictor/containers/0"
    patch = [
        {"op": "add", "path": f"{container}/args/-", "value": "--http_port"},
        {"op": "add", "path": f"{container}/args/-", "value": "8090"},
        {"op": "replace", "path": f"{container}/readinessProbe/httpGet/port", "value": 8090},
        {"op": "replace", "path": f"{container}/livenessProbe/httpGet/port", "value": 8090},
    ]
    release.kubectl("patch", "inferenceservice", ISVC, "-n", NS, "--type=json", "-p", json.dumps(patch))
    poll(
        "the canary's pods serving REST on the moved port",
        lambda: canary_pods_moved(release, deployment, "8090"),
        300,
        2,
        lambda: release.diagnose(NS),
    )
    with GatewayTraffic(release, rows) as traffic:
        args = ["run", "--challenger-uri", uri, "--steps", "25,100", "--interval", "15", "--min-requests", "20"]
        args += ["--max-failures", "1", "--prometheus-url", prometheus.url, "--no-registry", "--skip-quality-gate"]
        result = housing(rollout_env, *args, timeout=600)
    out = result.stdout + result.stderr
    print(f"\nfailing challenger: answers through the Gateway {dict(Counter(a[0] for a in traffic.answers))}")
    assert result.returncode == 3, out  # rolled back
    logs = sorted((Path(rollout_env["HOUSING_HOME"]) / "rollouts").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    records = [json.loads(line) for line in logs[-1].read_text().splitlines() if line.strip()]
    step = [r for r in records if r.get("event") == "step"][-1]  # the look that decided
    values = step["values"]
    print(
        f"gate values: gateway error rate {values.get('challenger.gateway.error_rate')} of "
        f"{values.get('challenger.gateway.requests')} requests, predictor's own {values.get('challenger.error_rate')} "
        f"of {values.get('challenger.requests')}; reasons {step['reasons']}"
    )
    assert step["decision"] == "rollback", step
    assert any(reason.startswith("error_rate=") for reason in step["reasons"]), step["reasons"]
    assert values["challenger.gateway.requests"] > 0 and values["challenger.gateway.error_rate"] > 0.01, values
    assert not values.get("challenger.error_rate"), values  # the predictor's own series show no failure
    assert Counter(a[0] for a in traffic.answers)[502] > 0, traffic.details[:5]  # the client saw the refusals
    for kind in ("httproute", "grpcroute"):
        rule = release.get(kind, RELEASE, NS)["spec"]["rules"][0]
        assert [(ref["name"], ref.get("weight", 1)) for ref in rule["backendRefs"]] == [(champion_service, 100)]
