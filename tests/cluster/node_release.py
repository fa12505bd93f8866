"""What the node tier's release tests share: one install-and-wait of the chart (and its clean-up),
bundles in the in-cluster MinIO, the rollout's credentials and command, a Prometheus that discovers
the pods (and scrapes the gateway), and request streams — through the Gateway (traefik), where the
cluster splits the traffic, never the client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from bundle.manifest import MANIFEST
from common.config import DEFAULT_BUCKET, DEFAULT_MODEL_NAME
from predictor.client.cli import to_v2
from rollout.backends.gateway_route import VARIANT_HEADER, VARIANT_VALUE
from testkit.bundles import derive_bundle
from testkit.procs import train_bundle
from testkit.servers import ServerProcess, find_tool

from .conftest import CHART, REPO
from .node import InThread, Node, poll

V2_PATH = f"/v2/models/{DEFAULT_MODEL_NAME}/infer"


def set_args(*sets: str) -> list[str]:
    """``--set`` before each of ``sets``."""
    return [a for item in sets for a in ("--set", item)]


def isvc_ready(node: Node, namespace: str, name: str) -> bool:
    """The InferenceService ``name`` reports Ready."""
    return node.condition(node.get("inferenceservice", name, namespace), "Ready") == "True"


def serving_sets(node: Node, namespace: str, storage_uri: str, *extra: str, mlflow: bool = False) -> list[str]:
    """``--set`` arguments of a release serving ``storage_uri`` with no training: MinIO from the node's
    image, MLflow only when ``mlflow``, readiness probed every 2 s, the chart's Gateway and routes
    (a GatewayClass named after ``namespace``: GatewayClasses are cluster-wide), then ``extra``."""
    sets = [
        f"devStack.minio.image={node.images['minio']}",
        *([] if mlflow else ["devStack.mlflow.enabled=false"]),
        "training.enabled=false",
        f"predictor.storageUri={storage_uri}",
        "predictor.readinessProbe.periodSeconds=2",
        "gateway.enabled=true",
        f"gateway.className={namespace}",
        *extra,
    ]
    return set_args(*sets)


@contextmanager
def installed(
    node: Node,
    namespace: str,
    release: str,
    args: list[str],
    *,
    then: Callable[[], object] | None = None,
    ready: Callable[[], object] | None = None,
    ready_what: str = "the InferenceService Ready",
) -> Iterator[Node]:
    """``helm install`` of the chart as ``release`` into a new restricted ``namespace`` with ``args``;
    ``then`` runs once installed (uploads, a training Job awaited), and the release is yielded once
    ``ready`` holds (default: the InferenceService named like the release is Ready; 10 min at most).
    Uninstalled and its namespace deleted afterwards, also on failure."""
    node.restricted_namespace(namespace)
    node.helm("install", release, str(CHART), "-n", namespace, *args, "--timeout", "10m")
    try:
        if then is not None:
            then()
        poll(
            ready_what,
            ready or (lambda: isvc_ready(node, namespace, release)),
            600,
            3,
            lambda: node.diagnose(namespace),
        )
        yield node
    finally:
        node.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "3m", check=False)
        node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def champion_and_derived(tmp_path_factory: Any, dirname: str, shifts: dict[str, float], tag: str) -> dict[str, Path]:
    """The champion (trained here, linear, on ames) and a bundle derived from it for each name in
    ``shifts`` (its predictions moved by that share), each its own version ``<name>-<tag>``."""
    root = tmp_path_factory.mktemp(dirname)
    champion = train_bundle(tmp_path_factory.getbasetemp(), "ames", "linear")
    out = {"champion": champion}
    for name, shift in shifts.items():
        out[name] = derive_bundle(champion, root / name, relative_shift=shift, version=f"{name}-{tag}")
    return out


def rollout_home_env(node: Node, namespace: str, release: str, home: Path) -> dict[str, str]:
    """What ``housing rollout`` runs with as the chart's rollout ServiceAccount (a token kubeconfig in
    ``home``), Prometheus queries kept to ``namespace``, moving the chart's routes."""
    kubeconfig = token_kubeconfig(node, namespace, f"{release}-rollout", home / "rollout.kubeconfig")
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HOUSING_HOME": str(home),
        "HOUSING_PROM_SELECTOR": f'namespace="{namespace}"',
        "HOUSING_ROUTE": release,  # the chart's HTTPRoute/GRPCRoute (gateway.enabled): the rollout moves them
    }


def rollout_command(
    env: dict[str, str], isvc: str, namespace: str, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """``housing rollout <args> -b standard`` against InferenceService ``isvc``, as a user runs it."""
    cmd = [sys.executable, "-m", "housing", "rollout", *args, "-b", "standard", "--name", isvc, "-n", namespace]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


def grpc_infer_request(rows: list[dict[str, Any]]) -> Any:
    """A V2 gRPC ModelInferRequest of ``rows`` (strings as BYTES, numbers as FP64)."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    req = pb.ModelInferRequest(model_name=DEFAULT_MODEL_NAME, id="gateway")
    for name, value in rows[0].items():
        add_column(req, name, rows, as_bytes=isinstance(value, str))
    return req


def add_column(req: Any, name: str, rows: list[dict[str, Any]], as_bytes: bool) -> None:
    """Column ``name`` of ``rows`` as an input tensor of the ModelInferRequest ``req``: BYTES (each value as
    text) or FP64 (None as NaN)."""
    if as_bytes:
        t = req.inputs.add(name=name, datatype="BYTES", shape=[len(rows)])
        t.contents.bytes_contents.extend(str(r[name]).encode() for r in rows)
    else:
        t = req.inputs.add(name=name, datatype="FP64", shape=[len(rows)])
        t.contents.fp64_contents.extend(float("nan") if r[name] is None else float(r[name]) for r in rows)


def version_of(bundles: dict[str, Path], name: str) -> str:
    """The bundle's model_version, read without verifying (a tampered bundle fails verification)."""
    return json.loads((bundles[name] / MANIFEST).read_text())["model_version"]


def uri_of(bundles: dict[str, Path], name: str) -> str:
    """Where bundle ``name`` lives: <bucket>/housing/<its model_version>, the layout training writes
    (the KServe backends read a version from the last path segment, as the predictors label it)."""
    return f"s3://{DEFAULT_BUCKET}/{DEFAULT_MODEL_NAME}/{version_of(bundles, name)}"


def upload(node: Node, namespace: str, release: str, bundles: dict[str, Path], names: list[str]) -> None:
    """Copy bundles into the in-cluster MinIO under models/housing/<version>/ (the bucket may still be coming)."""
    poll(
        "the in-cluster MinIO pod Ready",
        lambda: node.ready_pods(namespace, "app.kubernetes.io/component=minio"),
        600,
        3,
        lambda: node.diagnose(namespace),
    )
    with node.port_forward(namespace, f"svc/{release}-minio", 9000) as port:
        s3 = node.s3_client(namespace, f"{release}-s3", port)

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


def server_of(node: Node) -> str:
    config = yaml.safe_load(node.kubeconfig.read_text())
    return config["clusters"][0]["cluster"]["server"]


def token_kubeconfig(node: Node, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``account`` of the namespace (a short-lived token)."""
    token = node.kubectl("create", "token", account, "-n", namespace, "--duration", "2h").stdout.strip()
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
        "contexts": [{"name": account, "context": {"cluster": "node", "user": account, "namespace": namespace}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class NodePrometheus(ServerProcess):
    """Prometheus discovering pods through kubernetes_sd_configs against the node's API server, and
    scraping the gateway (traefik on the host) as a static target."""

    name = "prometheus"

    def __init__(self, workdir: Path, node: Node, namespace: str, token: str) -> None:
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
                            "api_server": server_of(node),
                            "namespaces": {"names": [namespace]},
                            "tls_config": {"ca_file": str(node.state / "pki" / "ca.crt")},
                            "authorization": {"credentials_file": str(workdir / "token")},
                        }
                    ],
                    "relabel_configs": relabel,
                    # Prometheus 3 refuses a scrape whose Content-Type it cannot tell otherwise
                    "fallback_scrape_protocol": "PrometheusText0.0.4",
                },
                {"job_name": "gateway", "static_configs": [{"targets": [node.gateway_metrics]}]},
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


def prometheus_token(node: Node, namespace: str) -> str:
    """A token of a ServiceAccount ``prometheus`` that may get/list/watch pods in ``namespace``, nothing else."""
    rbac = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: prometheus, namespace: {namespace}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: prometheus-pods, namespace: {namespace}}}
rules: [{{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: prometheus-pods, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: prometheus-pods}}
subjects: [{{kind: ServiceAccount, name: prometheus, namespace: {namespace}}}]
"""
    node.kubectl("apply", "-f", "-", input=rbac)
    token = node.kubectl("create", "token", "prometheus", "-n", namespace, "--duration", "2h").stdout.strip()
    return token


@contextmanager
def node_prometheus(node: Node, namespace: str, workdir: Path, pods: int = 2) -> Iterator[NodePrometheus]:
    """Prometheus with its own ServiceAccount (list/watch pods in the namespace, nothing else),
    scraping ``pods`` predictor pods and the gateway."""
    token = prometheus_token(node, namespace)
    server = NodePrometheus(workdir, node, namespace, token)
    server.start()
    try:

        def active() -> list[dict[str, Any]]:
            return httpx.get(f"{server.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]

        def scraped() -> bool:
            targets = active()
            up = [t for t in targets if t["health"] == "up"]
            return len([t for t in up if t["labels"].get("job") == "housing-pods"]) >= pods and any(
                t["labels"].get("job") == "gateway" for t in up
            )

        def targets() -> str:
            try:
                shown = [(t["labels"].get("pod"), t["scrapeUrl"], t["health"], t.get("lastError")) for t in active()]
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                return f"targets unreadable: {exc}"
            log = server.log.read_text(errors="replace").splitlines()[-20:] if server.log.exists() else []
            return f"active targets: {shown}\n" + "\n".join(log)

        poll(f"Prometheus scraping {pods} predictor pods and the gateway", scraped, 180, 2, targets)
        yield server
    finally:
        server.stop()


class Traffic(InThread):
    """V2 requests to ``url`` from a thread, counting every answer's status and model_version (and
    what each failed one said); the client only sends."""

    def __init__(
        self, url: str, rows: list[dict[str, Any]], headers: dict[str, str] | None = None, interval: float = 0.03
    ) -> None:
        self.url = url
        self.body = to_v2({"instances": rows})
        self.headers = headers or {}
        self.interval = interval
        self.answers: list[tuple[int | str, str | None]] = []  # (status or exception name, model_version)
        self.details: list[str] = []  # what each failed answer said, with its time
        super().__init__()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(self.url, json=self.body, headers=self.headers)
                except httpx.HTTPError as exc:
                    self.answers.append((type(exc).__name__, None))
                    self.details.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
                else:
                    version = r.json().get("model_version") if r.status_code == 200 else None
                    self.answers.append((r.status_code, version))
                    if r.status_code != 200:
                        self.details.append(f"{time.strftime('%H:%M:%S')} {r.status_code} {r.text[:200]}")
                time.sleep(self.interval)

    @property
    def failures(self) -> list[tuple[int | str, str | None]]:
        return [a for a in self.answers if a[0] != 200]

    def versions(self, last: int | None = None) -> Counter:
        answers = self.answers[-last:] if last else self.answers
        return Counter(v for _, v in answers)


class GatewayTraffic(Traffic):
    """V2 requests through the Gateway; the weights are the route's. ``challenger`` sets the header
    that sends a request to the canary."""

    def __init__(
        self, node: Node, rows: list[dict[str, Any]], interval: float = 0.03, challenger: bool = False
    ) -> None:
        headers = {VARIANT_HEADER: VARIANT_VALUE} if challenger else {}
        super().__init__(f"http://{node.gateway}{V2_PATH}", rows, headers, interval)
