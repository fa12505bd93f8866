"""Canary rollouts on a real node: the KServe v0.20.0 controller reconciles what ``housing rollout`` writes.

One release (dev stack: MinIO, MLflow; no training Job) serves a champion bundle trained here;
challengers derived from it (+0.2 %, +50 %, a wrong digest, one replaced in the bucket after its
registration) are uploaded to the in-cluster MinIO and registered in the in-cluster MLflow.
``housing rollout`` runs as a user runs it, with the chart's rollout ServiceAccount token (never an
admin credential). Prometheus (v3, built with
kubernetes SD by scripts/tools/prometheus.sh: Debian's has none) finds the predictor pods through
``kubernetes_sd_configs`` against this cluster's API server and the scrape annotations the chart
sets (the predictor's own metrics port: the HTTP port answers /metrics 404), so those annotations
are what is tested. Traffic enters through the Gateway (traefik,
scripts/node/gateway-up.sh): the chart's HTTPRoute (gateway.enabled) weights the champion's and the
canary's Services and ``housing rollout --route`` moves the weights (KServe v0.20 cannot weight
routes); the test's request stream only sends and counts every answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bundle.manifest import bundle_digest
from common.config import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    BUNDLE_DIGEST_ENV,
    DEFAULT_MODEL_NAME,
    TAG_BUNDLE_DIGEST,
    TAG_BUNDLE_URI,
)
from registry.lifecycle import TAG_REASON, TAG_STATUS
from rollout.backends.kserve_standard import canary_name_for
from testkit.bundles import derive_bundle
from testkit.holdout import sample_records

from .conftest import REPO
from .node import Node, poll
from .node_release import (
    GatewayTraffic,
    NodePrometheus,
    champion_and_derived,
    installed,
    isvc_ready,
    node_prometheus,
    rollout_command,
    rollout_home_env,
    serving_sets,
    upload,
    uri_of,
    version_of,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.timeout(2400)]

NS = "canary"
RELEASE = "housing"
ISVC = RELEASE


# -- bundles, MinIO, MLflow ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The champion (trained here, linear) and challengers derived from it, each its own version."""
    tag = uuid.uuid4().hex[:6]
    shifts = {"good": 0.002, "shifted": 0.5, "crash": 0.001, "next": 0.001, "again": 0.001, "tampered": 0.001}
    out = champion_and_derived(tmp_path_factory, "node-bundles", shifts, tag)
    # "forged": a consistent bundle of its own under "tampered"'s prefix (its version), uploaded over
    # it after "tampered" is registered; the install uploads "tampered" only
    forged = out["tampered"].parent / "forged"
    out["forged"] = derive_bundle(out["champion"], forged, relative_shift=0.3, version=f"tampered-{tag}")
    reference = out["crash"] / "reference.json"  # a byte flipped after the digests were written
    data = reference.read_bytes()
    reference.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    return out


def canary_of(bundles: dict[str, Path], name: str) -> str:
    """The predictor name ``housing rollout start`` gives bundle ``name``'s canary."""
    return canary_name_for(uri_of(bundles, name))


@pytest.fixture(scope="module")
def release(node: Node, bundles: dict[str, Path]) -> Iterator[Node]:
    """``helm install`` (restricted namespace, 2 predictor replicas) serving the champion bundle."""
    sets = serving_sets(
        node, NS, uri_of(bundles, "champion"), "predictor.minReplicas=2", "predictor.maxReplicas=2", mlflow=True
    )
    with installed(
        node,
        NS,
        RELEASE,
        sets,
        then=lambda: upload(node, NS, RELEASE, bundles, [name for name in bundles if name != "forged"]),
        ready=lambda: isvc_ready(node, NS, ISVC) and len(predictor_pods(node)) == 2,
        ready_what="the champion InferenceService Ready with 2 pods",
    ):
        yield node


def predictor_pods(node: Node, deployment: str | None = None) -> list[dict[str, Any]]:
    selector = f"serving.kserve.io/inferenceservice={ISVC}"
    if deployment:
        selector += f",app=isvc.{deployment}"
    return node.ready_pods(NS, selector)


@pytest.fixture(scope="module")
def mlflow_url(release: Node, bundles: dict[str, Path]) -> Iterator[str]:
    """A port-forward to the in-cluster MLflow, with the champion registered as version 1."""
    from mlflow import MlflowClient

    with release.port_forward(NS, f"svc/{RELEASE}-mlflow", 5000) as port:
        url = f"http://127.0.0.1:{port}"
        client = poll(
            "MLflow",
            lambda: (
                MlflowClient(tracking_uri=url).search_registered_models() is not None and MlflowClient(tracking_uri=url)
            ),
            300,
            3,
        )
        client.create_registered_model(DEFAULT_MODEL_NAME)
        register(url, uri_of(bundles, "champion"), ALIAS_CHAMPION)
        yield url


def register(url: str, uri: str, alias: str = ALIAS_CHALLENGER, digest: str | None = None) -> str:
    """A registered version for the bundle at ``uri`` (its bundle_uri tag, and bundle_digest when
    given), under ``alias``; its number."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    tags = {TAG_BUNDLE_URI: uri, **({TAG_BUNDLE_DIGEST: digest} if digest else {})}
    mv = client.create_model_version(DEFAULT_MODEL_NAME, source=uri, tags=tags)
    client.set_registered_model_alias(DEFAULT_MODEL_NAME, alias, mv.version)
    return str(mv.version)


# -- the rollout's credentials, Prometheus, traffic -------------------------------------------------
@pytest.fixture(scope="module")
def prometheus(release: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodePrometheus]:
    with node_prometheus(release, NS, tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return sample_records("ames", 4, 7)


@pytest.fixture(scope="module")
def rollout_env(release: Node, mlflow_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """What ``housing rollout`` runs with: the rollout ServiceAccount's token, the in-cluster MLflow,
    and the in-cluster MinIO (the offline quality gate reads both bundles before a canary)."""
    home = tmp_path_factory.mktemp("rollout-home")
    creds = release.secret(NS, f"{RELEASE}-s3")
    with release.port_forward(NS, f"svc/{RELEASE}-minio", 9000) as port:
        yield {
            **rollout_home_env(release, NS, RELEASE, home),
            "MLFLOW_TRACKING_URI": mlflow_url,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }


def housing(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return rollout_command(env, ISVC, NS, *args, timeout=timeout)


def run_args(prometheus: NodePrometheus, *extra: str) -> list[str]:
    return [
        "run",
        "--steps",
        "50,100",
        "--interval",
        "24",  # the mean-shift test decides a +0.2 % canary from histograms alone (rollout/README.md: power curve)
        "--min-requests",
        "20",
        "--max-failures",
        "1",
        "--prometheus-url",
        prometheus.url,
        *extra,
    ]


def mlflow_version(url: str, version: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url).get_model_version(DEFAULT_MODEL_NAME, version)


def canary_gone(node: Node, name: str) -> bool:
    deployments = node.get("deployments", namespace=NS)["items"]
    return not [d for d in deployments if d["metadata"]["name"] == f"{ISVC}-{name}-predictor"]


# -- the tests (in order: each leaves the champion serving) ---------------------------------------------
def test_crashing_challenger_is_rolled_back_and_the_champion_answers_everything(
    release: Node, prometheus: NodePrometheus, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    version = register(mlflow_url, uri_of(bundles, "crash"))
    before = release.get("inferenceservice", ISVC, NS)["metadata"]["resourceVersion"]
    refused = housing(rollout_env, *run_args(prometheus))  # the offline gate reads the bundle first
    assert refused.returncode == 4 and "fails verification" in refused.stdout + refused.stderr, refused.stdout
    assert release.get("inferenceservice", ISVC, NS)["metadata"]["resourceVersion"] == before  # nothing deployed
    # a challenger that crashes for a reason the gate cannot see: the same bundle past the gate
    with GatewayTraffic(release, rows) as traffic:
        result = housing(rollout_env, *run_args(prometheus, "--ready-timeout", "60", "--skip-quality-gate"))
        time.sleep(2)
    out = result.stdout + result.stderr
    assert result.returncode == 3, out
    assert "never became Ready" in out, out
    assert "canary" not in release.get("inferenceservice", ISVC, NS)["spec"]
    poll(
        "the crashed canary's Deployment to be deleted",
        lambda: canary_gone(release, canary_of(bundles, "crash")),
        120,
        2,
    )
    assert len(traffic.answers) > 100 and not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    assert set(traffic.versions()) == {version_of(bundles, "champion")}
    tags = mlflow_version(mlflow_url, version).tags
    assert tags[TAG_STATUS] == "rejected" and "never became Ready" in tags[TAG_REASON]


def _refusal(node: Node, canary: str) -> str | None:
    """What the canary's predictor container said when it exited (its termination message)."""
    for pod in node.get("pods", namespace=NS)["items"]:
        if (pod["metadata"].get("labels") or {}).get("app") != f"isvc.{ISVC}-{canary}-predictor":
            continue
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            for state in (status.get("lastState") or {}, status.get("state") or {}):
                message = (state.get("terminated") or {}).get("message") or ""
                if status["name"] == "kserve-container" and "refusing to serve" in message:
                    return message
    return None


def test_a_bundle_replaced_in_the_bucket_after_registration_never_turns_ready(
    release: Node, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    """Issue 22 item 4: the rollout pins the canary to the registered digest, so a bundle changed in
    the bucket after registration — consistent in itself, its own bundle.json vouching for it — is
    refused by the offline gate and by the predictor; the champion keeps answering everything."""
    uri, registered = uri_of(bundles, "tampered"), bundle_digest(bundles["tampered"])
    register(mlflow_url, uri, digest=registered)
    upload(release, NS, RELEASE, bundles, ["forged"])  # the same prefix, overwritten after registration
    assert uri_of(bundles, "forged") == uri and bundle_digest(bundles["forged"]) != registered
    refused = housing(rollout_env, "start", "--percent", "10")  # the offline gate reads the bundle first
    assert refused.returncode == 4 and "does not match the pinned" in refused.stdout + refused.stderr, refused.stdout
    canary = canary_of(bundles, "tampered")
    with GatewayTraffic(release, rows) as traffic:
        started = housing(rollout_env, "start", "--percent", "10", "--skip-quality-gate", "--ready-timeout", "90")
        assert started.returncode == 1 and "not Ready" in started.stdout + started.stderr, started.stdout
        (entry,) = release.get("inferenceservice", ISVC, NS)["spec"]["canary"]
        (container,) = entry["predictor"]["containers"]
        assert {e["name"]: e.get("value") for e in container["env"]}[BUNDLE_DIGEST_ENV] == registered
        message = poll("the canary's refusal", lambda: _refusal(release, canary), 120, 3)
        assert "does not match the pinned" in message, message
        rolled_back = housing(rollout_env, "rollback", "--reason", "bundle replaced after registration")
        assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
        poll("the refused canary's Deployment to be deleted", lambda: canary_gone(release, canary), 120, 2)
    assert len(traffic.answers) > 100 and not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    assert set(traffic.versions()) == {version_of(bundles, "champion")}


def test_shifted_challenger_is_rolled_back_by_its_gates(
    release: Node, prometheus: NodePrometheus, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    version = register(mlflow_url, uri_of(bundles, "shifted"))
    with GatewayTraffic(release, rows) as traffic:  # past the offline gate (it finds +50 % worse): the online gates
        result = housing(rollout_env, *run_args(prometheus, "--allow-worse"))
        time.sleep(2)
    out = result.stdout + result.stderr
    assert result.returncode == 3, out
    assert "mean_shift=" in out, out  # the gate read the canary pods' series through Prometheus
    poll(
        "the shifted canary's Deployment to be deleted",
        lambda: canary_gone(release, canary_of(bundles, "shifted")),
        120,
        2,
    )
    assert not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    served = traffic.versions()
    assert served[version_of(bundles, "shifted")] > 0, served  # the canary did serve before the gates judged it
    assert mlflow_version(mlflow_url, version).tags[TAG_STATUS] == "rejected"


def test_good_challenger_is_promoted_with_every_gate_read_from_the_pods(
    release: Node, prometheus: NodePrometheus, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    version = register(mlflow_url, uri_of(bundles, "good"))
    good = version_of(bundles, "good")
    cmd = [sys.executable, "-m", "housing", "rollout", *run_args(prometheus), "-b", "standard", "--name", ISVC]
    with GatewayTraffic(release, rows) as traffic:
        proc = subprocess.Popen(
            [*cmd, "-n", NS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=rollout_env, cwd=REPO
        )
        try:
            holder = poll(
                "the first run to hold the rollout Lease",
                lambda: release.kubectl(
                    "get", "lease", f"{ISVC}-rollout", "-n", NS, "-o", "jsonpath={.spec.holderIdentity}", check=False
                ).stdout.strip(),
                120,
                1,
            )
            second = housing(rollout_env, *run_args(prometheus), timeout=120)
            assert second.returncode == 1, second.stdout + second.stderr
            assert "another rollout" in second.stderr and holder in second.stderr, second.stderr
            shown = housing(rollout_env, "status", timeout=120)
            assert holder in shown.stdout, shown.stdout
            stdout, _ = proc.communicate(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
        result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, "")
        poll("answers from the promoted model only", lambda: set(traffic.versions(last=30)) == {good}, 120, 1)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "promoted: all steps passed" in out
    assert "challenger Ready after" in out
    log = sorted((Path(rollout_env["HOUSING_HOME"]) / "rollouts").glob("*.jsonl"))[-1]
    steps = [e for e in map(json.loads, log.read_text().splitlines()) if e.get("event") == "step"]
    for step in steps:  # every gate had data from the pods: p95 latency included (ours, per version)
        for key in ("error_rate", "p95_latency", "mean_shift", "psi"):
            assert step["values"].get(key) is not None, (key, step["values"])
    spec = release.get("inferenceservice", ISVC, NS)["spec"]
    assert spec["predictor"]["name"] == canary_of(bundles, "good") and "canary" not in spec
    assert not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    assert client.get_model_version_by_alias(DEFAULT_MODEL_NAME, ALIAS_CHAMPION).version == version


def test_start_waits_for_ready_keeps_capacity_and_promote_keeps_the_canary_pods(
    release: Node, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    register(mlflow_url, uri_of(bundles, "next"))
    nxt, good, nxt_canary = version_of(bundles, "next"), canary_of(bundles, "good"), canary_of(bundles, "next")
    pods = poll(  # the promoted Deployment settles at the stable's 2 replicas (its canary size was 2)
        "2 Ready pods of the promoted stable",
        lambda: (p := predictor_pods(release, f"{ISVC}-{good}-predictor")) and len(p) == 2 and p,
        240,
        2,
        lambda: release.diagnose(NS),
    )
    stable_before = {p["metadata"]["uid"] for p in pods}
    with GatewayTraffic(release, rows) as traffic:
        t0 = time.monotonic()
        started = housing(rollout_env, "start", "--percent", "50", "--ready-timeout", "300")
        start_seconds = time.monotonic() - t0
        assert started.returncode == 0, started.stdout + started.stderr
        assert "canary Ready after" in started.stdout
        canary_pods = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{nxt_canary}-predictor")}
        assert canary_pods
        # the champion kept both pods (v0.20 alone would scale it to minReplicas − canary pods)
        stable_now = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{good}-predictor")}
        assert stable_now == stable_before
        t0 = time.monotonic()
        promoted = housing(rollout_env, "promote")
        promote_seconds = time.monotonic() - t0
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        poll("the old stable Deployment to be deleted", lambda: canary_gone(release, good), 180, 1)
        poll("answers from the promoted model only", lambda: set(traffic.versions(last=30)) == {nxt}, 120, 1)
        after = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{nxt_canary}-predictor")}
        assert canary_pods <= after  # the canary's pods became the primary without a restart
    lost = f"{len(traffic.failures)} of {len(traffic.answers)}: {traffic.failures[:10]} {traffic.details[:10]}"
    assert not traffic.failures, lost
    isvc = release.get("inferenceservice", ISVC, NS)
    assert isvc["spec"]["predictor"]["name"] == nxt_canary
    assert f"{ISVC}-{nxt_canary}-predictor" in isvc["status"]["address"]["url"]  # KServe's address moved; ours did not
    print(
        f"\nrollout start → canary Ready: {start_seconds:.1f} s; promote: {promote_seconds:.1f} s; "
        f"requests: {len(traffic.answers)}, lost: {len(traffic.failures)}"
    )


def lease_progress(node: Node, key: str) -> str:
    """One progress annotation of the rollout Lease ('' while there is none)."""
    jsonpath = "{.metadata.annotations.rollout\\.housing\\.dev/" + key + "}"
    got = node.kubectl("get", "lease", f"{ISVC}-rollout", "-n", NS, "-o", f"jsonpath={jsonpath}", check=False)
    return got.stdout.strip()


def test_a_killed_run_shows_where_it_stopped_and_the_next_run_resumes_it(
    release: Node, prometheus: NodePrometheus, rollout_env: dict[str, str], mlflow_url: str, rows: list, bundles: dict
) -> None:
    register(mlflow_url, uri_of(bundles, "again"))
    again, stable, canary = version_of(bundles, "again"), canary_of(bundles, "next"), canary_of(bundles, "again")
    poll(
        "2 Ready pods of the promoted stable",
        lambda: len(predictor_pods(release, f"{ISVC}-{stable}-predictor")) == 2,
        240,
        2,
        lambda: release.diagnose(NS),
    )
    cmd = [sys.executable, "-m", "housing", "rollout", *run_args(prometheus), "-b", "standard", "--name", ISVC]
    with GatewayTraffic(release, rows) as traffic:
        proc = subprocess.Popen(
            [*cmd, "-n", NS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=rollout_env, cwd=REPO
        )

        def second_step_or_end() -> str | None:
            if proc.poll() is not None:
                return "ended"
            at = lease_progress(release, "challenger-uri"), lease_progress(release, "weight")
            return "at 100 %" if at == (uri_of(bundles, "again"), "100") else None

        try:  # killed (no chance to clean up) once it walked on to its second step
            where = poll("the run at its second step (100 %)", second_step_or_end, 600, 1)
        finally:
            proc.kill()
            output = proc.communicate(timeout=30)[0]
        assert where == "at 100 %", f"the run ended before its second step:\n{output[-3000:]}"
        canary_pods = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{canary}-predictor")}
        assert canary_pods
        # first, while its Lease (3 looks, renewed every look) has ≥ 48 s left: one CLI start under a
        # load of ~13 took that long when `status` went before it
        refused = housing(rollout_env, *run_args(prometheus), timeout=120)  # its Lease is not expired yet
        assert refused.returncode == 1 and "another rollout" in refused.stderr, refused.stdout + refused.stderr
        shown = housing(rollout_env, "status", timeout=120)  # "held by …" or "last held by …, expired"
        assert "held by" in shown.stdout and "weight=100" in shown.stdout and "step=2/2" in shown.stdout, shown.stdout
        poll(
            "the killed run's Lease to expire",
            lambda: "expired" in housing(rollout_env, "status", timeout=120).stdout,
            150,
            5,
        )
        lease = json.loads(housing(rollout_env, "status", "--json", timeout=120).stdout)["lease"]
        assert lease["holder"] and not lease["live"], lease  # held by the killed run, expired
        assert lease["progress"]["weight"] == "100" and lease["progress"]["step"] == "2/2", lease
        # the load's 8 repeated rows drift hard against the training data (PSI ≈ 5, for the champion
        # too): the drift gate's margin over the champion's score grows with it (rollout/gates.py)
        resumed = housing(rollout_env, *run_args(prometheus))
        out = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, out
        assert "taken over from an expired run" in out and "resuming" in out and "steps 100" in out, out
        assert "promoted: all steps passed" in out, out
        poll("answers from the resumed model only", lambda: set(traffic.versions(last=30)) == {again}, 120, 1)
        after = {p["metadata"]["uid"] for p in predictor_pods(release, f"{ISVC}-{canary}-predictor")}
        assert canary_pods <= after  # adopted, then promoted: the same pods all along
    assert not traffic.failures, (traffic.failures[:10], traffic.details[:10])
    assert release.get("inferenceservice", ISVC, NS)["spec"]["predictor"]["name"] == canary
