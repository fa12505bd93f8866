"""The chart on a real node: helm install → training Job → InferenceService Ready → requests.

One release (dev stack on: MinIO, MLflow) is installed into a namespace that enforces the
``restricted`` Pod Security level; KServe's own webhooks inject the storage-initializer and
validate the InferenceService, its controller makes the Deployment and Service. The tests then
use it the way a user does: ``helm test``, V1/V2 REST and gRPC through ``kubectl port-forward``,
``/metrics``, scaling, the rollout ServiceAccount's token, and faults (a deleted pod, the install's
bundle altered after its registration, an upgrade under load, a bundle with a wrong digest).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from bundle.manifest import MANIFEST, Manifest, bundle_digest, write_bundle
from bundle.schema import CATEGORICAL
from common.config import (
    ALIAS_CHAMPION,
    BUNDLE_DIGEST_ENV,
    DEFAULT_BUCKET,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_MODEL_NAME,
    METRICS_PORT,
    TAG_BUNDLE_DIGEST,
    TAG_BUNDLE_URI,
)
from predictor.client.cli import to_v2
from predictor.core.loaded import load_bundle
from testkit.holdout import holdout, records
from testkit.procs import start_predictor
from training.pin import pin_key

from .conftest import CHART
from .node import InThread, Node, poll
from .node_release import add_column

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(2400)]

NS = "housing"
RELEASE = "housing"
ISVC = RELEASE  # housing.fullname when the release is named like the chart
PREDICTOR_SVC = f"{ISVC}-predictor"
BUNDLE_1 = f"s3://{DEFAULT_BUCKET}/{DEFAULT_MODEL_NAME}/1"
PINS = f"{RELEASE}-bundle-pins"  # the registered digests the predictor pins (training/pin.py)
ROWS = 8


def install_args(node: Node, *sets: str) -> list[str]:
    args = ["--set", f"devStack.minio.image={node.images['minio']}", "--set", "training.args={--dataset,ames,--fast}"]
    for item in sets:
        args += ["--set", item]
    return args


def isvc_ready(node: Node, namespace: str = NS, name: str = ISVC) -> dict[str, Any] | None:
    obj = node.get("inferenceservice", name, namespace)
    return obj if node.condition(obj, "Ready") == "True" else None


@pytest.fixture(scope="module")
def release(node: Node) -> Iterator[Node]:
    """``helm install`` of the chart with its dev stack into a restricted namespace."""
    node.restricted_namespace(NS)
    node.helm("install", RELEASE, str(CHART), "-n", NS, *install_args(node), "--timeout", "10m")
    try:
        yield node
    finally:
        node.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "3m", check=False)
        node.kubectl("delete", "namespace", NS, "--wait=false", check=False)


@pytest.fixture(scope="module")
def trained(release: Node) -> Node:
    """The install's training Job has completed (it wrote the bundle the InferenceService serves)."""
    job = f"{RELEASE}-train-install"
    poll(
        f"job/{job} to complete",
        lambda: release.get("job", job, NS).get("status", {}).get("succeeded"),
        timeout=900,
        interval=3,
        explain=lambda: release.diagnose(NS),
    )
    return release


@pytest.fixture(scope="module")
def served(trained: Node) -> Node:
    """The InferenceService reports Ready."""
    poll(
        "InferenceService Ready",
        lambda: isvc_ready(trained),
        timeout=600,
        interval=3,
        explain=lambda: trained.diagnose(NS),
    )
    return trained


def s3_client(node: Node, port: int) -> Any:
    return node.s3_client(NS, f"{RELEASE}-s3", port)


def download_bundle(node: Node, prefix: str, dest: Path) -> Path:
    """Copy the bundle under s3://bucket/<prefix> out of the in-cluster MinIO."""
    with node.port_forward(NS, f"svc/{RELEASE}-minio", 9000) as port:
        s3 = s3_client(node, port)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=DEFAULT_BUCKET, Prefix=prefix + "/").get("Contents", [])]
        assert any(k.endswith("/" + MANIFEST) for k in keys), keys
        for key in keys:
            target = dest / key[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(DEFAULT_BUCKET, key, str(target))
    return dest


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    frame, features = holdout("ames")
    return records(frame[features].head(ROWS))


def grpc_request(rows: list[dict[str, Any]], categorical: set[str], request_id: str) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=DEFAULT_MODEL_NAME, id=request_id)
    for name in rows[0]:
        add_column(req, name, rows, as_bytes=name in categorical)
    return req


def predict_all(
    http_url: str, grpc_target: str, rows: list[dict[str, Any]], categorical: set[str]
) -> dict[str, list[float]]:
    """The same rows as V1, V2 REST and V2 gRPC; the predictions of each."""
    with httpx.Client(base_url=http_url, timeout=30) as client:
        v1 = client.post(f"/v1/models/{DEFAULT_MODEL_NAME}:predict", json={"instances": rows})
        assert v1.status_code == 200, v1.text
        v2 = client.post(f"/v2/models/{DEFAULT_MODEL_NAME}/infer", json=to_v2({"instances": rows}))
        assert v2.status_code == 200, v2.text
    with grpc.insecure_channel(grpc_target) as channel:
        resp = GRPCInferenceServiceStub(channel).ModelInfer(grpc_request(rows, categorical, "node-1"), timeout=30)
    out = resp.outputs[0]
    g = list(out.contents.fp64_contents) or np.frombuffer(resp.raw_output_contents[0], dtype=np.float64).tolist()
    return {"v1": v1.json()["predictions"], "v2": v2.json()["outputs"][0]["data"], "grpc": g}


# -- install → train → Ready ------------------------------------------------------------------
def test_training_job_publishes_and_registers(trained: Node, tmp_path: Path) -> None:
    bundle = download_bundle(trained, BUNDLE_1.removeprefix(f"s3://{DEFAULT_BUCKET}/"), tmp_path / "bundle")
    load_bundle(bundle)  # every file digest verified
    with trained.port_forward(NS, f"svc/{RELEASE}-mlflow", 5000) as port:
        r = httpx.get(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/alias",
            params={"name": DEFAULT_MODEL_NAME, "alias": ALIAS_CHAMPION},
            timeout=30,
        )
    assert r.status_code == 200, r.text
    version = r.json()["model_version"]
    tags = {t["key"]: t["value"] for t in version.get("tags", [])}
    assert tags.get(TAG_BUNDLE_URI) == BUNDLE_1
    assert tags.get(TAG_BUNDLE_DIGEST) == bundle_digest(bundle)  # the registered version is this bundle
    # … and the Job recorded that registered digest where the predictor pins it from (issue 22 item 4)
    pins = trained.get("configmap", PINS, NS).get("data") or {}
    assert pins == {pin_key(BUNDLE_1): tags[TAG_BUNDLE_DIGEST]}, pins


def test_inferenceservice_ready_under_restricted_pod_security(served: Node) -> None:
    isvc = served.get("inferenceservice", ISVC, NS)
    for cond in ("PredictorReady", "Ready"):
        assert served.condition(isvc, cond) == "True", isvc["status"]
    assert PREDICTOR_SVC in isvc["status"]["address"]["url"]
    pods = served.ready_pods(NS, f"serving.kserve.io/inferenceservice={ISVC}")
    assert pods, served.diagnose(NS)
    spec = pods[0]["spec"]
    # KServe's pod mutator (a real webhook) injected the storage-initializer for storageUri
    init = [c for c in spec.get("initContainers", []) if c["name"] == "storage-initializer"]
    assert init and init[0]["args"][0] == BUNDLE_1, spec.get("initContainers")
    assert spec["securityContext"]["runAsUser"] == 10001
    ns = served.get("namespace", NS)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_helm_test_passes(served: Node) -> None:
    result = served.helm("test", RELEASE, "-n", NS, "--timeout", "3m", check=False)
    assert result.returncode == 0, result.stdout + result.stderr + served.diagnose(NS)


def test_requests_match_the_same_bundle_served_locally(
    served: Node, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    bundle = download_bundle(served, BUNDLE_1.removeprefix(f"s3://{DEFAULT_BUCKET}/"), tmp_path / "bundle")
    categorical = {f.name for f in load_bundle(bundle).schema.features if f.kind == CATEGORICAL}
    with (
        served.port_forward(NS, f"svc/{PREDICTOR_SVC}", 80) as http_port,
        served.port_forward(NS, f"svc/{PREDICTOR_SVC}", DEFAULT_GRPC_PORT) as grpc_port,
    ):
        cluster = predict_all(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", rows, categorical)
    with start_predictor(bundle) as local:
        here = predict_all(local.http_url, local.grpc_target, rows, categorical)
    for protocol in ("v1", "v2", "grpc"):
        assert len(cluster[protocol]) == ROWS
        np.testing.assert_allclose(cluster[protocol], here[protocol], rtol=1e-12, err_msg=protocol)


def test_pod_metrics_carry_model_version(served: Node, rows: list[dict[str, Any]], tmp_path: Path) -> None:
    bundle = download_bundle(served, BUNDLE_1.removeprefix(f"s3://{DEFAULT_BUCKET}/"), tmp_path / "bundle")
    version = load_bundle(bundle).manifest.model_version
    pod = served.ready_pods(NS, f"serving.kserve.io/inferenceservice={ISVC}")[0]["metadata"]["name"]
    with served.port_forward(NS, f"pod/{pod}", DEFAULT_HTTP_PORT) as port:
        base = f"http://127.0.0.1:{port}"
        answer = httpx.post(f"{base}/v1/models/{DEFAULT_MODEL_NAME}:predict", json={"instances": rows[:1]}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{base}/metrics", timeout=30).status_code == 404  # the routed port hides the series
    with served.port_forward(NS, f"pod/{pod}", METRICS_PORT) as port:  # the chart's scrape port
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    lines = [line for line in metrics.splitlines() if line.startswith("housing_predictions_total{")]
    assert lines and all(f'model_version="{version}"' in line for line in lines), (version, lines)


# -- scale, RBAC, faults -------------------------------------------------------------------------
def upgrade(node: Node, *sets: str) -> None:
    """``helm upgrade --reuse-values`` without a new training Job."""
    node.upgrade(CHART, RELEASE, NS, "training.enabled=false", *sets)


def cluster_url(node: Node) -> str:
    """The predictor Service's ClusterIP: this cluster's own address, routed by kube-proxy."""
    svc = node.get("service", PREDICTOR_SVC, NS)
    return f"http://{svc['spec']['clusterIP']}:80"


def predictions_counted(node: Node, pod: str) -> float:
    with node.port_forward(NS, f"pod/{pod}", METRICS_PORT) as port:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("housing_predictions_total{")
    )


class RequestStream(InThread):
    """Steady V1 requests to the Service from a thread; every answer's status is recorded."""

    def __init__(self, url: str, body: dict[str, Any], interval: float = 0.05, limit: int = 20_000) -> None:
        self.url, self.body, self.interval, self.limit = url, body, interval, limit
        self.statuses: list[int | str] = []
        super().__init__()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set() and len(self.statuses) < self.limit:
                try:
                    self.statuses.append(client.post(self.url, json=self.body).status_code)
                except httpx.HTTPError as exc:
                    self.statuses.append(type(exc).__name__)
                time.sleep(self.interval)

    @property
    def failures(self) -> list[int | str]:
        return [s for s in self.statuses if s != 200]


def predictor_pods(node: Node) -> list[dict[str, Any]]:
    return node.ready_pods(NS, f"serving.kserve.io/inferenceservice={ISVC}")


def test_three_replicas_share_the_service_traffic(served: Node, rows: list[dict[str, Any]]) -> None:
    upgrade(served, "predictor.minReplicas=3", "predictor.maxReplicas=3")
    pods = poll(
        "3 Ready predictor pods",
        lambda: (p := predictor_pods(served)) and len(p) == 3 and p,
        300,
        2,
        lambda: served.diagnose(NS),
    )
    names = [p["metadata"]["name"] for p in pods]
    # a pod is Ready before the EndpointSlice lists it, and kube-proxy routes by the slice
    ips = {p["status"]["podIP"] for p in pods}
    poll("the Service's endpoints are the 3 pods", lambda: served.service_endpoints(NS, PREDICTOR_SVC) == ips, 120, 1)
    before = {n: predictions_counted(served, n) for n in names}
    url = f"{cluster_url(served)}/v1/models/{DEFAULT_MODEL_NAME}:predict"
    sent, share = 0, dict.fromkeys(names, 0.0)
    with httpx.Client(timeout=10) as client:  # a new connection per request: kube-proxy picks per connection
        # rounds of 30 until each pod has answered some (kube-proxy's rules trail the slice by its sync
        # period); 3 replicas sharing evenly reach all three in the first round all but always
        for _ in range(5):
            for _ in range(30):
                answer = client.post(url, json={"instances": rows[:1]}, headers={"Connection": "close"})
                assert answer.status_code == 200, answer.text
            sent += 30
            share = {n: predictions_counted(served, n) - before[n] for n in names}
            if all(v > 0 for v in share.values()):
                break
    assert sum(share.values()) == sent, share
    assert all(v > 0 for v in share.values()), share
    # back to the chart's defaults: the HPA (no metrics-server here) only clamps to [1, 2]
    upgrade(served, "predictor.minReplicas=1", "predictor.maxReplicas=2")
    poll(
        "at most 2 predictor pods",
        lambda: (
            len(served.get("pods", namespace=NS, selector=f"serving.kserve.io/inferenceservice={ISVC}")["items"]) <= 2
        ),
        300,
        2,
    )


def test_rollout_service_account_may_patch_inferenceservices_only(served: Node) -> None:
    sa = f"{RELEASE}-rollout"
    token = served.kubectl("create", "token", sa, "-n", NS, "--duration", "10m").stdout.strip()
    ca = served.state / "pki" / "ca.crt"
    server = json.loads(served.kubectl("config", "view", "--raw", "-o", "json").stdout)["clusters"][0]["cluster"][
        "server"
    ]

    def as_rollout(*args: str) -> Any:
        return served.run(
            "kubectl",
            "--kubeconfig",
            "/dev/null",
            "--server",
            server,
            "--certificate-authority",
            str(ca),
            "--token",
            token,
            "-n",
            NS,
            *args,
            check=False,
        )

    assert as_rollout("get", "inferenceservice", ISVC).returncode == 0
    assert as_rollout("get", "inferenceservices", "--watch", "--request-timeout", "2s").returncode in (0, 1)
    patched = as_rollout("annotate", "inferenceservice", ISVC, "housing/rbac-check=ok", "--overwrite")
    assert patched.returncode == 0, patched.stderr
    for args in (
        ["delete", "inferenceservice", ISVC, "--dry-run=server"],
        ["get", "secrets"],
        ["get", "pods"],
        ["create", "configmap", "x", "--dry-run=server"],
    ):
        result = as_rollout(*args)
        code, err = result.returncode, result.stderr  # (the command line holds the token: keep it out of reports)
        assert code != 0 and "forbidden" in err.lower(), (args, err)


def test_deleted_pod_is_replaced(served: Node, rows: list[dict[str, Any]]) -> None:
    old = predictor_pods(served)[0]["metadata"]
    served.kubectl("delete", "pod", old["name"], "-n", NS, "--wait=false")
    pods = poll(
        "a new Ready predictor pod",
        lambda: [p for p in predictor_pods(served) if p["metadata"]["uid"] != old["uid"]],
        300,
        2,
        lambda: served.diagnose(NS),
    )
    assert pods
    poll("InferenceService Ready again", lambda: isvc_ready(served), 120, 2)
    url = f"{cluster_url(served)}/v1/models/{DEFAULT_MODEL_NAME}:predict"
    assert httpx.post(url, json={"instances": rows[:1]}, timeout=30).status_code == 200


def all_predictor_pods(node: Node) -> list[dict[str, Any]]:
    return node.get("pods", namespace=NS, selector=f"serving.kserve.io/inferenceservice={ISVC}")["items"]


def settled_pods(node: Node) -> set[str] | None:
    """The uids of the predictor pods when every one is Ready and none is going away, else None."""
    pods = all_predictor_pods(node)
    ready = {p["metadata"]["uid"] for p in predictor_pods(node)}
    uids = {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}
    return uids if pods and uids == ready and len(uids) == len(pods) else None


def refusals(pod: dict[str, Any]) -> list[str]:
    """The kserve-container's termination messages of ``pod`` (the chart: FallbackToLogsOnError)."""
    return [
        (state.get("terminated") or {}).get("message") or ""
        for cs in pod.get("status", {}).get("containerStatuses", [])
        if cs["name"] == "kserve-container"
        for state in (cs.get("lastState") or {}, cs.get("state") or {})
        if state.get("terminated")
    ]


def put_object(node: Node, key: str, body: bytes) -> None:
    """Write ``key`` of the bucket in the in-cluster MinIO (as anyone who can write the bucket could)."""
    with node.port_forward(NS, f"svc/{RELEASE}-minio", 9000) as port:
        s3_client(node, port).put_object(Bucket=DEFAULT_BUCKET, Key=key, Body=body)


def test_the_installs_bundle_altered_after_registration_never_turns_ready(
    served: Node, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Issue 22 item 4 on the chart's own install path: rendered before its bundle existed (no digest in
    values), the predictor still pins the digest MLflow registered — its HOUSING_BUNDLE_DIGEST comes
    from the ConfigMap key the training Job wrote once registered, not from MLflow nor the bucket. The
    bundle is then replaced in the bucket by a consistent one (every file matching its own bundle.json,
    so unpinned it would be served) and one more pod is asked for: every new pod refuses it and never
    turns Ready, while the pods already serving answer every request."""
    isvc = served.get("inferenceservice", ISVC, NS)
    env = {e["name"]: e for e in isvc["spec"]["predictor"]["containers"][0]["env"]}
    assert env["STORAGE_URI"]["value"] == BUNDLE_1, env
    assert env[BUNDLE_DIGEST_ENV]["valueFrom"]["configMapKeyRef"] == {"name": PINS, "key": pin_key(BUNDLE_1)}, env
    key = f"{BUNDLE_1.removeprefix(f's3://{DEFAULT_BUCKET}/')}/{MANIFEST}"
    original = download_bundle(served, key.rsplit("/", 1)[0], tmp_path / "original")
    registered = bundle_digest(original)
    assert served.get("configmap", PINS, NS)["data"][pin_key(BUNDLE_1)] == registered
    forged = tmp_path / "forged"
    shutil.copytree(original, forged)
    manifest = Manifest(**json.loads((forged / MANIFEST).read_text()))
    (forged / MANIFEST).unlink()
    write_bundle(forged, dataclasses.replace(manifest, model_version=f"{manifest.model_version}-forged"))
    load_bundle(forged)  # consistent: unpinned, it would be served
    assert bundle_digest(forged) != registered
    # a settled start (the previous test's replacement Ready, nothing terminating): exactly these serve
    serving = poll("every predictor pod Ready", lambda: settled_pods(served), 300, 2, lambda: served.diagnose(NS))
    more = len(serving) + 1
    url = f"{cluster_url(served)}/v1/models/{DEFAULT_MODEL_NAME}:predict"
    put_object(served, key, (forged / MANIFEST).read_bytes())
    try:
        with RequestStream(url, {"instances": rows[:1]}) as stream:
            # replicas only: the pod template is unchanged, so the new pods come from the same ReplicaSet
            upgrade(served, f"predictor.minReplicas={more}", f"predictor.maxReplicas={more}")

            def all_new_refused() -> list[dict[str, Any]] | None:
                new = [p for p in all_predictor_pods(served) if p["metadata"]["uid"] not in serving]
                done = new and all(any("does not match the pinned" in m for m in refusals(p)) for p in new)
                return new if done else None

            new = poll(
                "the new pods to refuse the altered bundle", all_new_refused, 300, 2, lambda: served.diagnose(NS)
            )
            ready = {p["metadata"]["uid"] for p in predictor_pods(served)}
            assert ready == serving, (ready, serving)  # no new pod Ready; the old ones all still are
        assert len(stream.statuses) > 20 and not stream.failures, stream.failures[:10]
        for pod in new:
            message = next(m for m in refusals(pod) if "does not match the pinned" in m)
            assert f"pinned {registered}" in message, message  # the registered digest, not the bucket's
    finally:
        put_object(served, key, (original / MANIFEST).read_bytes())
        upgrade(served, "predictor.minReplicas=1", "predictor.maxReplicas=2")  # the module's values again
        # a refused pod keeps the altered copy in its volume: its replacement fetches the restored bundle
        for pod in all_predictor_pods(served):
            if pod["metadata"]["uid"] not in serving:
                served.kubectl("delete", "pod", pod["metadata"]["name"], "-n", NS, "--wait=false", check=False)
        poll("every predictor pod Ready again", lambda: settled_pods(served), 300, 2, lambda: served.diagnose(NS))


def copy_bundle(node: Node, src: str, dst: str, corrupt: str | None = None) -> str:
    """Copy s3://bucket/<src>/ to <dst>/ in the in-cluster MinIO (optionally flipping a byte of one file)."""
    with node.port_forward(NS, f"svc/{RELEASE}-minio", 9000) as port:
        s3 = s3_client(node, port)
        for obj in s3.list_objects_v2(Bucket=DEFAULT_BUCKET, Prefix=src + "/")["Contents"]:
            name = obj["Key"][len(src) + 1 :]
            body = s3.get_object(Bucket=DEFAULT_BUCKET, Key=obj["Key"])["Body"].read()
            if name == corrupt:
                body = body[:-1] + bytes([body[-1] ^ 1])
            s3.put_object(Bucket=DEFAULT_BUCKET, Key=f"{dst}/{name}", Body=body)
    return f"s3://{DEFAULT_BUCKET}/{dst}"


def test_upgrade_to_a_new_bundle_loses_no_request(served: Node, rows: list[dict[str, Any]]) -> None:
    uri = copy_bundle(served, f"{DEFAULT_MODEL_NAME}/1", f"{DEFAULT_MODEL_NAME}/1-copy")
    old = {p["metadata"]["uid"] for p in predictor_pods(served)}
    url = f"{cluster_url(served)}/v1/models/{DEFAULT_MODEL_NAME}:predict"
    with RequestStream(url, {"instances": rows[:1]}) as stream:
        upgrade(served, f"predictor.storageUri={uri}")
        poll(
            "the new pods to take over",
            lambda: (p := predictor_pods(served)) and not {x["metadata"]["uid"] for x in p} & old,
            300,
            1,
            lambda: served.diagnose(NS),
        )
        poll(
            "the old pods to be gone",
            lambda: (
                not [
                    p
                    for p in served.get("pods", namespace=NS, selector=f"serving.kserve.io/inferenceservice={ISVC}")[
                        "items"
                    ]
                    if p["metadata"]["uid"] in old
                ]
            ),
            120,
            1,
        )
        time.sleep(2)  # keep the stream going past the switch
    assert len(stream.statuses) > 50
    assert not stream.failures, f"{len(stream.failures)} of {len(stream.statuses)} failed: {stream.failures[:10]}"


def test_bundle_with_a_wrong_digest_never_turns_ready(served: Node, rows: list[dict[str, Any]]) -> None:
    bad = copy_bundle(served, f"{DEFAULT_MODEL_NAME}/1", f"{DEFAULT_MODEL_NAME}/1-bad", corrupt="reference.json")
    serving = {p["metadata"]["uid"] for p in predictor_pods(served)}
    good_uri = served.get("inferenceservice", ISVC, NS)["spec"]["predictor"]["containers"][0]["env"][0]["value"]
    url = f"{cluster_url(served)}/v1/models/{DEFAULT_MODEL_NAME}:predict"
    with RequestStream(url, {"instances": rows[:1]}) as stream:
        upgrade(served, f"predictor.storageUri={bad}")

        def crashed() -> bool:
            pods = served.get("pods", namespace=NS, selector=f"serving.kserve.io/inferenceservice={ISVC}")["items"]
            new = [p for p in pods if p["metadata"]["uid"] not in serving]
            return any(
                cs.get("restartCount", 0) >= 1 or cs.get("lastState", {}).get("terminated", {}).get("exitCode") == 2
                for p in new
                for cs in p.get("status", {}).get("containerStatuses", [])
            )

        poll("the new pod to fail its digest check", crashed, 300, 2, lambda: served.diagnose(NS))
        assert {p["metadata"]["uid"] for p in predictor_pods(served)} == serving  # the old pod still serves
    assert len(stream.statuses) > 20 and not stream.failures, stream.failures[:10]
    # the chart sets terminationMessagePolicy FallbackToLogsOnError: the reason is in the pod status
    pods = served.get("pods", namespace=NS, selector=f"serving.kserve.io/inferenceservice={ISVC}")["items"]
    messages = [
        state.get("terminated", {}).get("message", "")
        for p in pods
        if p["metadata"]["uid"] not in serving
        for cs in p["status"].get("containerStatuses", [])
        for state in (cs.get("lastState", {}), cs.get("state", {}))
    ]
    assert any("reference.json" in m for m in messages), messages
    upgrade(served, f"predictor.storageUri={good_uri}")
    poll("back to the good bundle", lambda: isvc_ready(served) and len(predictor_pods(served)) >= 1, 300, 2)


# -- the payload log (issue 25) ----------------------------------------------------------------
def test_payload_log_rows_land_in_minio_and_join_ground_truth(
    served: Node, rows: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``payloadLog.enabled``: requests through the InferenceService's Service become Parquet rows in the
    in-cluster MinIO equal to what was sent and answered (a refused one with its status and reason); a
    feedback file joins them and ``housing quality`` reports the version's live RMSE (labels =
    prediction ± 1000, so exactly 1000)."""
    import io
    import uuid

    import pyarrow.parquet as pq

    from monitor.feedback import join_feedback
    from monitor.quality import quality
    from monitor.store import Store
    from predictor.observe.payload_rows import PREDICTION, REASON, REQUEST_ID, ROW, STATUS, expand

    bundle = download_bundle(served, BUNDLE_1.removeprefix(f"s3://{DEFAULT_BUCKET}/"), tmp_path / "bundle")
    loaded = load_bundle(bundle)
    version, categorical = (
        loaded.manifest.model_version,
        {f.name for f in loaded.schema.features if f.kind == CATEGORICAL},
    )
    selector = f"serving.kserve.io/inferenceservice={ISVC}"
    old = {p["metadata"]["uid"] for p in served.get("pods", namespace=NS, selector=selector)["items"]}
    upgrade(served, "payloadLog.enabled=true")
    # every pod the Service can send to logs: the old ones are gone, a new one is Ready
    poll(
        "the pods with the payload log to serve alone",
        lambda: (
            (pods := served.get("pods", namespace=NS, selector=selector)["items"])
            and not {p["metadata"]["uid"] for p in pods} & old
            and predictor_pods(served)
        ),
        300,
        2,
        lambda: served.diagnose(NS),
    )
    run = uuid.uuid4().hex[:6]
    sent: dict[str, tuple[dict[str, Any], float]] = {}
    with served.port_forward(NS, f"svc/{PREDICTOR_SVC}", 80) as http_port:
        url = f"http://127.0.0.1:{http_port}/v1/models/{DEFAULT_MODEL_NAME}:predict"
        with httpx.Client(timeout=30) as client:
            for i, row in enumerate(rows):
                rid = f"node-{run}-{i}"
                r = client.post(url, json={"instances": [row]}, headers={"x-request-id": rid})
                assert r.status_code == 200 and r.headers["x-request-id"] == rid, r.text
                sent[rid] = (row, r.json()["predictions"][0])
            numeric = next(f.name for f in loaded.schema.features if f.kind != CATEGORICAL)
            bad = client.post(
                url, json={"instances": [{**rows[0], numeric: "many"}]}, headers={"x-request-id": f"bad-{run}"}
            )
            assert bad.status_code == 400, bad.text
    log_uri = f"s3://{DEFAULT_BUCKET}/payloads"  # the chart's default payloadLog.uri
    with served.port_forward(NS, f"svc/{RELEASE}-minio", 9000) as port:
        s3 = s3_client(served, port)

        def logged() -> dict[str, dict[str, Any]] | None:
            listed = s3.list_objects_v2(Bucket=DEFAULT_BUCKET, Prefix=f"payloads/model_version={version}/")
            tables = [
                expand(pq.read_table(io.BytesIO(s3.get_object(Bucket=DEFAULT_BUCKET, Key=o["Key"])["Body"].read())))
                for o in listed.get("Contents", [])
            ]
            found = {r[REQUEST_ID]: r for t in tables for r in t.to_pylist() if run in r[REQUEST_ID]}
            return found if set(found) >= {*sent, f"bad-{run}"} else None

        found = poll("the rows in MinIO (written every 10 s)", logged, 120, 3, lambda: served.diagnose(NS))
        for rid, (row, price) in sent.items():
            got = found[rid]
            assert (got[ROW], got[STATUS], got[REASON]) == (0, 200, None), got
            assert got[PREDICTION] == pytest.approx(price, rel=1e-12)
            for name, value in row.items():
                if name in categorical and isinstance(value, str):
                    assert got[name] == value, (rid, name)
                elif name not in categorical and isinstance(value, (int, float)) and value == value:
                    assert got[name] == pytest.approx(float(value), rel=1e-12), (rid, name)
        refused = found[f"bad-{run}"]
        assert refused[STATUS] == 400 and numeric in refused[REASON] and refused[PREDICTION] is None

        # ground truth arrives: prediction ± 1000 → live RMSE 1000 for this version
        creds = served.secret(NS, f"{RELEASE}-s3")
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AWS_ACCESS_KEY_ID"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["AWS_SECRET_ACCESS_KEY"])
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        labels = tmp_path / "labels.csv"
        lines = [f"{rid},{price + 1000.0 * (1 if i % 2 else -1)!r}" for i, (rid, (_, price)) in enumerate(sent.items())]
        labels.write_text("request_id,actual\n" + "\n".join(lines) + "\n")
        joined = join_feedback(str(labels), log_uri)
        assert (joined.joined, joined.unknown) == (len(sent), 0), joined.to_dict()
        (live,) = quality(Store(log_uri), None, None, [version])
        assert live.count == len(sent) and live.rmse == pytest.approx(1000.0, rel=1e-9)
        print(f"payload log on the node: {len(found)} rows of this run; live RMSE {live.rmse:.3f} (n={live.count})")
