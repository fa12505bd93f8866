"""Scale-out on the node: KServe's HPA fed by metrics-server, and the chart's PodDisruptionBudget.

metrics-server v0.8.0 (scripts/tools/metrics-server.sh) serves metrics.k8s.io for this module only
(scripts/node/metrics-server-up.sh; unregistered at the end, so the other node tests keep KServe's
HPAs idle). One release with the chart's Gateway route serves a champion trained here, with
``predictor.minReplicas=1``, ``maxReplicas=2``, ``scaleMetric=cpu``, ``scaleTarget=50``:

- a steady load through the Gateway (the cluster's own address, bounded in time) drives the HPA
  KServe created from 1 replica to 2, and no request fails meanwhile; the time to the new Ready
  replica is printed;
- with ``minReplicas=2`` the chart's budget (``maxUnavailable: 1``) lets the eviction API take one
  pod (asked with dryRun, so nothing is taken), and with ``minAvailable=2`` the eviction API
  refuses to evict either pod (429) and both stay;
- when the load stops (a trickle of requests goes on), the HPA scales back to 1 replica and no
  request fails while the second pod leaves; the time to scale in is printed. KServe v0.20's HPA
  has an empty ``behavior`` (and KServe reverts a patched HPA), so the window is the cluster's:
  the node's kube-controller-manager runs with a 30 s downscale stabilisation
  (scripts/node/lib.sh; Kubernetes' default is 5 min);
- opt-in (``HOUSING_BENCH_CAPACITY=1``, a benchmark of ~7 min that asserts no timings): the
  per-replica capacity through the Gateway — the highest rate with p99 ≤ 50 ms and 0 errors for
  V1 and V2 one-row REST and V2 gRPC, with 1 and with 2 replicas (docs/capacity.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.loadgen import LoadResult, run_grpc, run_wrk, wrk_available
from common.config import DEFAULT_MODEL_NAME
from predictor.client.cli import to_v2
from testkit.holdout import sample_records
from testkit.procs import train_bundle

from .conftest import CHART, REPO, TOOLS_DIR, in_ci
from .node import Node, NodeError, poll
from .node_release import V2_PATH, grpc_infer_request, installed, serving_sets, upload, uri_of

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(1800)]

kclient = pytest.importorskip("kubernetes.client")
kconfig = pytest.importorskip("kubernetes.config")

NS = "autoscale"
RELEASE = "housing"
ISVC = RELEASE
HPA = f"{ISVC}-predictor"  # KServe names the HPA after the predictor's Deployment
PODS = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=predictor"
SCALE_TARGET = 50  # percent of the pod's 100m CPU request: 50 mCPU
LOAD_THREADS = 3
LOAD_SECONDS = 300  # the most the load runs for; it stops once the second replica has served
TRICKLE_PAUSE = 0.2  # one client, ~5 requests/s while the HPA scales in: a few mCPU, far under the target
SCALE_IN_SECONDS = 300  # the most the scale-in may take (30 s stabilisation + metrics' lag, in practice)
V1_PATH = f"/v1/models/{DEFAULT_MODEL_NAME}:predict"


def _node_script(node: Node, *args: str) -> None:
    env = {"HOUSING_NODE_STATE": str(node.state), "HOUSING_TOOLS_DIR": str(node.tools)}
    result = subprocess.run(
        ["bash", str(REPO / "scripts/node/metrics-server-up.sh"), *args],
        capture_output=True,
        text=True,
        env={**node.env(), **env},
        timeout=300,
    )
    if result.returncode != 0:
        log = node.state / "logs" / "metrics-server.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
        raise NodeError(f"metrics-server-up.sh {' '.join(args)} failed:\n{result.stderr[-3000:]}\n{tail}")


@pytest.fixture(scope="module")
def metrics_server(node: Node) -> Iterator[Node]:
    if not (TOOLS_DIR / "metrics-server").is_file() and in_ci():
        subprocess.run(["bash", str(REPO / "scripts/tools/metrics-server.sh")], check=False)
    if not (TOOLS_DIR / "metrics-server").is_file():
        message = "metrics-server not built; run: bash scripts/tools/metrics-server.sh"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    try:
        _node_script(node)
        yield node
    finally:
        _node_script(node, "--down")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {"champion": train_bundle(tmp_path_factory.getbasetemp(), "ames", "linear")}


@pytest.fixture(scope="module")
def release(metrics_server: Node, bundles: dict[str, Path]) -> Iterator[Node]:
    node = metrics_server
    sets = serving_sets(
        node,
        NS,
        uri_of(bundles, "champion"),
        "predictor.minReplicas=1",
        "predictor.maxReplicas=2",
        "predictor.scaleMetric=cpu",
        f"predictor.scaleTarget={SCALE_TARGET}",
        "predictor.resources.requests.cpu=100m",  # SCALE_TARGET is a percent of it; two pods fit the node
    )
    with installed(node, NS, RELEASE, sets, then=lambda: upload(node, NS, RELEASE, bundles, ["champion"])):
        yield node


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return sample_records("ames", 1, 5)


@pytest.fixture(scope="module")
def body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return to_v2({"instances": rows})


class Load:
    """``threads`` clients sending V2 requests through the Gateway until stopped (or ``seconds``),
    back to back or ``pause`` seconds apart, counting every answer by status (or exception name)."""

    def __init__(self, url: str, body: dict[str, Any], threads: int, seconds: float, pause: float = 0.0) -> None:
        self.url, self.body, self.deadline, self.pause = url, body, time.monotonic() + seconds, pause
        self.answers: Counter = Counter()
        self.details: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                try:
                    r = client.post(self.url, json=self.body)
                    answer: int | str = r.status_code
                    detail = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    answer, detail = type(exc).__name__, repr(exc)
                with self._lock:
                    self.answers[answer] += 1
                    if answer != 200:
                        self.details.append(f"{time.strftime('%H:%M:%S')} {detail}")
                if self.pause:
                    self._stop.wait(self.pause)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    @property
    def failed(self) -> int:
        return sum(n for answer, n in self.answers.items() if answer != 200)


def _cpu_utilization(hpa: dict[str, Any]) -> int | None:
    for metric in (hpa.get("status") or {}).get("currentMetrics") or []:
        resource = metric.get("resource") or {}
        if resource.get("name") == "cpu":
            return (resource.get("current") or {}).get("averageUtilization")
    return None


def test_hpa_scales_out_under_load_through_the_gateway_without_a_failed_request(
    release: Node, body: dict[str, Any]
) -> None:
    node = release
    hpa = node.get("hpa", HPA, NS)
    metric = hpa["spec"]["metrics"][0]["resource"]
    assert (metric["name"], metric["target"]["averageUtilization"]) == ("cpu", SCALE_TARGET)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 2)

    # the HPA reads the pod's CPU from metrics-server before any load
    def reading() -> tuple[int] | None:
        value = _cpu_utilization(node.get("hpa", HPA, NS))
        return None if value is None else (value,)

    (idle,) = poll(
        "the HPA's first CPU reading",
        reading,
        240,
        3,
        lambda: node.kubectl("describe", "hpa", HPA, "-n", NS, check=False).stdout,
    )
    assert len(node.ready_pods(NS, PODS)) == 1
    assert idle < SCALE_TARGET, f"idle utilization {idle} % already at the target: the test would not show scaling"
    first = {p["metadata"]["name"] for p in node.ready_pods(NS, PODS)}

    url = f"http://{node.gateway}{V2_PATH}"
    t0 = time.monotonic()
    seen: dict[str, float] = {}
    with Load(url, body, LOAD_THREADS, LOAD_SECONDS) as load:

        def scaled_out() -> bool:
            h = node.get("hpa", HPA, NS).get("status") or {}
            if h.get("desiredReplicas", 0) >= 2 and "desired" not in seen:
                seen["desired"] = time.monotonic() - t0
                seen["utilization"] = _cpu_utilization({"status": h}) or -1
            return len(node.ready_pods(NS, PODS)) >= 2

        poll(
            "a second Ready predictor replica under load",
            scaled_out,
            LOAD_SECONDS - 30,
            2,
            lambda: node.kubectl("describe", "hpa", HPA, "-n", NS, check=False).stdout + node.diagnose(NS),
        )
        seen["ready"] = time.monotonic() - t0
        at_ready = sum(load.answers.values())
        time.sleep(15)  # the load goes on across both replicas
    after = sum(load.answers.values()) - at_ready
    pods = {p["metadata"]["name"] for p in node.ready_pods(NS, PODS)}
    print(
        f"\nscale-out: idle CPU {idle} % of the request; HPA wanted 2 after {seen.get('desired', -1):.0f} s "
        f"(CPU {seen.get('utilization')} %), second replica Ready after {seen['ready']:.0f} s of load; "
        f"{sum(load.answers.values())} requests through the Gateway ({after} after it was Ready), "
        f"{load.failed} failed: {dict(load.answers)}"
    )
    assert len(pods) >= 2 and first <= pods, (first, pods)
    assert after > 0
    assert load.failed == 0, load.details[:10]


def test_hpa_scales_in_when_the_load_stops_without_a_failed_request(release: Node, body: dict[str, Any]) -> None:
    node = release
    assert len(node.ready_pods(NS, PODS)) == 2, "starts from the two replicas the scale-out test left"
    url = f"http://{node.gateway}{V2_PATH}"
    t0 = time.monotonic()  # the scale-out test's load stopped just before
    seen: dict[str, float] = {}
    with Load(url, body, 1, SCALE_IN_SECONDS + 60, pause=TRICKLE_PAUSE) as load:

        def scaled_in() -> bool:
            h = node.get("hpa", HPA, NS).get("status") or {}
            if h.get("desiredReplicas") == 1 and "desired" not in seen:
                seen["desired"] = time.monotonic() - t0
            # every pod counted, a terminating one too: the trickle covers its whole way out
            if "desired" in seen and len(node.get("pods", namespace=NS, selector=PODS)["items"]) == 1:
                seen.setdefault("gone", time.monotonic() - t0)
            # the HPA's own count follows at its next sync (15 s)
            return "gone" in seen and h.get("currentReplicas") == 1

        poll(
            "the HPA back at 1 replica and the second pod gone",
            scaled_in,
            SCALE_IN_SECONDS,
            2,
            lambda: node.kubectl("describe", "hpa", HPA, "-n", NS, check=False).stdout + node.diagnose(NS),
        )
        time.sleep(5)  # the trickle goes on to the replica left
    print(
        f"\nscale-in: HPA wanted 1 replica {seen['desired']:.0f} s after the load stopped, the second pod was gone "
        f"after {seen['gone']:.0f} s; {sum(load.answers.values())} trickle requests through the Gateway, "
        f"{load.failed} failed: {dict(load.answers)}"
    )
    assert load.failed == 0, load.details[:10]
    assert sum(load.answers.values()) > 0
    assert len(node.ready_pods(NS, PODS)) == 1


def _evict(api: Any, pod: str, dry_run: bool) -> None:
    body = kclient.V1Eviction(metadata=kclient.V1ObjectMeta(name=pod, namespace=NS))
    api.create_namespaced_pod_eviction(pod, NS, body, **({"dry_run": "All"} if dry_run else {}))


def _budget(node: Node, allowed: int) -> dict[str, Any] | None:
    pdb = node.get("pdb", f"{RELEASE}-predictor", NS)
    status = pdb.get("status") or {}
    fresh = status.get("observedGeneration") == pdb["metadata"]["generation"]
    if fresh and status.get("currentHealthy") == 2 and status.get("disruptionsAllowed") == allowed:
        return pdb
    return None


def test_eviction_api_keeps_the_disruption_budget(release: Node) -> None:
    node = release
    api = kclient.CoreV1Api(kconfig.new_client_from_config(config_file=str(node.kubeconfig)))
    node.upgrade(CHART, RELEASE, NS, "predictor.minReplicas=2")
    poll("two Ready predictor replicas", lambda: len(node.ready_pods(NS, PODS)) == 2, 300, 2, lambda: node.diagnose(NS))
    pdb = poll("the budget to allow one disruption", lambda: _budget(node, 1), 120, 2)
    assert pdb["spec"]["maxUnavailable"] == 1
    pods = sorted(p["metadata"]["name"] for p in node.ready_pods(NS, PODS))
    _evict(api, pods[0], dry_run=True)  # allowed: one of two may go (dryRun: nothing is evicted)

    node.upgrade(CHART, RELEASE, NS, "predictor.podDisruptionBudget.minAvailable=2")
    pdb = poll("the budget to allow no disruption", lambda: _budget(node, 0), 120, 2)
    assert pdb["spec"]["minAvailable"] == 2
    for pod in pods:
        with pytest.raises(kclient.ApiException) as refused:
            _evict(api, pod, dry_run=False)
        assert refused.value.status == 429, refused.value
        assert "disruption budget" in str(refused.value.body), refused.value.body
    print(f"\neviction API: dry-run eviction allowed at maxUnavailable 1; refused (429) for {pods} at minAvailable 2")
    assert sorted(p["metadata"]["name"] for p in node.ready_pods(NS, PODS)) == pods


CAPACITY = os.environ.get("HOUSING_BENCH_CAPACITY", "").lower() in ("1", "true", "yes")
P99_MS = 50.0
CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)  # closed-loop clients, doubled until p99 > P99_MS or an error
RUN_SECONDS = 6.0


def _search(run: Any) -> tuple[LoadResult | None, list[tuple[int, LoadResult]]]:
    """The run with the highest req/s among those with p99 ≤ P99_MS and no error, and every step."""
    run(2)  # warm-up, discarded
    best, steps = None, []
    for connections in CONCURRENCY:
        result = run(connections)
        steps.append((connections, result))
        if result.errors or result.p99_ms > P99_MS:
            break
        if best is None or result.rps > best.rps:
            best = result
    return best, steps


@pytest.mark.skipif(not CAPACITY, reason="a ~7 min benchmark: HOUSING_BENCH_CAPACITY=1 runs it")
def test_capacity_per_replica_through_the_gateway(release: Node, rows: list[dict[str, Any]]) -> None:
    """Benchmark, no timed assert: per protocol, the highest rate at p99 ≤ 50 ms and 0 errors."""
    if not wrk_available():
        pytest.skip("wrk not installed (Debian: apt-get install wrk)")
    node = release
    v1 = json.dumps({"instances": rows}).encode()
    v2 = json.dumps(to_v2({"instances": rows})).encode()
    grpc_request = grpc_infer_request(rows).SerializeToString()
    runs = {
        "V1 REST": lambda c: run_wrk(f"http://{node.gateway}{V1_PATH}", v1, RUN_SECONDS, connections=c),
        "V2 REST": lambda c: run_wrk(f"http://{node.gateway}{V2_PATH}", v2, RUN_SECONDS, connections=c),
        "V2 gRPC": lambda c: run_grpc(node.gateway_grpc, grpc_request, RUN_SECONDS, concurrency=c),
    }
    figures = []
    for replicas in (1, 2):
        node.upgrade(CHART, RELEASE, NS, f"predictor.minReplicas={replicas}", f"predictor.maxReplicas={replicas}")
        poll(
            f"{replicas} predictor pods, all Ready",
            lambda n=replicas: (
                len(node.get("pods", namespace=NS, selector=PODS)["items"]) == len(node.ready_pods(NS, PODS)) == n
            ),
            300,
            2,
            lambda: node.diagnose(NS),
        )
        for name, run in runs.items():
            best, steps = _search(run)
            figures.append(
                {
                    "replicas": replicas,
                    "protocol": name,
                    "best": best and best.to_dict(),
                    "connections": next((c for c, r in steps if r is best), None),
                    "steps": [(c, r.to_dict()) for c, r in steps],
                }
            )
            trail = ", ".join(f"{c}: {r.rps:.0f}/s p99 {r.p99_ms:.1f} ms e{r.errors}" for c, r in steps)
            print(f"\ncapacity {replicas} replica(s) {name}: best {best and round(best.rps)} req/s ({trail})")
            assert all(r.requests > 0 for _, r in steps), trail
    print("CAPACITY_JSON " + json.dumps(figures))
