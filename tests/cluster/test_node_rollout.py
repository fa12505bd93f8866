"""Canary rollouts on a real node: the KServe v0.20.0 controller reconciles what ``housing rollout`` writes.

One release (dev stack: MinIO, MLflow; no training Job) serves a champion bundle trained here;
challengers derived from it (+0.2 %, +50 %, a wrong digest) are uploaded to the in-cluster MinIO
and registered in the in-cluster MLflow. ``housing rollout`` runs as a user runs it, with the
chart's rollout ServiceAccount token (never an admin credential). Prometheus (v3, built with
kubernetes SD by scripts/tools/prometheus.sh: Debian's has none) finds the predictor pods through
``kubernetes_sd_configs`` against this cluster's API server and the scrape annotations the chart
sets, so those annotations are what is tested. Traffic: KServe v0.20 cannot weight routes
(HTTPRoute backends arrive in v0.21), so the test's request stream sends the canary's percent to
the canary Service and the rest to the chart's ``<release>-inference`` Service, counting every
answer.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bundle.manifest import MANIFEST
from bundle.registry import TAG_REASON, TAG_STATUS
from housing.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, DEFAULT_BUCKET, DEFAULT_MODEL_NAME, TAG_BUNDLE_URI
from predictor.cli import to_v2
from rollout.backends.kserve_standard import canary_name_for
from testkit.bundles import derive_bundle
from testkit.holdout import holdout, records
from testkit.procs import train_bundle
from testkit.servers import ServerProcess, find_tool

from .conftest import CHART, REPO
from .node import Node, poll

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(2400)]

NS = "canary"
RELEASE = "housing"
ISVC = RELEASE
ENDPOINT = f"{RELEASE}-inference"  # the chart's Service: its name survives promotions
PREFIX = f"{DEFAULT_MODEL_NAME}"


# -- bundles, MinIO, MLflow ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The champion (trained here, linear) and challengers derived from it, each its own version."""
    root = tmp_path_factory.mktemp("node-bundles")
    champion = train_bundle(tmp_path_factory.getbasetemp(), "ames", "linear")
    tag = uuid.uuid4().hex[:6]
    out = {"champion": champion}
    for name, shift in (("good", 0.002), ("shifted", 0.5), ("crash", 0.001), ("next", 0.001), ("again", 0.001)):
        out[name] = derive_bundle(champion, root / name, relative_shift=shift, version=f"{name}-{tag}")
    reference = out["crash"] / "reference.json"  # a byte flipped after the digests were written
    data = reference.read_bytes()
    reference.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    return out


def uri_of(bundles: dict[str, Path], name: str) -> str:
    """Where bundle ``name`` lives: <bucket>/housing/<its model_version>, the layout training writes
    (the KServe backends read a version from the last path segment, as the predictors label it)."""
    return f"s3://{DEFAULT_BUCKET}/{PREFIX}/{version_of(bundles, name)}"


def canary_of(bundles: dict[str, Path], name: str) -> str:
    """The predictor name ``housing rollout start`` gives bundle ``name``'s canary."""
    return canary_name_for(uri_of(bundles, name))


def upload(node: Node, bundles: dict[str, Path], names: list[str]) -> None:
    """Copy bundles into the in-cluster MinIO under models/housing/<name>/ (the bucket may still be coming)."""
    poll(
        "the in-cluster MinIO pod Ready",
        lambda: node.ready_pods(NS, "app.kubernetes.io/component=minio"),
        600,
        3,
        lambda: node.diagnose(NS),
    )
    with node.port_forward(NS, f"svc/{RELEASE}-minio", 9000) as port:
        s3 = node.s3_client(NS, f"{RELEASE}-s3", port)

        def bucket_ready() -> bool:
            names_ = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
            if DEFAULT_BUCKET not in names_:
                s3.create_bucket(Bucket=DEFAULT_BUCKET)
            return True

        poll("the MinIO bucket", bucket_ready, 300, 3)
        for name in names:
            src = bundles[name]
            for path in sorted(p for p in src.rglob("*") if p.is_file()):
                key = uri_of(bundles, name).removeprefix(f"s3://{DEFAULT_BUCKET}/")
                s3.upload_file(str(path), DEFAULT_BUCKET, f"{key}/{path.relative_to(src)}")


@pytest.fixture(scope="module")
def release(node: Node, bundles: dict[str, Path]) -> Iterator[Node]:
    """``helm install`` (restricted namespace, 2 predictor replicas) serving the champion bundle."""
    node.restricted_namespace(NS)
    sets = [
        f"devStack.minio.image={node.images['minio']}",
        "training.enabled=false",
        f"predictor.storageUri={uri_of(bundles, 'champion')}",
        "predictor.minReplicas=2",
        "predictor.maxReplicas=2",
        "predictor.readinessProbe.periodSeconds=2",
    ]
    node.helm("install", RELEASE, str(CHART), "-n", NS, *[a for s in sets for a in ("--set", s)], "--timeout", "10m")
    try:
        upload(node, bundles, list(bundles))
        poll(
            "the champion InferenceService Ready with 2 pods",
            lambda: (
                node.condition(node.get("inferenceservice", ISVC, NS), "Ready") == "True"
                and len(predictor_pods(node)) == 2
            ),
            600,
            3,
            lambda: node.diagnose(NS),
        )
        yield node
    finally:
        node.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "3m", check=False)
        node.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def predictor_pods(node: Node, deployment: str | None = None) -> list[dict[str, Any]]:
    selector = f"serving.kserve.io/inferenceservice={ISVC}"
    if deployment:
        selector += f",app=isvc.{deployment}"
    return node.ready_pods(NS, selector)


@pytest.fixture(scope="module")
def mlflow_url(release: Node, bundles: dict[str, Path]) -> Iterator[str]:
    """A port-forward to the in-cluster MLflow, with the champion registered as version 1."""
    from mlflow import MlflowClient

    with release.port_forward(NS, f"svc/{RELEASE}-mlflow", 5000) as port:
        url = f"http://127.0.0.1:{port}"
        client = poll(
            "MLflow",
            lambda: (
                MlflowClient(tracking_uri=url).search_registered_models() is not None and MlflowClient(tracking_uri=url)
            ),
            300,
            3,
        )
        client.create_registered_model(DEFAULT_MODEL_NAME)
        register(url, uri_of(bundles, "champion"), ALIAS_CHAMPION)
        yield url


def register(url: str, uri: str, alias: str = ALIAS_CHALLENGER) -> str:
    """A registered version for the bundle at ``uri`` (its bundle_uri tag), under ``alias``; its number."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    mv = client.create_model_version(DEFAULT_MODEL_NAME, source=uri, tags={TAG_BUNDLE_URI: uri})
    client.set_registered_model_alias(DEFAULT_MODEL_NAME, alias, mv.version)
    return str(mv.version)


# -- the rollout's credentials and Prometheus --------------------------------------------------------
def server_of(node: Node) -> str:
    config = yaml.safe_load(node.kubeconfig.read_text())
    return config["clusters"][0]["cluster"]["server"]


def token_kubeconfig(node: Node, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``account`` of the namespace (a short-lived token)."""
    token = node.kubectl("create", "token", account, "-n", NS, "--duration", "2h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "node",
                "cluster": {"server": server_of(node), "certificate-authority": str(node.state / "pki" / "ca.crt")},
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "node", "user": account, "namespace": NS}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class NodePrometheus(ServerProcess):
    """Prometheus discovering pods through kubernetes_sd_configs against the node's API server."""

    name = "prometheus"

    def __init__(self, workdir: Path, server: str, ca: Path, token: str) -> None:
        super().__init__(workdir)
        (workdir / "token").write_text(token)
        (workdir / "token").chmod(0o600)
        relabel = [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "action": "keep",
                "regex": "true",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                "target_label": "__metrics_path__",
                "regex": "(.+)",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                "regex": "(.+);(.+)",
                "target_label": "__address__",
                "replacement": "$1:$2",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ]
        config = {
            "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
            "scrape_configs": [
                {
                    "job_name": "housing-pods",
                    "kubernetes_sd_configs": [
                        {
                            "role": "pod",
                            "api_server": server,
                            "namespaces": {"names": [NS]},
                            "tls_config": {"ca_file": str(ca)},
                            "authorization": {"credentials_file": str(workdir / "token")},
                        }
                    ],
                    "relabel_configs": relabel,
                    # Prometheus 3 refuses a scrape whose Content-Type it cannot tell otherwise
                    "fallback_scrape_protocol": "PrometheusText0.0.4",
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def command(self) -> list[str]:
        return [
            # Debian's prometheus is built without kubernetes SD: scripts/tools/prometheus.sh
            find_tool("prometheus-k8s", "bash scripts/tools/prometheus.sh"),
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/-/ready"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def prometheus(release: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodePrometheus]:
    """Prometheus with its own ServiceAccount (list/watch pods in the namespace, nothing else)."""
    rbac = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: prometheus, namespace: {NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: prometheus-pods, namespace: {NS}}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: prometheus-pods, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: prometheus-pods}}
subjects: [{{kind: ServiceAccount, name: prometheus, namespace: {NS}}}]
"""
    release.kubectl("apply", "-f", "-", input=rbac)
    token = release.kubectl("create", "token", "prometheus", "-n", NS, "--duration", "2h").stdout.strip()
    server = NodePrometheus(
        tmp_path_factory.mktemp("prometheus"), server_of(release), release.state / "pki" / "ca.crt", token
    )
    server.start()
    try:

        def scraped() -> bool:
            r = httpx.get(f"{server.url}/api/v1/targets", timeout=10).json()
            return sum(t["health"] == "up" for t in r["data"]["activeTargets"]) >= 2

        def targets() -> str:
            try:
                active = httpx.get(f"{server.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                return f"targets unreadable: {exc}"
            shown = [(t["labels"].get("pod"), t["scrapeUrl"], t["health"], t.get("lastError")) for t in active]
            log = server.log.read_text(errors="replace").splitlines()[-20:] if server.log.exists() else []
            return f"active targets: {shown}\n" + "\n".join(log)

        poll("Prometheus scraping both champion pods", scraped, 180, 2, targets)
        yield server
    finally:
        server.stop()


# -- traffic ---------------------------------------------------------------------------------------
class SplitTraffic:
    """V2 requests from a thread: the canary's percent to its Service (once Ready), the rest to the
    chart's endpoint Service; it stands in for the weighted route KServe v0.20 does not make. A
    canary-bound request that cannot connect (the canary's endpoints changed between two refreshes
    of the split) is sent to the endpoint Service instead, as a gateway retries a connect failure.
    Every answer's status and model_version are recorded."""

    def __init__(self, node: Node, rows: list[dict[str, Any]], interval: float = 0.03) -> None:
        self.node, self.body, self.interval = node, to_v2({"instances": rows}), interval
        self.answers: list[tuple[str, int | str, str | None]] = []  # (target, status, model_version)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._services: dict[str, str] = {}
        self._split: tuple[str | None, int] = (None, 0)
        self.rerouted = 0  # canary-bound requests that found no canary endpoint and went to the endpoint Service
        self.details: list[str] = []  # what each failed answer said, with its time and the split then

    def _cluster_ip(self, name: str) -> str | None:
        if name not in self._services:
            svc = self.node.kubectl("get", "service", name, "-n", NS, "-o", "jsonpath={.spec.clusterIP}", check=False)
            if svc.returncode != 0 or not svc.stdout.strip():
                return None
            self._services[name] = svc.stdout.strip()
        return self._services[name]

    def _refresh(self) -> None:
        obj = self.node.get("inferenceservice", ISVC, NS)
        canaries = obj["spec"].get("canary") or []
        ready = {s["name"] for s in (obj.get("status") or {}).get("canaryStatuses") or [] if s.get("ready")}
        if canaries and canaries[0]["predictor"]["name"] in ready:
            name = canaries[0]["predictor"]["name"]
            self._split = (f"{ISVC}-{name}-predictor", int(canaries[0]["trafficPercent"]))
        else:
            self._split = (None, 0)

    def _run(self) -> None:
        path = f"/v2/models/{DEFAULT_MODEL_NAME}/infer"
        refreshed = 0.0
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                if time.monotonic() - refreshed > 0.5:
                    try:
                        self._refresh()
                    except Exception:  # noqa: BLE001 - keep the last split
                        pass
                    refreshed = time.monotonic()
                canary, percent = self._split
                target = canary if canary and random.random() * 100 < percent else ENDPOINT
                ip = self._cluster_ip(target)
                if ip is None:
                    target, ip = ENDPOINT, self._cluster_ip(ENDPOINT)
                try:
                    r = client.post(f"http://{ip}:80{path}", json=self.body, headers={"Connection": "close"})
                except httpx.ConnectError:
                    if target == ENDPOINT:
                        self.answers.append((target, "ConnectError", None))
                        continue
                    # the canary's endpoints came or went between two refreshes of the split: retry
                    # on the endpoint Service, as a gateway retries a connect failure elsewhere
                    self.rerouted += 1
                    target, ip = ENDPOINT, self._cluster_ip(ENDPOINT)
                    try:
                        r = client.post(f"http://{ip}:80{path}", json=self.body, headers={"Connection": "close"})
                    except httpx.HTTPError as exc:
                        self.answers.append((target, type(exc).__name__, None))
                        continue
                except httpx.HTTPError as exc:
                    self.answers.append((target, type(exc).__name__, None))
                    continue
                finally:
                    time.sleep(self.interval)
                version = r.json().get("model_version") if r.status_code == 200 else None
                self.answers.append((target, r.status_code, version))
                if r.status_code != 200:
                    self.details.append(
                        f"{time.strftime('%H:%M:%S')} {target} ({ip}) split={self._split}: "
                        f"{dict(r.headers)} {r.text[:200]}"
                    )
                    if len(self.details) == 1:
                        snap = self.node.kubectl("get", "svc,endpointslices,pods", "-n", NS, "-o", "wide", check=False)
                        self.details.append(snap.stdout)

    def __enter__(self) -> SplitTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def failures(self) -> list[tuple[str, int | str, str | None]]:
        return [a for a in self.answers if a[1] != 200]

    def versions(self, last: int | None = None) -> Counter:
        answers = self.answers[-last:] if last else self.answers
        return Counter(v for _, _, v in answers)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    frame, features = holdout("ames")
    return records(frame[features].sample(4, random_state=7))


@pytest.fixture(scope="module")
def rollout_env(release: Node, mlflow_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """What ``housing rollout`` runs with: the rollout ServiceAccount's token, the in-cluster MLflow,
    and the in-cluster MinIO (the offline quality gate reads both bundles before a canary)."""
    home = tmp_path_factory.mktemp("rollout-home")
    kubeconfig = token_kubeconfig(release, f"{RELEASE}-rollout", home / "rollout.kubeconfig")
    creds = release.secret(NS, f"{RELEASE}-s3")
    with release.port_forward(NS, f"svc/{RELEASE}-minio", 9000) as port:
        yield {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "HOUSING_HOME": str(home),
            "MLFLOW_TRACKING_URI": mlflow_url,
            "HOUSING_PROM_SELECTOR": f'namespace="{NS}"',
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }


def housing(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "housing", "rollout", *args, "-b", "standard", "--name", ISVC, "-n", NS]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


def run_args(prometheus: NodePrometheus, *extra: str) -> list[str]:
    return [
        "run",
        "--steps",
        "50,100",
        "--interval",
        "12",
        "--min-requests",
        "20",
        "--max-failures",
        "1",
        "--prometheus-url",
        prometheus.url,
        *extra,
    ]


def version_of(bundles: dict[str, Path], name: str) -> str:
    """The bundle's model_version, read without verifying (the crash bundle fails verification)."""
    return json.loads((bundles[name] / MANIFEST).read_text())["model_version"]


def mlflow_version(url: str, version: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url).get_model_version(DEFAULT_MODEL_NAME, version)


def canary_gone(node: Node, name: str) -> bool:
    deployments = node.get("deployments", namespace=NS)["items"]
    return not [d for d in deployments if d["metadata"]["name"] == f"{ISVC}-{name}-predictor"]


# -- the tests (in order: each leaves the champion serving) ---------------------------------------------
def test_crashing_challenger_is_rolled_back_and_the_champion_answers_everything(
    release: Node, prometheus: NodePrometheus, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    version = register(mlflow_url, uri_of(bundles, "crash"))
    before = release.get("inferenceservice", ISVC, NS)["metadata"]["resourceVersion"]
    refused = housing(rollout_env, *run_args(prometheus))  # the offline gate reads the bundle first
    assert refused.returncode == 4 and "fails verification" in refused.stdout + refused.stderr, refused.stdout
    assert release.get("inferenceservice", ISVC, NS)["metadata"]["resourceVersion"] == before  # nothing deployed
    # a challenger that crashes for a reason the gate cannot see: the same bundle past the gate
    with SplitTraffic(release, rows) as traffic:
        result = housing(rollout_env, *run_args(prometheus, "--ready-timeout", "60", "--skip-quality-gate"))
        time.sleep(2)
    out = result.stdout + result.stderr
    assert result.returncode == 3, out
    assert "never became Ready" in out, out
    assert "canary" not in release.get("inferenceservice", ISVC, NS)["spec"]
    poll(
        "the crashed canary's Deployment to be deleted",
        lambda: canary_gone(release, canary_of(bundles, "crash")),
        120,
        2,
    )
    assert len(traffic.answers) > 100 and not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    assert set(traffic.versions()) == {version_of(bundles, "champion")}
    tags = mlflow_version(mlflow_url, version).tags
    assert tags[TAG_STATUS] == "rejected" and "never became Ready" in tags[TAG_REASON]


def test_shifted_challenger_is_rolled_back_by_its_gates(
    release: Node, prometheus: NodePrometheus, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    version = register(mlflow_url, uri_of(bundles, "shifted"))
    with SplitTraffic(release, rows) as traffic:  # past the offline gate (it finds +50 % worse): the online gates
        result = housing(rollout_env, *run_args(prometheus, "--allow-worse"))
        time.sleep(2)
    out = result.stdout + result.stderr
    assert result.returncode == 3, out
    assert "mean_shift=" in out, out  # the gate read the canary pods' series through Prometheus
    poll(
        "the shifted canary's Deployment to be deleted",
        lambda: canary_gone(release, canary_of(bundles, "shifted")),
        120,
        2,
    )
    assert not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    served = traffic.versions()
    assert served[version_of(bundles, "shifted")] > 0, served  # the canary did serve before the gates judged it
    assert mlflow_version(mlflow_url, version).tags[TAG_STATUS] == "rejected"


def test_good_challenger_is_promoted_with_every_gate_read_from_the_pods(
    release: Node, prometheus: NodePrometheus, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    version = register(mlflow_url, uri_of(bundles, "good"))
    good = version_of(bundles, "good")
    cmd = [sys.executable, "-m", "housing", "rollout", *run_args(prometheus), "-b", "standard", "--name", ISVC]
    with SplitTraffic(release, rows) as traffic:
        proc = subprocess.Popen(
            [*cmd, "-n", NS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=rollout_env, cwd=REPO
        )
        try:
            holder = poll(
                "the first run to hold the rollout Lease",
                lambda: release.kubectl(
                    "get", "lease", f"{ISVC}-rollout", "-n", NS, "-o", "jsonpath={.spec.holderIdentity}", check=False
                ).stdout.strip(),
                120,
                1,
            )
            second = housing(rollout_env, *run_args(prometheus), timeout=120)
            assert second.returncode == 1, second.stdout + second.stderr
            assert "another rollout" in second.stderr and holder in second.stderr, second.stderr
            shown = housing(rollout_env, "status", timeout=120)
            assert holder in shown.stdout, shown.stdout
            stdout, _ = proc.communicate(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
        result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, "")
        poll("answers from the promoted model only", lambda: set(traffic.versions(last=30)) == {good}, 120, 1)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "promoted: all steps passed" in out
    assert "challenger Ready after" in out
    log = sorted((Path(rollout_env["HOUSING_HOME"]) / "rollouts").glob("*.jsonl"))[-1]
    steps = [e for e in map(json.loads, log.read_text().splitlines()) if e.get("event") == "step"]
    for step in steps:  # every gate had data from the pods: p95 latency included (ours, per version)
        for key in ("error_rate", "p95_latency", "mean_shift", "psi"):
            assert step["values"].get(key) is not None, (key, step["values"])
    spec = release.get("inferenceservice", ISVC, NS)["spec"]
    assert spec["predictor"]["name"] == canary_of(bundles, "good") and "canary" not in spec
    assert not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    assert client.get_model_version_by_alias(DEFAULT_MODEL_NAME, ALIAS_CHAMPION).version == version


def test_start_waits_for_ready_keeps_capacity_and_promote_keeps_the_canary_pods(
    release: Node, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    register(mlflow_url, uri_of(bundles, "next"))
    nxt, good, nxt_canary = version_of(bundles, "next"), canary_of(bundles, "good"), canary_of(bundles, "next")
    pods = poll(  # the promoted Deployment settles at the stable's 2 replicas (its canary size was 2)
        "2 Ready pods of the promoted stable",
        lambda: (p := predictor_pods(release, f"{ISVC}-{good}-predictor")) and len(p) == 2 and p,
        240,
        2,
        lambda: release.diagnose(NS),
    )
    stable_before = {p["metadata"]["uid"] for p in pods}
    with SplitTraffic(release, rows) as traffic:
        t0 = time.monotonic()
        started = housing(rollout_env, "start", "--percent", "50", "--ready-timeout", "300")
        start_seconds = time.monotonic() - t0
        assert started.returncode == 0, started.stdout + started.stderr
        assert "canary Ready after" in started.stdout
        canary_pods = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{nxt_canary}-predictor")}
        assert canary_pods
        # the champion kept both pods (v0.20 alone would scale it to minReplicas − canary pods)
        stable_now = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{good}-predictor")}
        assert stable_now == stable_before
        t0 = time.monotonic()
        promoted = housing(rollout_env, "promote")
        promote_seconds = time.monotonic() - t0
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        poll("the old stable Deployment to be deleted", lambda: canary_gone(release, good), 180, 1)
        poll("answers from the promoted model only", lambda: set(traffic.versions(last=30)) == {nxt}, 120, 1)
        after = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{nxt_canary}-predictor")}
        assert canary_pods <= after  # the canary's pods became the primary without a restart
    lost = f"{len(traffic.failures)} of {len(traffic.answers)}: {traffic.failures[:10]} {traffic.details[:10]}"
    assert not traffic.failures, lost
    isvc = release.get("inferenceservice", ISVC, NS)
    assert isvc["spec"]["predictor"]["name"] == nxt_canary
    assert f"{ISVC}-{nxt_canary}-predictor" in isvc["status"]["address"]["url"]  # KServe's address moved; ours did not
    print(
        f"\nrollout start → canary Ready: {start_seconds:.1f} s; promote: {promote_seconds:.1f} s; "
        f"requests: {len(traffic.answers)}, lost: {len(traffic.failures)}"
    )


def lease_progress(node: Node, key: str) -> str:
    """One progress annotation of the rollout Lease ('' while there is none)."""
    jsonpath = "{.metadata.annotations.rollout\\.housing\\.dev/" + key + "}"
    got = node.kubectl("get", "lease", f"{ISVC}-rollout", "-n", NS, "-o", f"jsonpath={jsonpath}", check=False)
    return got.stdout.strip()


def test_a_killed_run_shows_where_it_stopped_and_the_next_run_resumes_it(
    release: Node, prometheus: NodePrometheus, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    register(mlflow_url, uri_of(bundles, "again"))
    again, stable, canary = version_of(bundles, "again"), canary_of(bundles, "next"), canary_of(bundles, "again")
    poll(
        "2 Ready pods of the promoted stable",
        lambda: len(predictor_pods(release, f"{ISVC}-{stable}-predictor")) == 2,
        240,
        2,
        lambda: release.diagnose(NS),
    )
    cmd = [sys.executable, "-m", "housing", "rollout", *run_args(prometheus), "-b", "standard", "--name", ISVC]
    with SplitTraffic(release, rows) as traffic:
        proc = subprocess.Popen(
            [*cmd, "-n", NS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=rollout_env, cwd=REPO
        )

        def second_step_or_end() -> str | None:
            if proc.poll() is not None:
                return "ended"
            at = lease_progress(release, "challenger-uri"), lease_progress(release, "weight")
            return "at 100 %" if at == (uri_of(bundles, "again"), "100") else None

        try:  # killed (no chance to clean up) once it walked on to its second step
            where = poll("the run at its second step (100 %)", second_step_or_end, 600, 1)
        finally:
            proc.kill()
            output = proc.communicate(timeout=30)[0]
        assert where == "at 100 %", f"the run ended before its second step:\n{output[-3000:]}"
        canary_pods = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{canary}-predictor")}
        assert canary_pods
        shown = housing(rollout_env, "status", timeout=120)
        assert "held by" in shown.stdout and "weight=100" in shown.stdout and "step=2/2" in shown.stdout, shown.stdout
        lease = json.loads(housing(rollout_env, "status", "--json", timeout=120).stdout)["lease"]
        assert lease["live"] and lease["progress"]["weight"] == "100" and lease["progress"]["step"] == "2/2", lease
        refused = housing(rollout_env, *run_args(prometheus), timeout=120)  # its Lease is not expired yet
        assert refused.returncode == 1 and "another rollout" in refused.stderr, refused.stdout + refused.stderr
        poll(
            "the killed run's Lease to expire",
            lambda: "expired" in housing(rollout_env, "status", timeout=120).stdout,
            150,
            5,
        )
        # the load's 8 repeated rows drift hard against the training data (PSI ≈ 5, for the champion
        # too): the drift gate's margin over the champion's score grows with it (rollout/gates.py)
        resumed = housing(rollout_env, *run_args(prometheus))
        out = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, out
        assert "taken over from an expired run" in out and "resuming" in out and "steps 100" in out, out
        assert "promoted: all steps passed" in out, out
        poll("answers from the resumed model only", lambda: set(traffic.versions(last=30)) == {again}, 120, 1)
        after = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{canary}-predictor")}
        assert canary_pods <= after  # adopted, then promoted: the same pods all along
    assert not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    assert release.get("inferenceservice", ISVC, NS)["spec"]["predictor"]["name"] == canary
