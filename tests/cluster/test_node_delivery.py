"""Continuous delivery on a real node: training only when asked, the rollout runner in the cluster.

One release (dev stack: MinIO, MLflow; ``training.args`` --fast) in a restricted namespace:

- install trains once (the Job ``<release>-train-install``); a config-only ``helm upgrade`` creates
  no training Job; two runs made from the CronJob at the same time each register a challenger
  under its own destination;
- the rollout runner (``rollout.auto.enabled``: a Deployment running ``housing rollout auto`` as the
  rollout ServiceAccount) picks the challenger up, canaries it, promotes it; a webhook receiver in
  the cluster (a Pod started here, from the training image) gets every event in order; the
  Events are on the InferenceService and ``housing rollout status`` shows them;
- ``helm upgrade --reuse-values`` afterwards still serves the promoted version, also when it changes
  the predictor container (helm 4 applies server-side; the runner gives back the fields its
  promotion took, rollout/backends/field_owners.py);
- with the payload log on and ``rollout.auto.liveGate`` required, the runner holds a canary while
  the versions have no labelled rows and promotes it once ``housing feedback`` labels them.

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

import httpx
import pytest
import yaml

from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, DEFAULT_BUCKET, DEFAULT_MODEL_NAME
from predictor.client.cli import to_v2
from testkit.holdout import holdout, records, sample_records

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


def served_versions(node: Node, rows: list[dict[str, Any]], n: int = 8) -> list[tuple[int | str, str | None]]:
    """(status, model_version) of ``n`` V2 requests to the endpoint Service's ClusterIP."""
    ip = node.kubectl("get", "service", ENDPOINT, "-n", NS, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    out = []
    with httpx.Client(timeout=30, headers={"Connection": "close"}) as client:
        for _ in range(n):
            try:
                r = client.post(f"http://{ip}:80{V2_PATH}", json=to_v2({"instances": rows}))
            except httpx.HTTPError as exc:
                out.append((type(exc).__name__, None))
                continue
            out.append((r.status_code, r.json().get("model_version") if r.status_code == 200 else r.text[:200]))
    return out


def all_answered(node: Node, rows: list[dict[str, Any]]) -> list[tuple[int | str, str | None]]:
    """:func:`served_versions` once every request is answered 200 (kube-proxy routes by the
    EndpointSlice, which trails the pods' Ready by a moment)."""

    def answered() -> list[tuple[int | str, str | None]] | None:
        got = served_versions(node, rows)
        return got if all(status == 200 for status, _ in got) else None

    return poll("every request to the endpoint answered", answered, 60, 2, lambda: str(served_versions(node, rows)))


def test_helm_upgrade_after_the_promotion_keeps_the_promoted_model(release: Node, mlflow: Any) -> None:
    """After the runner promoted (its writes took the predictor's atomic ``containers`` list from
    helm 4's server-side apply, until rollout/backends/field_owners.py gave it back), a config-only
    ``helm upgrade`` and one that changes the predictor container both apply, and the promoted
    bundle keeps serving from the new pods."""
    promoted = alias(mlflow, ALIAS_CHAMPION)
    assert promoted is not None and promoted.tags["bundle_uri"] != BUNDLE_1, "the runner test promotes first"
    uri = promoted.tags["bundle_uri"]
    release.upgrade(CHART, RELEASE, NS, "predictor.maxReplicas=2")
    assert storage_uri(release) == uri
    poll(
        "InferenceService Ready on the promoted bundle",
        lambda: node_ready(release),
        300,
        3,
        lambda: release.diagnose(NS),
    )
    selector = f"serving.kserve.io/inferenceservice={ISVC}"
    promoted_app = f"isvc.{ISVC}-{release.get('inferenceservice', ISVC, NS)['spec']['predictor']['name']}-predictor"
    poll(  # the champion's old pods gone: every answer below comes from the promoted bundle
        "the promoted predictor's pods alone",
        lambda: (
            (pods := release.get("pods", namespace=NS, selector=selector)["items"])
            and all(p["metadata"]["labels"].get("app") == promoted_app for p in pods)
        ),
        300,
        2,
        lambda: release.diagnose(NS),
    )
    rows = sample_records("ames", 2, 7)
    before = all_answered(release, rows)
    (version,) = {v for _, v in before}
    # kubectl leaves managedFields out of its output unless asked
    live = json.loads(
        release.kubectl("get", "inferenceservice", ISVC, "-n", NS, "-o", "json", "--show-managed-fields").stdout
    )
    owners = {
        e["manager"]: e["operation"]
        for e in live["metadata"]["managedFields"]
        if "f:containers" in ((e.get("fieldsV1") or {}).get("f:spec") or {}).get("f:predictor", {})
    }
    # the runner handed the container back to helm's server-side apply
    assert owners and set(owners.values()) == {"Apply"} and "housing-rollout" not in owners, owners

    old = {p["metadata"]["uid"] for p in release.get("pods", namespace=NS, selector=selector)["items"]}
    started = time.monotonic()
    upgraded = release.upgrade(CHART, RELEASE, NS, "predictor.accessLog=true")  # the container's args change
    assert upgraded.returncode == 0, upgraded.stderr
    (container,) = release.get("inferenceservice", ISVC, NS)["spec"]["predictor"]["containers"]
    assert container["args"][container["args"].index("--access_log") + 1] == "true"
    assert storage_uri(release) == uri  # not the chart's bundle
    poll(
        "new predictor pods alone, Ready",
        lambda: (
            (pods := release.get("pods", namespace=NS, selector=selector)["items"])
            and not {p["metadata"]["uid"] for p in pods} & old
            and release.ready_pods(NS, selector)
            and node_ready(release)
        ),
        300,
        2,
        lambda: release.diagnose(NS),
    )
    after = all_answered(release, rows)
    assert {v for _, v in after} == {version}, after  # the promoted bundle, not the chart's
    print(
        f"container change applied after the promotion; new pods serve {version} ({time.monotonic() - started:.0f} s)"
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


# -- the live-accuracy gate: it waits for labels, then decides on them -----------------------------
LIVE_LABELS = 20  # rollout.auto.liveGate.minLabels: labelled rows each version needs


def version_pods(node: Node) -> dict[str, dict[str, Any]]:
    """One Ready predictor pod per role (``champion``, ``challenger``) while a canary runs."""
    spec = node.get("inferenceservice", ISVC, NS)["spec"]
    canary = spec["canary"][0]["predictor"]["name"]
    pods = node.ready_pods(NS, f"serving.kserve.io/inferenceservice={ISVC}")
    ours = [p for p in pods if p["metadata"]["labels"].get("app") == f"isvc.{ISVC}-{canary}-predictor"]
    theirs = [p for p in pods if p not in ours]
    return {"champion": theirs[0], "challenger": ours[0]} if ours and theirs else {}


def rollout_events(node: Node, since: float) -> list[dict[str, Any]]:
    """The runner's Events on the InferenceService written since ``since`` (epoch s), oldest first."""
    import datetime as dt

    from rollout.kube_events import COMPONENT

    selector = f"involvedObject.name={ISVC}"
    items = json.loads(node.kubectl("get", "events", "-n", NS, "--field-selector", selector, "-o", "json").stdout)

    def when(e: dict[str, Any]) -> tuple[float, int]:
        stamp = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"]["creationTimestamp"]
        at = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        return at, int(e["metadata"].get("resourceVersion") or 0)

    ours = [e for e in items["items"] if e.get("reportingComponent") == COMPONENT]
    return sorted((e for e in ours if when(e)[0] >= int(since)), key=when)


def test_the_live_gate_waits_for_labels_then_promotes_on_them(
    release: Node, mlflow: Any, prometheus: BridgePrometheus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rollout.auto.liveGate`` (required, 20 labels) with the predictors' payload log in MinIO: a
    challenger as accurate as the champion canaries at 50 % and is held there — every look *waiting
    for labels*, the step inconclusive, nothing promoted — while the Prometheus gates pass; the same
    holdout rows, sent to each version's pod with a request id, are labelled with their true prices
    by ``housing feedback``; the runner's next looks judge the two live RMSEs and promote."""
    import os
    import subprocess
    import sys
    import uuid

    from monitor.store import Store, payload_frame
    from predictor.observe.payload_rows import MODEL_VERSION, REQUEST_ID
    from training.datasets import load_dataset

    from .conftest import REPO

    selector = f"serving.kserve.io/inferenceservice={ISVC}"
    old = {p["metadata"]["uid"] for p in release.get("pods", namespace=NS, selector=selector)["items"]}
    sets = [
        "payloadLog.enabled=true",
        "rollout.auto.enabled=true",
        f"rollout.auto.prometheusUrl={prometheus.url}",
        "rollout.auto.steps={50,100}",
        "rollout.auto.intervalSeconds=10",
        "rollout.auto.minRequests=20",
        "rollout.auto.maxFailures=3",  # a noisy look (p95) holds the step; only the live gate decides here
        "rollout.auto.pollSeconds=5",
        "rollout.auto.pauseAt=0",
        "rollout.auto.liveGate.enabled=true",
        "rollout.auto.liveGate.requireLabels=true",
        f"rollout.auto.liveGate.minLabels={LIVE_LABELS}",
        "rollout.auto.liveGate.tolerance=0.1",
    ]
    started = time.monotonic()
    release.upgrade(CHART, RELEASE, NS, *sets)
    release.kubectl("rollout", "status", f"deploy/{RELEASE}-rollout", "-n", NS, "--timeout=300s")
    poll(  # every pod the endpoint sends to logs its payloads
        "the predictor pods with the payload log to serve alone",
        lambda: (
            (pods := release.get("pods", namespace=NS, selector=selector)["items"])
            and not {p["metadata"]["uid"] for p in pods} & old
            and release.ready_pods(NS, selector)
        ),
        300,
        2,
        lambda: release.diagnose(NS),
    )
    frame, features = holdout("ames")
    target = load_dataset("ames").target
    labelled = frame.sample(LIVE_LABELS + 4, random_state=11)
    rows, truth = records(labelled[features]), [float(v) for v in labelled[target]]
    since = time.time()
    with endpoint_traffic(release, rows[:4]) as traffic:  # unlabelled: the Prometheus gates' requests
        version, uri = derived_challenger(release, mlflow, tmp_path, 0.002, "labelled")
        pods = poll("the canary Ready at 50 %", lambda: version_pods(release), 600, 2, lambda: release.diagnose(NS))

        # the same rows to each version's own pod, each with a request id: the labels to come
        run, sent, served = uuid.uuid4().hex[:6], {}, {}
        with httpx.Client(timeout=30) as client:
            for role, pod in pods.items():
                url = f"http://{pod['status']['podIP']}:8080{V2_PATH}"
                for i, (row, actual) in enumerate(zip(rows, truth, strict=True)):
                    rid = f"live-{run}-{role}-{i}"
                    r = client.post(url, json=to_v2({"instances": [row]}), headers={"x-request-id": rid})
                    assert r.status_code == 200, r.text
                    served.setdefault(role, set()).add(r.json()["model_version"])
                    sent[rid] = actual
        assert len(served["champion"]) == len(served["challenger"]) == 1 and served["champion"] != served["challenger"]

        def waits() -> list[dict[str, Any]] | None:
            events = rollout_events(release, since)
            held = [e for e in events if e["reason"] == "RolloutInconclusive" and "waiting for labels" in e["message"]]
            return events if held else None

        events = poll("the runner to hold the step for labels", waits, 300, 3, lambda: runner_log(release))
        held_at = time.monotonic()
        steps = [e["message"] for e in events if e["reason"] == "RolloutStep"]
        assert steps and all("live_rmse=-" in s for s in steps), steps  # no look had labels to judge
        assert any("waiting for labels" in s for s in steps), steps
        assert not [e for e in events if e["reason"] in ("RolloutPromoted", "RolloutRolledBack")], events
        (gate, *_) = [e["message"] for e in events if e["reason"] == "RolloutLiveGate"]
        assert f"≥ {LIVE_LABELS} labelled rows" in gate and "(required)" in gate, gate
        assert alias(mlflow, ALIAS_CHAMPION).version != version and storage_uri(release) != uri
        assert release.get("inferenceservice", ISVC, NS)["spec"]["canary"][0]["trafficPercent"] == 50

        # ground truth arrives for the rows both versions answered
        log_uri = f"s3://{DEFAULT_BUCKET}/payloads"  # the chart's default payloadLog.uri
        with release.port_forward(NS, f"svc/{RELEASE}-minio", 9000) as port:
            creds = release.secret(NS, f"{RELEASE}-s3")
            s3_env = {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"],
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            for name, value in s3_env.items():
                monkeypatch.setenv(name, value)

            def logged() -> bool:
                log = payload_frame(Store(log_uri))
                return not log.empty and set(sent) <= set(log[REQUEST_ID])

            poll("the labelled requests in the payload log", logged, 120, 3)
            labels = tmp_path / "labels.csv"
            labels.write_text("request_id,actual\n" + "".join(f"{rid},{y!r}\n" for rid, y in sent.items()))
            cmd = [sys.executable, "-m", "housing", "feedback", str(labels), "--log", log_uri, "--json"]
            env = {**os.environ, **s3_env}
            fed = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
            assert fed.returncode == 0, fed.stderr
            report = json.loads(fed.stdout)
            assert (report["joined"], report["unknown"]) == (len(sent), 0), report
            log = payload_frame(Store(log_uri))
            per_version = log[log[REQUEST_ID].isin(list(sent))].groupby(MODEL_VERSION).size().to_dict()
            assert sorted(per_version.values()) == [LIVE_LABELS + 4] * 2, per_version

        poll(
            "the runner to promote on the live evidence",
            lambda: storage_uri(release) == uri,
            600,
            3,
            lambda: runner_log(release),
        )
        print(
            f"live gate on the node: held {held_at - started:.0f} s after the upgrade, promoted "
            f"{time.monotonic() - held_at:.0f} s after the hold was seen; {len(traffic.answers)} requests"
        )
    assert not traffic.failures, traffic.failures[:10]
    judged = [
        e["message"]
        for e in rollout_events(release, since)
        if e["reason"] == "RolloutStep" and "live_rmse=" in e["message"] and "live_rmse=-" not in e["message"]
    ]
    assert judged, "no step judged the live RMSEs"
    assert all("waiting for labels" not in m for m in judged), judged
    held = next(e["message"] for e in events if e["reason"] == "RolloutInconclusive")
    print(f"held: {held[:300]}\njudged: {judged[0][:400]}")
    poll("MLflow's champion moved", lambda: alias(mlflow, ALIAS_CHAMPION).version == version, 60, 2)


def runner_log(node: Node) -> str:
    return node.kubectl("logs", f"deploy/{RELEASE}-rollout", "-n", NS, "--tail", "40", check=False).stdout
