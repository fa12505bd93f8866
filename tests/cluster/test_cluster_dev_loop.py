"""skaffold.yaml and kind-config.yaml: parsed, and everything they name exists and agrees."""

from __future__ import annotations

import re

import pytest
import yaml

from .conftest import CHART, RELEASE, REPO, by_kind

pytestmark = pytest.mark.cluster

SKAFFOLD = REPO / "skaffold.yaml"
KIND = REPO / "kind-config.yaml"
CLUSTER_UP = REPO / "scripts/kind/cluster-up.sh"
LIB = REPO / "scripts/kind/lib.sh"


def _skaffold() -> dict:
    return yaml.safe_load(SKAFFOLD.read_text())


def _kind() -> dict:
    return yaml.safe_load(KIND.read_text())


def test_skaffold_schema_and_build():
    """Two artifacts, the Dockerfile's serving and training targets, named as the chart's defaults."""
    sk = _skaffold()
    assert sk["apiVersion"] == "skaffold/v4beta13"
    assert sk["kind"] == "Config"
    assert sk["build"]["local"]["push"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    serving, training = sk["build"]["artifacts"]
    assert serving["image"] == values["image"]["repository"]
    assert training["image"] == values["training"]["image"]["repository"]
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (REPO / "Dockerfile").read_text(), re.M))
    for artifact, target in ((serving, "serving"), (training, "training")):
        assert (REPO / artifact.get("context", ".")).is_dir()
        assert artifact["docker"] == {"dockerfile": "Dockerfile", "target": target}
        assert target in stages


def test_skaffold_helm_release_matches_chart(render):
    sk = _skaffold()
    assert sk["deploy"]["kubeContext"] == f"kind-{_kind()['name']}"
    (release,) = sk["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"]).resolve() == CHART.resolve()
    assert release["name"] == RELEASE
    serving, training = (a["image"].replace("-", "_") for a in _skaffold()["build"]["artifacts"])
    assert release["setValueTemplates"]["image.repository"] == f"{{{{.IMAGE_REPO_{serving}}}}}"
    assert release["setValueTemplates"]["image.tag"] == f"{{{{.IMAGE_TAG_{serving}}}}}"
    assert release["setValueTemplates"]["training.image.repository"] == f"{{{{.IMAGE_REPO_{training}}}}}"
    assert release["setValueTemplates"]["training.image.tag"] == f"{{{{.IMAGE_TAG_{training}}}}}"
    sets = [f"{k}={v}" for k, v in release.get("setValues", {}).items()]
    objects = render(sets)  # the values skaffold passes are accepted by the schema
    assert by_kind(objects, "InferenceService")


def test_skaffold_port_forwards_name_rendered_objects(render):
    sk = _skaffold()
    (release,) = sk["deploy"]["helm"]["releases"]
    objects = render([f"{k}={v}" for k, v in release.get("setValues", {}).items()])
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    isvc = by_kind(objects, "InferenceService")[0]
    forwards = sk["portForward"]
    predictor = forwards[0]
    # the chart's endpoint Service over the InferenceService's predictor pods (KServe's own Service
    # is named after spec.predictor.name, which a canary promotion changes)
    endpoint = services[predictor["resourceName"]]
    assert endpoint["spec"]["selector"]["serving.kserve.io/inferenceservice"] == isvc["metadata"]["name"]
    http = [p for p in endpoint["spec"]["ports"] if p["port"] == predictor["port"]]
    assert http and http[0]["targetPort"] == "http1"
    for forward in forwards:
        assert forward["resourceType"] == "service"
        service = services[forward["resourceName"]]
        assert forward["port"] in [p["port"] for p in service["spec"]["ports"]]
        assert forward["namespace"] == release["namespace"]
    local_ports = [f["localPort"] for f in forwards]
    assert len(set(local_ports)) == len(local_ports)
    host_ports = {m["hostPort"] for node in _kind()["nodes"] for m in node.get("extraPortMappings", [])}
    assert not host_ports & set(local_ports), "a port-forward collides with a kind host port"


def test_skaffold_profiles_switch_kserve_mode(render):
    sk = _skaffold()
    profiles = {p["name"]: p for p in sk["profiles"]}
    assert set(profiles) == {"standard", "serverless", "node"}  # node: the single-node tier (podman, no kind)
    (patch,) = [p for p in profiles["serverless"]["patches"] if p["path"].endswith("kserve.deploymentMode")]
    assert patch["op"] == "replace" and patch["value"] == "Knative"
    key = patch["path"].split("/setValues/")[1]
    assert key in sk["deploy"]["helm"]["releases"][0]["setValues"]
    isvc = by_kind(render([f"{key}={patch['value']}"]), "InferenceService")[0]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"


def test_kind_config_maps_gateway_node_ports():
    kind = _kind()
    assert kind["kind"] == "Cluster" and kind["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    mappings = [m for node in kind["nodes"] for m in node.get("extraPortMappings", [])]
    container_ports = {m["containerPort"] for m in mappings}
    lib = LIB.read_text()
    for var in ("GATEWAY_HTTP_NODEPORT", "GATEWAY_GRPC_NODEPORT", "KOURIER_HTTP_NODEPORT"):
        line = next(ln for ln in lib.splitlines() if ln.startswith(f"{var}="))
        assert int(line.split("=")[1].split()[0]) in container_ports, f"{var} not published by kind-config.yaml"
    assert all(30000 <= p <= 32767 for p in container_ports)
    assert all(m.get("listenAddress") == "127.0.0.1" for m in mappings)
    script = CLUSTER_UP.read_text()
    assert "${KIND_CONFIG}" in script and 'KIND_CONFIG="${REPO_ROOT}/kind-config.yaml"' in lib
    assert f'CLUSTER_NAME="${{HOUSING_KIND_CLUSTER:-{kind["name"]}}}"' in lib


def test_cluster_up_pins_versions():
    lib = LIB.read_text()
    for var in ("CERT_MANAGER_VERSION", "GATEWAY_API_VERSION", "KSERVE_VERSION", "KNATIVE_VERSION"):
        line = next(ln for ln in lib.splitlines() if ln.startswith(f"{var}="))
        assert ":-v" in line or ":-knative-v" in line, line
    assert 'KSERVE_VERSION="${KSERVE_VERSION:-v0.21.0}"' in lib
    script = CLUSTER_UP.read_text()
    assert "oci://ghcr.io/kserve/charts/kserve-crd" in script
    assert "oci://ghcr.io/kserve/charts/kserve " in script
    assert "kserve-values.yaml" in script  # the values the node tier installs KServe with, too
    kserve_values = yaml.safe_load((LIB.parent / "kserve-values.yaml").read_text())["kserve"]
    assert kserve_values["controller"]["gateway"]["ingressGateway"]["kserveGateway"] == "kserve/kserve-ingress-gateway"
    assert kserve_values["storage"]["containerSecurityContext"]["allowPrivilegeEscalation"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["kserve"]["gateway"] == "kserve/kserve-ingress-gateway"


def test_e2e_skips_cleanly_without_docker_or_kind(tmp_path):
    import os
    import subprocess

    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)}  # no docker, no kind
    result = subprocess.run(
        ["bash", str(REPO / "scripts/kind/e2e.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "SKIPPED" in result.stderr and "docker" in result.stderr
    required = subprocess.run(
        ["bash", str(REPO / "scripts/kind/e2e.sh")],
        capture_output=True,
        text=True,
        env={**env, "HOUSING_E2E_REQUIRED": "1"},
        timeout=60,
    )
    assert required.returncode != 0
    up = subprocess.run(["bash", str(CLUSTER_UP)], capture_output=True, text=True, env=env, timeout=60)
    assert up.returncode != 0 and "docker" in up.stderr
    assert os.access(REPO / "scripts/kind/e2e.sh", os.X_OK)
