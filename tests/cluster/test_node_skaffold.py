"""The skaffold loop users run on kind, run on the node: ``skaffold run`` builds the two images
(the Dockerfile's serving and training targets, by the podman CLI: scripts/images/skaffold-build.sh),
pushes them to the node's loopback registry, deploys the chart and the InferenceService turns Ready
on the serving image; then ``skaffold dev`` sees a source change under ``predictor/``, rebuilds,
redeploys, and the new pod answers with the changed code.

skaffold works in a copy of the repository's tracked files, so the source change never touches
the checkout. The image build shares podman's layer cache with scripts/images/build.sh (the same
Dockerfile, base and build settings), so only the layers after ``COPY predictor`` are rebuilt.
The training image copies ``predictor/`` too (``housing serve``, the MLflow pyfunc), so it is
rebuilt and pushed as well.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from common.config import DEFAULT_MODEL_NAME
from testkit.procs import stop_process

from .conftest import REPO, _missing
from .node import Node, poll
from .skaffold_env import skaffold, skaffold_environment

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.node,
    pytest.mark.timeout(3000),
]

CONFIG = yaml.safe_load((REPO / "skaffold.yaml").read_text())
RELEASE = CONFIG["deploy"]["helm"]["releases"][0]
NS, NAME = RELEASE["namespace"], RELEASE["name"]
ENDPOINT = f"{NAME}-inference"  # the chart's Service, what skaffold.yaml port-forwards
#: what the predictor answers a request naming a model version (predictor/transport/rest_middleware.py)
OLD_TEXT = "omit the version"
NEW_TEXT = "omit the version (changed under skaffold dev)"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's tracked files for skaffold to build and watch."""
    dst = tmp_path_factory.mktemp("skaffold-src") / "housing"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    assert OLD_TEXT in (dst / "predictor/transport/rest_middleware.py").read_text()
    return dst


@pytest.fixture(scope="module")
def env(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """skaffold's environment against the node: its kubeconfig, its registry, its MinIO image."""
    if not node.registry:
        _missing("the node's registry (scripts/tools/registry.sh)", "bash scripts/tools/registry.sh")
    with skaffold_environment(tmp_path_factory.mktemp("skaffold-node")) as base:
        yield {**base, "KUBECONFIG": str(node.kubeconfig), "HOUSING_MINIO_IMAGE": node.images["minio"]}


@pytest.fixture(scope="module")
def namespace(node: Node) -> Iterator[str]:
    """skaffold.yaml's namespace, restricted, once an earlier module's release has left it."""
    poll("namespace housing to be free", lambda: node.kubectl("get", "ns", NS, check=False).returncode != 0, 300, 2)
    node.restricted_namespace(NS)
    try:
        yield NS
    finally:
        node.helm("uninstall", NAME, "-n", NS, "--wait", "--timeout", "3m", check=False)
        node.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def flags(node: Node) -> list[str]:
    return ["-p", "node", "--default-repo", str(node.registry), "--insecure-registry", str(node.registry)]


def predictor_image(node: Node) -> str:
    isvc = node.get("inferenceservice", NAME, NS)
    return isvc["spec"]["predictor"]["containers"][0]["image"]


def versioned_answer(node: Node) -> tuple[int, str]:
    """A V2 request naming a model version, through the chart's Service: (status, error text)."""
    ip = node.kubectl("get", "service", ENDPOINT, "-n", NS, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    url = f"http://{ip}:80/v2/models/{DEFAULT_MODEL_NAME}/versions/9/infer"
    r = httpx.post(url, json={"inputs": []}, timeout=10)
    is_json = r.headers.get("content-type", "").startswith("application/json")
    return r.status_code, r.json().get("error", "") if is_json else r.text


def ready_on(node: Node, image: str) -> Any:
    """The InferenceService Ready, and every Ready predictor pod running ``image``."""
    isvc = node.get("inferenceservice", NAME, NS)
    if node.condition(isvc, "Ready") != "True":
        return None
    pods = node.ready_pods(NS, f"serving.kserve.io/inferenceservice={NAME},component=predictor")
    images = {c["image"] for p in pods for c in p["spec"]["containers"]}
    return pods if pods and images == {image} else None


def test_skaffold_run_then_dev_rebuilds_and_redeploys_a_source_change(
    node: Node, env: dict[str, str], namespace: str, source: Path, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    run = skaffold(env, "run", *flags(node), "--status-check=true", cwd=source, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    first = predictor_image(node)
    assert first.startswith(f"{node.registry}/housing-serving:"), first  # built here, pushed, pulled by containerd
    poll(
        "the InferenceService Ready on the pushed image",
        lambda: ready_on(node, first),
        900,
        3,
        lambda: node.diagnose(NS),
    )
    run_seconds = time.monotonic() - t0
    # Ready pods reach the Service's endpoints a moment later (kube-proxy): ask until it answers
    status, text = poll("the chart's Service to answer", lambda: answer_or_none(node), 120, 2)
    assert status == 400 and OLD_TEXT in text and NEW_TEXT not in text, (status, text)
    # a new skaffold session labels every pod template with its run id, which restarts the dev
    # stack's MinIO and loses its emptyDir data (the bundle): start the dev loop from a clean slate
    deleted = skaffold(env, "delete", "-p", "node", cwd=source, timeout=600)
    assert deleted.returncode == 0, deleted.stdout[-2000:] + deleted.stderr[-2000:]
    poll(
        "the InferenceService to be gone",
        lambda: node.kubectl("get", "inferenceservice", NAME, "-n", NS, check=False).returncode != 0,
        300,
        3,
    )

    log = tmp_path / "dev.log"
    with open(log, "wb") as out:
        dev = subprocess.Popen(
            [shutil.which("skaffold", path=env["PATH"]) or "skaffold", "dev", *flags(node)]
            + ["--port-forward=off", "--cleanup=false", "--trigger=polling", "--watch-poll-interval=1000"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=source,
            start_new_session=True,
        )
    try:
        poll(
            "skaffold dev to deploy and watch",
            lambda: b"Watching for changes" in log.read_bytes(),
            1200,
            2,
            lambda: log.read_text(errors="replace")[-3000:],
        )
        assert dev.poll() is None, log.read_text(errors="replace")[-3000:]
        assert predictor_image(node) == first  # the same sources: skaffold found the image it pushed
        poll("the dev deployment Ready", lambda: ready_on(node, first), 900, 3, lambda: node.diagnose(NS))
        poll("the chart's Service to answer", lambda: OLD_TEXT in answer_text(node), 120, 2)
        t1 = time.monotonic()
        rest = source / "predictor/transport/rest_middleware.py"
        rest.write_text(rest.read_text().replace(OLD_TEXT, NEW_TEXT))
        poll(
            "the redeployed predictor to answer with the changed source",
            lambda: NEW_TEXT in answer_text(node),
            1200,
            3,
            lambda: log.read_text(errors="replace")[-3000:] + node.diagnose(NS),
        )
        dev_seconds = time.monotonic() - t1
        second = predictor_image(node)
        assert second != first and second.startswith(f"{node.registry}/housing-serving:"), (first, second)
        poll("every predictor pod on the rebuilt image", lambda: ready_on(node, second), 600, 3)
    finally:
        stop_process(dev, 60, signal.SIGINT)  # SIGINT: skaffold's own shutdown
    print(
        f"\nskaffold run → InferenceService Ready: {run_seconds:.0f} s; "
        f"source change → new pod answers: {dev_seconds:.0f} s"
    )


def answer_or_none(node: Node) -> tuple[int, str] | None:
    try:
        return versioned_answer(node)
    except Exception:  # noqa: BLE001 - no Service or no endpoint yet: not answered yet
        return None


def answer_text(node: Node) -> str:
    """The versioned request's error text, or '' while nothing answers."""
    answered = answer_or_none(node)
    return answered[1] if answered else ""
