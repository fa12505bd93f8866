"""The other way users install: ``kubectl apply -k k8s/`` reaches the same Ready state.

k8s/ is generated from the chart (scripts/kind/manifests.sh) for namespace ``housing``; its S3
Secret comes from scripts/kind/k8s-credentials.sh, as the README says. The one thing a user
without a registry changes is where the MinIO image comes from, with a kustomize overlay, and
the training Job runs with ``--fast`` to keep the tier short. Runs after the helm module has
uninstalled its release (same namespace).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from common.config import DEFAULT_MODEL_NAME

from .conftest import REPO
from .node import Node, poll

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(2400)]

NS = "housing"
K8S = REPO / "k8s"
CREDENTIALS = (K8S / "s3-credentials.env", K8S / "s3-serving-credentials.env")  # MinIO's admin, serving's user


def overlay(node: Node, where: Path) -> Path:
    minio_image = next(
        doc["spec"]["template"]["spec"]["containers"][0]["image"]
        for doc in yaml.safe_load_all((K8S / "housing.yaml").read_text())
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("-minio")
    )
    name, _, tag = node.images["minio"].rpartition(":")
    where.mkdir(parents=True)
    (where / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S, where)],  # kustomize refuses absolute roots
                "images": [{"name": minio_image.rpartition(":")[0], "newName": name, "newTag": tag}],
                "patches": [
                    {
                        "target": {"kind": "Job", "name": "housing-train-install"},
                        "patch": yaml.safe_dump(
                            [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--fast"}]
                        ),
                    }
                ],
            }
        )
    )
    return where


@pytest.fixture(scope="module")
def applied(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    gone = lambda: node.kubectl("get", "namespace", NS, check=False).returncode != 0  # noqa: E731
    poll("namespace housing to be free", gone, 300, 2)
    created = [path for path in CREDENTIALS if not path.exists()]
    subprocess.run(["bash", str(REPO / "scripts/kind/k8s-credentials.sh")], check=True, capture_output=True)
    where = overlay(node, tmp_path_factory.mktemp("kustomize") / "overlay")
    try:
        node.kubectl("apply", "-k", str(where), timeout=300)
        yield node
    finally:
        node.kubectl("delete", "-k", str(where), "--wait=false", "--ignore-not-found", check=False)
        for path in created:
            path.unlink(missing_ok=True)


def test_kubectl_apply_k_reaches_ready(applied: Node) -> None:
    poll(
        "job/housing-train-install to complete",
        lambda: applied.get("job", "housing-train-install", NS).get("status", {}).get("succeeded"),
        900,
        3,
        lambda: applied.diagnose(NS),
    )
    poll(
        "InferenceService Ready",
        lambda: applied.condition(applied.get("inferenceservice", "housing", NS), "Ready") == "True",
        600,
        3,
        lambda: applied.diagnose(NS),
    )
    labels = applied.get("namespace", NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"  # KServe's injected container too
    with applied.port_forward(NS, "svc/housing-predictor", 80) as port:
        meta = httpx.get(f"http://127.0.0.1:{port}/v2/models/{DEFAULT_MODEL_NAME}", timeout=30)
    assert meta.status_code == 200 and meta.json()["name"] == DEFAULT_MODEL_NAME, meta.text
