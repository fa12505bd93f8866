"""The real skaffold (v2.16.1, built from the Go proxy) on our skaffold.yaml: diagnose and render.

skaffold's helm deployer runs ``helm version --client``, which helm 4 refuses, so skaffold gets
helm 3 first on its PATH (scripts/tools/skaffold.sh); the Docker builder talks to podman's
Docker-compatible API, started here on a socket of our own and stopped afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testkit.servers import TOOLS_DIR

from .conftest import REPO, by_kind
from .skaffold_env import skaffold, skaffold_environment

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def skaffold_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """skaffold, helm 3 first on PATH, and DOCKER_HOST at a podman API service of this test."""
    with skaffold_environment(tmp_path_factory.mktemp("skaffold")) as env:
        yield env


def test_helm4_is_refused_by_skaffold_and_helm3_is_first_on_its_path(skaffold_env: dict[str, str]) -> None:
    """Why helm 3: skaffold asks `helm version --client`; helm 4 dropped that flag."""
    helm3 = shutil.which("helm", path=skaffold_env["PATH"])
    assert helm3 and Path(helm3).parent.name == "helm3"
    v3 = subprocess.run([helm3, "version", "--client", "--short"], capture_output=True, text=True, timeout=60)
    assert v3.returncode == 0 and v3.stdout.startswith("v3."), v3.stdout + v3.stderr
    helm4 = TOOLS_DIR / "helm"
    if helm4.is_file():
        v4 = subprocess.run([str(helm4), "version", "--client"], capture_output=True, text=True, timeout=60)
        assert v4.returncode != 0 and "unknown flag: --client" in v4.stderr


def test_skaffold_diagnose_reads_our_config_through_podman(skaffold_env: dict[str, str]) -> None:
    result = skaffold(skaffold_env, "diagnose", "-p", "node")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration version: skaffold/v4beta13" in result.stdout
    assert "Custom artifact: housing-serving" in result.stdout  # scripts/images/skaffold-build.sh serving
    assert "Custom artifact: housing-training" in result.stdout
    assert "Number of artifacts: 2" in result.stdout
    # what each watches: the files its Dockerfile target COPYs, predictor/ in both (a source change
    # rebuilds); training's code only in the training image, the serving pins only in the serving one
    files = {}
    for target in ("serving", "training"):
        deps = subprocess.run(
            ["bash", "scripts/images/skaffold-build.sh", "--deps", target],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        )
        files[target] = json.loads(deps.stdout)
        assert "predictor/transport/rest_middleware.py" in files[target] and "Dockerfile" in files[target]
        assert not any(f.startswith("tests/") for f in files[target])
        assert f"Dependencies: {len(files[target])} files" in result.stdout
    assert "requirements/serving.txt" in files["serving"] and "requirements/serving.txt" not in files["training"]
    assert any(f.startswith("training/") for f in files["training"])
    assert not any(f.startswith(("training/", "rollout/")) for f in files["serving"])


def test_skaffold_render_deploys_the_chart_with_the_built_tag(skaffold_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "rendered.yaml"
    result = skaffold(
        skaffold_env, "render", "-p", "node", "--digest-source=tag", "--offline=true", "--output", str(out)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    objects = [o for o in yaml.safe_load_all(out.read_text()) if o]
    (isvc,) = by_kind(objects, "InferenceService")
    image = isvc["spec"]["predictor"]["containers"][0]["image"]
    assert image.startswith("housing-serving:") and image != "housing-serving:latest", image  # inputDigest tag
    (job,) = [j for j in by_kind(objects, "Job") if "-train-" in j["metadata"]["name"]]
    training = job["spec"]["template"]["spec"]["containers"][0]["image"]
    assert training.startswith("housing-training:") and training != "housing-training:latest", training
    assert isvc["metadata"]["namespace"] == "housing"
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert "housing-inference" in names  # the port-forward target of skaffold.yaml


@pytest.mark.parametrize(("profile", "routes"), [("standard", {"HTTPRoute", "GRPCRoute"}), ("serverless", set())])
def test_skaffold_on_kind_deploys_the_charts_gateway_routes_in_standard_mode(
    skaffold_env: dict[str, str], tmp_path: Path, profile: str, routes: set[str]
) -> None:
    """kind's KServe creates no route of its own (disableIngressCreation): the chart's routes, served
    by traefik (scripts/kind/gateway.sh), are how requests reach the predictor; Knative keeps Kourier."""
    out = tmp_path / "rendered.yaml"
    result = skaffold(
        skaffold_env, "render", "-p", profile, "--digest-source=tag", "--offline=true", "--output", str(out)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {o["kind"] for o in yaml.safe_load_all(out.read_text()) if o}
    assert kinds & {"HTTPRoute", "GRPCRoute"} == routes, kinds
