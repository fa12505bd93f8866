"""The guarded chart on a real node: network policies, the API-key Secret mount, admitted.

A second release (training off, so nothing waits on a Job) with every guard value set is
installed into its own ``restricted`` namespace: the NetworkPolicies must exist as rendered, the
InferenceService must pass KServe's validating webhook with the Secret volume, and KServe's
controller must turn it into a Deployment whose pods PodSecurity admits. Whether the policies
are *enforced* depends on the CNI (the node tier's bridge plugin does not enforce them); what
is checked here is that the API server and KServe accept them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from .conftest import CHART
from .node import Node, poll

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(1200)]

NS = "housing-guard"
RELEASE = "guard"
FULLNAME = f"{RELEASE}-housing"
SECRET = "housing-api-keys"
ISVC_SELECTOR = f"serving.kserve.io/inferenceservice={FULLNAME}"
GUARD_VALUES = [
    "training.enabled=false",
    "networkPolicy.enabled=true",
    f"auth.existingSecret={SECRET}",
    "rateLimit.requestsPerSecond=100",
    "rateLimit.burst=200",
    "predictor.waitForBundleSeconds=0",
]


@pytest.fixture(scope="module")
def guarded(node: Node) -> Iterator[Node]:
    node.restricted_namespace(NS)
    node.kubectl("create", "secret", "generic", SECRET, "-n", NS, "--from-literal=api-keys=node-tier-key")
    args = ["--set", f"devStack.minio.image={node.images['minio']}"]
    for item in GUARD_VALUES:
        args += ["--set", item]
    try:
        node.helm("install", RELEASE, str(CHART), "-n", NS, *args, "--timeout", "5m")
        yield node
    finally:
        node.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "3m", check=False)
        node.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def _rendered(node: Node) -> list[dict]:
    manifest = node.helm("get", "manifest", RELEASE, "-n", NS).stdout
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def test_network_policies_are_admitted_as_rendered(guarded: Node) -> None:
    rendered = {o["metadata"]["name"]: o["spec"] for o in _rendered(guarded) if o["kind"] == "NetworkPolicy"}
    assert {f"{FULLNAME}-default-deny", f"{FULLNAME}-predictor", f"{FULLNAME}-minio", f"{FULLNAME}-mlflow"} <= set(
        rendered
    )
    live = {p["metadata"]["name"]: p["spec"] for p in guarded.get("networkpolicy", namespace=NS)["items"]}
    assert set(live) == set(rendered)
    for name, spec in rendered.items():
        assert live[name]["podSelector"] == spec["podSelector"], name
        assert live[name]["policyTypes"] == spec["policyTypes"], name
        assert len(live[name].get("ingress", [])) == len(spec.get("ingress", [])), name


def test_inferenceservice_with_the_key_secret_is_admitted_and_deployed(guarded: Node) -> None:
    isvc = guarded.get("inferenceservice", FULLNAME, NS)
    predictor = isvc["spec"]["predictor"]
    assert any(v.get("secret", {}).get("secretName") == SECRET for v in predictor["volumes"])
    args = predictor["containers"][0]["args"]
    assert "--api_keys_file" in args and "--rate_limit" in args

    def deployment() -> dict | None:
        items = guarded.get("deployment", namespace=NS, selector=ISVC_SELECTOR)["items"]
        return items[0] if items else None

    dep = poll("the predictor Deployment", deployment, timeout=300, interval=3, explain=lambda: guarded.diagnose(NS))
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("secret", {}).get("secretName") == SECRET for v in volumes)

    def pods() -> list[dict]:
        return guarded.get("pods", namespace=NS, selector=ISVC_SELECTOR)["items"]

    # a pod object exists: PodSecurity (restricted) admitted the guarded predictor pod
    poll("a predictor pod admitted", pods, timeout=300, interval=3, explain=lambda: guarded.diagnose(NS))
