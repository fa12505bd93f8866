"""The real skaffold (v2.16.1, built from the Go proxy) on our skaffold.yaml: diagnose and render.

skaffold's helm deployer runs ``helm version --client``, which helm 4 refuses, so skaffold gets
helm 3 first on its PATH (scripts/tools/skaffold.sh); the Docker builder talks to podman's
Docker-compatible API, started here on a socket of our own and stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testkit.servers import TOOLS_DIR, find_tool

from .conftest import REPO, by_kind

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def skaffold_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """skaffold, helm 3 first on PATH, and DOCKER_HOST at a podman API service of this test."""
    skaffold = find_tool("skaffold", "bash scripts/tools/skaffold.sh")
    helm3 = TOOLS_DIR / "helm3" / "helm"
    if not helm3.is_file():
        find_tool("helm3/helm", "bash scripts/tools/skaffold.sh")
    podman = shutil.which("podman") or find_tool("podman", "scripts/node/deps.sh")
    work = tmp_path_factory.mktemp("skaffold")
    sock = work / "podman.sock"
    service = subprocess.Popen(
        [podman, "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "podman.log", "wb"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start: {(work / 'podman.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield {
            **os.environ,
            "PATH": f"{helm3.parent}:{Path(skaffold).parent}:{os.environ['PATH']}",
            "DOCKER_HOST": f"unix://{sock}",
            "SKAFFOLD_UPDATE_CHECK": "false",
            "SKAFFOLD_DISABLE_MONITORING": "true",
            "HOME": str(work),  # skaffold writes ~/.skaffold; keep it in the test's directory
        }
    finally:
        service.terminate()
        try:
            service.wait(15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(5)


def skaffold(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("skaffold", path=env["PATH"]) or "skaffold", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


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
    assert "Docker artifact: housing" in result.stdout
    assert "Number of artifacts: 1" in result.stdout


def test_skaffold_render_deploys_the_chart_with_the_built_tag(skaffold_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "rendered.yaml"
    result = skaffold(
        skaffold_env, "render", "-p", "node", "--digest-source=tag", "--offline=true", "--output", str(out)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    objects = [o for o in yaml.safe_load_all(out.read_text()) if o]
    (isvc,) = by_kind(objects, "InferenceService")
    image = isvc["spec"]["predictor"]["containers"][0]["image"]
    assert image.startswith("housing:") and image != "housing:latest", image  # skaffold's inputDigest tag
    assert isvc["metadata"]["namespace"] == "housing"
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert "housing-inference" in names  # the port-forward target of skaffold.yaml
