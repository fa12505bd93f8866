"""Continuous delivery on a real node: training only when asked, the rollout runner in the cluster.

One release (dev stack: MinIO, MLflow; ``training.args`` --fast) in a restricted namespace:

- install trains once (the Job ``<release>-train-install``); a config-only ``helm upgrade`` creates
  no training Job; two runs made from the CronJob at the same time each register a challenger
  under its own destination;
- the rollout runner (``rollout.auto.enabled``: a Deployment running ``housing rollout auto`` as the
  rollout ServiceAccount) picks the challenger up, canaries it, promotes it; a webhook receiver in
  the cluster (a Pod started here, from the training image) gets every event in order; the
  Events are on the InferenceService and ``housing rollout status`` shows them;
- ``helm upgrade --reuse-values`` afterwards still serves the promoted version.

Prometheus runs on the host (kubernetes SD, as in test_node_rollout.py) listening on the node's
bridge address, which the runner pod reaches. Traffic goes to the chart's endpoint Service's
ClusterIP (stable and canary pods alike); every answer is counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, DEFAULT_BUCKET, DEFAULT_MODEL_NAME
from testkit.holdout import sample_records

from .conftest import CHART
from .node import Node, poll
from .node_release import V2_PATH, NodePrometheus, Traffic, installed, prometheus_token
from .test_node_chart import install_args

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(3000)]

NS = "delivery"
RELEASE = "housing"
ISVC = RELEASE
ENDPOINT = f"{RELEASE}-inference"
BUNDLE_1 = f"s3://{DEFAULT_BUCKET}/{DEFAULT_MODEL_NAME}/1"
BRIDGE_IP = "10.213.0.1"  # scripts/node/lib.sh NODE_IP: the host as the pods see it
WEBHOOK = "webhook"
TRAINING = "app.kubernetes.io/component=training"


def training_jobs(node: Node) -> list[dict[str, Any]]:
    return node.get("jobs", namespace=NS, selector=TRAINING)["items"]


def job_done(node: Node, name: str) -> bool:
    status = node.get("job", name, NS).get("status", {})
    assert not status.get("failed"), node.kubectl("logs", f"job/{name}", "-n", NS, "--all-containers", check=False)
    return bool(status.get("succeeded"))


@pytest.fixture(scope="module")
def release(node: Node) -> Iterator[Node]:
    """``helm install``: the install's training Job done, the InferenceService Ready."""
    # linear: the challengers of the last tests are derived from the champion (testkit.bundles)
    linear = "training.args={--dataset,ames,--fast,--candidates,linear}"
    job = f"{RELEASE}-train-install"

    def trained() -> None:
        poll(f"job/{job} to complete", lambda: job_done(node, job), 900, 3, lambda: node.diagnose(NS))

    with installed(node, NS, RELEASE, install_args(node, linear), then=trained, ready_what="InferenceService Ready"):
        yield node


@pytest.fixture(scope="module")
def mlflow(release: Node) -> Iterator[Any]:
    from mlflow import MlflowClient

    with release.port_forward(NS, f"svc/{RELEASE}-mlflow", 5000) as port:
        url = f"http://127.0.0.1:{port}"
        yield poll("MLflow", lambda: MlflowClient(tracking_uri=url, registry_uri=url), 120, 2)


def alias(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(DEFAULT_MODEL_NAME, name)
    except MlflowException:
        return None


def storage_uri(node: Node) -> str | None:
    spec = node.get("inferenceservice", ISVC, NS)["spec"]["predictor"]
    (container,) = [c for c in spec["containers"] if c["name"] == "kserve-container"]
    return {e["name"]: e.get("value") for e in container.get("env", [])}.get("STORAGE_URI")


# -- training only when asked --------------------------------------------------------------------
def test_install_trains_once_and_a_config_only_upgrade_trains_nothing(release: Node, mlflow: Any) -> None:
    assert [j["metadata"]["name"] for j in training_jobs(release)] == [f"{RELEASE}-train-install"]
    champion = alias(mlflow, ALIAS_CHAMPION)
    assert champion is not None and champion.tags["bundle_uri"] == BUNDLE_1
    started = time.monotonic()
    release.upgrade(CHART, RELEASE, NS, "predictor.maxReplicas=3")
    linear = "training.args={--dataset,ames,--fast,--candidates,linear}"
    release.helm("upgrade", RELEASE, str(CHART), "-n", NS, *install_args(release, linear, "predictor.maxReplicas=3"))
    time.sleep(5)  # a Job would exist right after the upgrade returns; give the API a moment anyway
    assert [j["metadata"]["name"] for j in training_jobs(release)] == [f"{RELEASE}-train-install"]
    print(f"two upgrades, no training Job ({time.monotonic() - started:.1f} s)")


def test_two_runs_from_the_cronjob_at_once_each_register_a_challenger(release: Node, mlflow: Any) -> None:
    before = {mv.version for mv in mlflow.search_model_versions(f"name = '{DEFAULT_MODEL_NAME}'")}
    runs = ["train-now-1", "train-now-2"]
    started = time.monotonic()
    for run in runs:  # what the chart's NOTES and README document
        release.kubectl("create", "job", f"--from=cronjob/{RELEASE}-train", run, "-n", NS)
    for run in runs:
        poll(f"job/{run} to complete", lambda run=run: job_done(release, run), 900, 3, lambda: release.diagnose(NS))
    print(f"two concurrent training runs done in {time.monotonic() - started:.1f} s")
    versions = [mv for mv in mlflow.search_model_versions(f"name = '{DEFAULT_MODEL_NAME}'") if mv.version not in before]
    assert len(versions) == 2, versions
    uris = {mv.tags["bundle_uri"] for mv in versions}
    assert len(uris) == 2 and BUNDLE_1 not in uris, uris  # never the same destination
    assert all(u.startswith(f"s3://{DEFAULT_BUCKET}/{DEFAULT_MODEL_NAME}/") for u in uris)
    challenger = alias(mlflow, ALIAS_CHALLENGER)
    assert challenger is not None and challenger.version in {mv.version for mv in versions}
    assert alias(mlflow, ALIAS_CHAMPION).tags["bundle_uri"] == BUNDLE_1  # training never moves the champion


# -- the runner in the cluster -------------------------------------------------------------------------
RECEIVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print("EVENT " + json.dumps(json.loads(body)), flush=True)
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""


def webhook_receiver(node: Node) -> str:
    """A Pod printing every JSON body POSTed to it, its Service, and a NetworkPolicy letting the
    rollout runner reach it (the chart denies ingress by default); its URL."""
    security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    labels = {"app": WEBHOOK}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": WEBHOOK, "namespace": NS, "labels": labels},
            "spec": {
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "receiver",
                        "image": node.images["training"],
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python", "-c", RECEIVER],
                        "ports": [{"containerPort": 8080}],
                        "securityContext": security,
                        "resources": {"limits": {"cpu": "200m", "memory": "128Mi"}},
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": WEBHOOK, "namespace": NS},
            "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": WEBHOOK, "namespace": NS},
            "spec": {
                "podSelector": {"matchLabels": labels},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "rollout"}}}]}],
            },
        },
    ]
    node.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(o) for o in objects))
    poll("the webhook receiver Ready", lambda: node.ready_pods(NS, f"app={WEBHOOK}"), 300, 2)
    return f"http://{WEBHOOK}.{NS}.svc.cluster.local:8080/rollout"


def received(node: Node) -> list[dict[str, Any]]:
    logs = node.kubectl("logs", WEBHOOK, "-n", NS, check=False).stdout
    return [json.loads(line[len("EVENT ") :]) for line in logs.splitlines() if line.startswith("EVENT ")]


class BridgePrometheus(NodePrometheus):
    """The node tier's Prometheus for this namespace, listening where the runner pod reaches it."""

    def __init__(self, workdir: Path, node: Node, token: str) -> None:
        super().__init__(workdir, node, NS, token)

    def command(self) -> list[str]:
        return [a.replace("127.0.0.1", BRIDGE_IP) for a in super().command()]

    def health_url(self) -> str:
        return f"http://{BRIDGE_IP}:{self.port}/-/ready"

    @property
    def url(self) -> str:
        return f"http://{BRIDGE_IP}:{self.port}"


@pytest.fixture(scope="module")
def prometheus(release: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgePrometheus]:
    token = prometheus_token(release, NS)
    server = BridgePrometheus(tmp_path_factory.mktemp("prometheus"), release, token)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def endpoint_traffic(node: Node, rows: list[dict[str, Any]]) -> Traffic:
    """V2 requests to the endpoint Service's ClusterIP (a new connection each); every answer counted."""
    ip = node.kubectl("get", "service", ENDPOINT, "-n", NS, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    return Traffic(f"http://{ip}:80{V2_PATH}", rows, headers={"Connection": "close"})


def test_the_runner_promotes_the_challenger_and_the_webhook_gets_every_event_in_order(
    release: Node, mlflow: Any, prometheus: BridgePrometheus
) -> None:
    challenger = alias(mlflow, ALIAS_CHALLENGER)
    assert challenger is not None, "test_two_runs_from_the_cronjob... registers the challenger first"
    url = webhook_receiver(release)
    rows = sample_records("ames", 4, 7)
    sets = [
        "rollout.auto.enabled=true",
        f"rollout.auto.prometheusUrl={prometheus.url}",
        "rollout.auto.steps={50,100}",
        "rollout.auto.intervalSeconds=12",
        "rollout.auto.minRequests=20",
        "rollout.auto.maxFailures=1",
        "rollout.auto.pollSeconds=5",
        f"rollout.notify.url={url}",
    ]
    started = time.monotonic()
    with endpoint_traffic(release, rows) as traffic:
        release.upgrade(CHART, RELEASE, NS, *sets)
        poll(
            "the runner to promote the challenger",
            lambda: (alias(mlflow, ALIAS_CHAMPION) or challenger).version == challenger.version,
            1200,
            5,
            lambda: release.kubectl("logs", f"deploy/{RELEASE}-rollout", "-n", NS, "--tail", "40", check=False).stdout,
        )
        poll(
            "the predictor on the promoted bundle", lambda: storage_uri(release) == challenger.tags["bundle_uri"], 60, 2
        )
        time.sleep(5)
    print(f"promoted {time.monotonic() - started:.0f} s after the upgrade; {len(traffic.answers)} requests")
    failed = [a for a in traffic.answers if a[0] != 200]
    assert not failed, failed[:10]

    def promoted_events() -> list[dict[str, Any]] | None:
        got = received(release)
        return got if any(e["event"] == "promote" for e in got) else None

    events = poll("the webhook to get the promotion", promoted_events, 60, 2)
    kinds = [e["event"] for e in events]
    assert "promote" in kinds, kinds
    rollout = kinds[kinds.index("quality_gate") :]
    assert rollout[:2] == ["quality_gate", "start"] and rollout[-1] == "promote", kinds
    assert [e["weights"]["challenger"] for e in events if e["event"] == "step" and e["decision"] != "hold"] == [50, 100]
    stored = release.kubectl(
        "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={ISVC}", "-o", "json"
    ).stdout
    reasons = [e["reason"] for e in json.loads(stored)["items"]]
    assert "RolloutPromoted" in reasons and "RolloutStep" in reasons, reasons


def test_helm_upgrade_after_the_promotion_keeps_the_promoted_model(release: Node, mlflow: Any) -> None:
    promoted = alias(mlflow, ALIAS_CHAMPION)
    assert promoted is not None and promoted.tags["bundle_uri"] != BUNDLE_1, "the runner test promotes first"
    release.upgrade(CHART, RELEASE, NS, "predictor.maxReplicas=2")
    assert storage_uri(release) == promoted.tags["bundle_uri"]
    poll(
        "InferenceService Ready on the promoted bundle",
        lambda: node_ready(release),
        300,
        3,
        lambda: release.diagnose(NS),
    )


def node_ready(node: Node) -> bool:
    return node.condition(node.get("inferenceservice", ISVC, NS), "Ready") == "True"


# -- a challenger that needs refusing, a rollout that needs a human ------------------------------------
def derived_challenger(node: Node, mlflow: Any, tmp: Path, shift: float, tag: str) -> tuple[str, str]:
    """The champion's bundle copied out of MinIO, its predictions shifted by ``shift`` (a new
    version), uploaded under its own prefix and registered as the challenger; (version, URI)."""
    from mlflow import MlflowClient  # noqa: F401 - the client type of ``mlflow``

    from common.config import TAG_BUNDLE_URI
    from testkit.bundles import derive_bundle

    champion_uri = alias(mlflow, ALIAS_CHAMPION).tags["bundle_uri"]
    prefix = champion_uri.removeprefix(f"s3://{DEFAULT_BUCKET}/")
    src, name = tmp / "champion", f"{tag}-{int(time.time())}"
    key = f"{DEFAULT_MODEL_NAME}/{name}"
    with node.port_forward(NS, f"svc/{RELEASE}-minio", 9000) as port:
        s3 = node.s3_client(NS, f"{RELEASE}-s3", port)
        for obj in s3.list_objects_v2(Bucket=DEFAULT_BUCKET, Prefix=prefix + "/").get("Contents", []):
            target = src / obj["Key"][len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(DEFAULT_BUCKET, obj["Key"], str(target))
        bundle = derive_bundle(src, tmp / name, relative_shift=shift, version=name)
        for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
            s3.upload_file(str(path), DEFAULT_BUCKET, f"{key}/{path.relative_to(bundle)}")
    uri = f"s3://{DEFAULT_BUCKET}/{key}"
    mv = mlflow.create_model_version(DEFAULT_MODEL_NAME, source=uri, tags={TAG_BUNDLE_URI: uri})
    mlflow.set_registered_model_alias(DEFAULT_MODEL_NAME, ALIAS_CHALLENGER, mv.version)
    return str(mv.version), uri


def test_a_worse_challenger_is_refused_and_never_retried(release: Node, mlflow: Any, tmp_path: Path) -> None:
    from registry.lifecycle import TAG_STATUS

    before = len(received(release))
    version, _ = derived_challenger(release, mlflow, tmp_path, 0.5, "worse")
    poll(
        "the runner to refuse the worse challenger",
        lambda: mlflow.get_model_version(DEFAULT_MODEL_NAME, version).tags.get(TAG_STATUS) == "rejected",
        300,
        3,
        lambda: release.kubectl("logs", f"deploy/{RELEASE}-rollout", "-n", NS, "--tail", "30", check=False).stdout,
    )
    time.sleep(15)  # three polls: it is not tried again
    kinds = [e["event"] for e in received(release)[before:]]
    assert kinds == ["quality_gate", "refused"], kinds  # no canary ever started
    assert "canary" not in release.get("inferenceservice", ISVC, NS)["spec"]
    assert alias(mlflow, ALIAS_CHALLENGER) is None


def test_pause_at_waits_until_housing_rollout_resume(release: Node, mlflow: Any, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from .conftest import REPO

    release.upgrade(CHART, RELEASE, NS, "rollout.auto.pauseAt=50")
    release.kubectl("rollout", "status", f"deploy/{RELEASE}-rollout", "-n", NS, "--timeout=300s")  # Recreate
    before = len(received(release))
    rows = sample_records("ames", 4, 7)
    with endpoint_traffic(release, rows) as traffic:
        version, uri = derived_challenger(release, mlflow, tmp_path, 0.002, "good")

        def paused() -> bool:
            lease = release.get("lease", f"{ISVC}-rollout", NS)
            return (lease["metadata"].get("annotations") or {}).get("rollout.housing.dev/paused-at") == "50"

        poll("the rollout to pause at 50 %", paused, 600, 3)
        time.sleep(20)  # it waits: still at 50 %, nothing promoted
        assert paused() and release.get("inferenceservice", ISVC, NS)["spec"]["canary"][0]["trafficPercent"] == 50
        env = {**os.environ, "KUBECONFIG": str(release.kubeconfig)}
        cmd = [sys.executable, "-m", "housing", "rollout", "resume", "--name", ISVC, "-n", NS]
        resumed = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        poll("the promotion after resume", lambda: storage_uri(release) == uri, 600, 3)
    assert not [a for a in traffic.answers if a[0] != 200]

    def this_rollout() -> list[str] | None:
        # the webhook is told after the InferenceService is patched: wait for the event itself
        kinds = [e["event"] for e in received(release)[before:]]
        return kinds if "promote" in kinds else None

    kinds = poll("the webhook to get the promotion after resume", this_rollout, 60, 2)
    assert kinds.index("pause") < kinds.index("resumed") < kinds.index("promote"), kinds


def test_a_killed_runner_hands_its_rollout_to_the_next_one(release: Node, mlflow: Any, tmp_path: Path) -> None:
    """The runner pod is deleted mid-rollout: the next one takes the Lease and resumes from the
    recorded step with the same canary pods; no client request fails."""
    sets = ["rollout.auto.pauseAt=0", "rollout.auto.steps={25,50,100}", "rollout.auto.intervalSeconds=20"]
    release.upgrade(CHART, RELEASE, NS, *sets)
    release.kubectl("rollout", "status", f"deploy/{RELEASE}-rollout", "-n", NS, "--timeout=300s")
    rows = sample_records("ames", 4, 7)

    def progress() -> dict[str, str]:
        annotations = release.get("lease", f"{ISVC}-rollout", NS)["metadata"].get("annotations") or {}
        return {k.split("/", 1)[1]: v for k, v in annotations.items() if k.startswith("rollout.housing.dev/")}

    with endpoint_traffic(release, rows) as traffic:
        _, uri = derived_challenger(release, mlflow, tmp_path, 0.002, "handover")
        poll("the rollout at its second step", lambda: progress().get("weight") == "50", 900, 2)
        canary = release.get("inferenceservice", ISVC, NS)["spec"]["canary"][0]["predictor"]["name"]
        selector = f"serving.kserve.io/inferenceservice={ISVC},app=isvc.{ISVC}-{canary}-predictor"
        canary_pods = {p["metadata"]["uid"] for p in release.ready_pods(NS, selector)}
        (runner,) = release.ready_pods(NS, "app.kubernetes.io/component=rollout")
        release.kubectl("delete", "pod", runner["metadata"]["name"], "-n", NS, "--wait=false")
        killed = time.monotonic()
        poll("the promotion by the next runner", lambda: storage_uri(release) == uri, 900, 3)
        print(f"promoted {time.monotonic() - killed:.0f} s after the runner pod was deleted")
        time.sleep(5)
    assert not [a for a in traffic.answers if a[0] != 200]
    now = {p["metadata"]["uid"] for p in release.ready_pods(NS, f"serving.kserve.io/inferenceservice={ISVC}")}
    assert canary_pods and canary_pods <= now  # the same canary pods serve as the champion now
    stored = release.kubectl(
        "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={ISVC}", "-o", "json"
    ).stdout
    assert "RolloutAdopted" in [e["reason"] for e in json.loads(stored)["items"]]  # resumed, not restarted
