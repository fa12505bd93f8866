"""kind's Gateway is the node tier's: traefik with the same version and flags (scripts/kind/gateway.sh).

kind cannot run here, so what `make cluster-up` applies is checked as far as it can be without it:
the manifests scripts/kind/gateway.sh prints carry scripts/gateway/traefik.sh's flags and version,
publish the chart's listener ports on the NodePorts kind-config.yaml maps to localhost, run in a
namespace the chart's NetworkPolicy admits, and a real kube-apiserver (PodSecurity ``restricted``
enforced on that namespace) accepts them without a warning.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from .conftest import REPO, TOOLS_DIR, _missing

pytestmark = pytest.mark.cluster

TRAEFIK_SH = REPO / "scripts" / "gateway" / "traefik.sh"


def bash(script: str) -> str:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, cwd=REPO).stdout


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    if not (TOOLS_DIR / "traefik-src").is_dir():
        _missing("traefik's module tree (its documented RBAC)", "bash scripts/tools/traefik.sh")
    out = subprocess.run(
        ["bash", str(REPO / "scripts/kind/gateway.sh"), "--print"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    return {d["kind"]: d for d in yaml.safe_load_all(out.stdout) if d}


def setting(name: str, script: str = "scripts/kind/lib.sh") -> str:
    return bash(f"source {script}; source {TRAEFIK_SH}; echo ${name}").strip()


def test_kind_runs_the_node_tiers_traefik_with_the_same_flags(objects):
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    flags = bash(f'source {TRAEFIK_SH}; traefik_args "" ":$TRAEFIK_METRICS_PORT"').split()
    node_flags = bash('source scripts/node/lib.sh; traefik_args "$NODE_IP" "127.0.0.1:$GATEWAY_METRICS_PORT"').split()
    assert container["args"] == flags
    # the node tier differs only in the addresses it binds
    assert [f.split("=")[0] for f in flags] == [f.split("=")[0] for f in node_flags]
    assert container["image"] == f"docker.io/library/traefik:{setting('TRAEFIK_VERSION')}"
    built = subprocess.run([str(TOOLS_DIR / "traefik"), "version"], capture_output=True, text=True).stdout
    assert setting("TRAEFIK_VERSION") in built  # the node tier's binary is that version


def test_the_chart_listeners_reach_localhost_through_kinds_node_ports(objects):
    chart = yaml.safe_load((REPO / "charts/housing/values.yaml").read_text())
    ports = {p["name"]: p for p in objects["Service"]["spec"]["ports"]}
    assert ports["web"]["port"] == chart["gateway"]["listenerPort"] == int(setting("TRAEFIK_WEB_PORT"))
    assert ports["grpc"]["port"] == chart["gateway"]["grpcListenerPort"] == int(setting("TRAEFIK_GRPC_PORT"))
    assert ports["web"]["nodePort"] == int(setting("GATEWAY_HTTP_NODEPORT"))
    assert ports["grpc"]["nodePort"] == int(setting("GATEWAY_GRPC_NODEPORT"))
    kind = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    published = {m["containerPort"]: m["hostPort"] for n in kind["nodes"] for m in n.get("extraPortMappings", [])}
    assert published[ports["web"]["nodePort"]] == 8080 and published[ports["grpc"]["nodePort"]] == 8082
    # the predictor's NetworkPolicy admits the gateway's namespace by default
    namespace = objects["Namespace"]["metadata"]["name"]
    assert namespace == setting("GATEWAY_NAMESPACE")
    assert namespace in chart["networkPolicy"]["gatewayNamespaces"]
    (subject,) = objects["ClusterRoleBinding"]["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": "traefik", "namespace": namespace}
    # KServe creates no route of its own on kind either: the chart's is the one clients use
    values = yaml.safe_load((REPO / "scripts/kind/kserve-values.yaml").read_text())
    assert values["kserve"]["controller"]["gateway"]["disableIngressCreation"] is True


def test_a_real_api_server_accepts_them_under_restricted_pod_security(objects, apiserver):
    text = yaml.safe_dump_all(list(objects.values()))
    result = subprocess.run(
        [str(TOOLS_DIR / "kubectl"), "--kubeconfig", str(apiserver.kubeconfig), "apply", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr and "would violate" not in result.stderr, result.stderr
    # and it would say so: the same Deployment with a root container is warned about
    deployment = yaml.safe_load(yaml.safe_dump(objects["Deployment"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    deployment["metadata"]["name"] = "traefik-as-root"
    result = subprocess.run(
        [str(TOOLS_DIR / "kubectl"), "--kubeconfig", str(apiserver.kubeconfig), "apply", "-f", "-"],
        input=yaml.safe_dump(deployment),
        capture_output=True,
        text=True,
    )
    assert "would violate PodSecurity" in result.stderr, result.stderr
