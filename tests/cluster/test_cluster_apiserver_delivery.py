"""Continuous delivery against a real kube-apiserver (no controllers): helm's lookup keeps a
promotion, the rollout runner's Events and pause/resume/rollback through the rollout Lease.

The API server and the KServe CRD come from tests/cluster/apiserver.py (the `apiserver` fixture);
helm renders with ``--dry-run=server`` so its ``lookup`` reads the live InferenceService.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
import yaml

from rollout.backends import kserve_common as common
from rollout.backends import kserve_standard as st
from testkit.poll import poll
from testkit.webhook import WebhookReceiver

from .apiserver import unique
from .conftest import CHART, NAMESPACE, REPO, VALUE_SETS, by_kind, rollout_rbac, run_helm

kclient = pytest.importorskip("kubernetes.client")
ApiException = pytest.importorskip("kubernetes.client.exceptions").ApiException

pytestmark = pytest.mark.cluster
GROUP, VERSION, PLURAL = common.GROUP, common.VERSION, common.PLURAL
CHALLENGER = "s3://models/housing/2"


@pytest.fixture(scope="module")
def admin(apiserver) -> Any:
    """CustomObjectsApi as a system:masters user, with the chart's namespace created."""
    return apiserver.admin_objects(NAMESPACE)


def helm_render(
    helm_bin, release: str, sets: list[str] = (), server: Any = None, *, upgrade: bool = True
) -> list[dict]:
    """helm template of the chart as ``release``; with ``server``, an upgrade (or an install) whose lookups read it."""
    args = ["template", release, str(CHART), "--namespace", NAMESPACE]
    if server is not None:
        args += ["--is-upgrade"] * upgrade + ["--dry-run=server", "--kubeconfig", str(server.kubeconfig)]
    for item in sets:
        args += ["--set", item]
    result = run_helm(helm_bin, args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def champion_of(objects: list[dict]) -> tuple[str | None, str | None]:
    (isvc,) = by_kind(objects, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    return common.storage_uri(predictor), predictor.get("name")


def pin_of(objects: list[dict]) -> str | None:
    (isvc,) = by_kind(objects, "InferenceService")
    return common.bundle_digest(isvc["spec"]["predictor"])


def test_helm_upgrade_keeps_a_promotion_made_by_the_rollout(helm_bin, apiserver, admin):
    release = unique("housing")  # the InferenceService is named after the release
    (isvc,) = by_kind(helm_render(helm_bin, release), "InferenceService")
    admin.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, isvc, field_validation="Strict")
    before = champion_of(helm_render(helm_bin, release, server=apiserver))
    assert before == ("s3://models/housing/1", None)  # nothing promoted: values
    backend = st.StandardBackend(release, NAMESPACE, api=admin)
    backend.start(CHALLENGER, 10, digest="2" * 64)
    backend.promote()
    # plain `helm upgrade` and `--reuse-values` render the same values: both keep the promotion,
    # pinned to the digest the rollout wrote
    upgraded = helm_render(helm_bin, release, server=apiserver)
    assert (champion_of(upgraded), pin_of(upgraded)) == ((CHALLENGER, "v2"), "2" * 64)
    scaled = helm_render(
        helm_bin, release, ["predictor.minReplicas=3", "predictor.maxReplicas=3"], server=apiserver
    )  # config only
    assert (champion_of(scaled), pin_of(scaled)) == ((CHALLENGER, "v2"), "2" * 64)
    # a new predictor.storageUri is a deliberate change: values win, its digest too
    new = ["predictor.storageUri=s3://models/housing/9", f"predictor.bundleDigest={'9' * 64}"]
    chosen = helm_render(helm_bin, release, new, server=apiserver)
    assert (champion_of(chosen), pin_of(chosen)) == (("s3://models/housing/9", None), "9" * 64)
    (rendered,) = by_kind(chosen, "InferenceService")
    assert rendered["metadata"]["annotations"]["rollout.housing.dev/values-storage-uri"] == "s3://models/housing/9"


def test_runner_events_on_the_inferenceservice_with_the_rollout_role(apiserver, render, admin, tmp_path):
    from rollout.kube_events import EventRecorder, recent_events

    name = unique("events")
    (rendered,) = by_kind(render(VALUE_SETS["standard"]), "InferenceService")
    isvc = copy.deepcopy(rendered)  # the session's render is cached: renaming it in place renamed it for later tests
    isvc["metadata"]["name"] = name
    created = admin.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, isvc)
    as_sa = rollout_rbac(apiserver, render)
    recorder = EventRecorder(kclient.CoreV1Api(as_sa), NAMESPACE, name, created["metadata"]["uid"], "runner-0")
    for i in range(3):
        recorder.record("RolloutStep", f"step {i + 1}/3: champion 90% / challenger 10%: continue")
    recorder.record("RolloutRolledBack", "rolled back: psi 0.9 > 0.25", warning=True)
    assert recorder.failures == 0
    events = recent_events(kclient.CoreV1Api(as_sa), NAMESPACE, name)
    assert [e["reason"] for e in events] == ["RolloutStep"] * 3 + ["RolloutRolledBack"]
    assert events[-1]["type"] == "Warning" and "psi" in events[-1]["message"]
    # `housing rollout status` from any machine with a kube context shows them
    env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig), "HOUSING_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "housing", "rollout", "status", "-b", "standard", "--name", name, "-n", NAMESPACE]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "RolloutRolledBack" in out.stdout and "rolled back: psi 0.9" in out.stdout, out.stdout


def _paused_runner(admin, name: str, hook: WebhookReceiver, lines: list[str]) -> tuple[Any, Any, dict]:
    from rollout.auto import AutoOptions, LeaseCommands, Runner
    from rollout.lease import RolloutLease
    from rollout.notify import Notifier
    from rollout.orchestrator import RunOptions

    backend = st.StandardBackend(name, NAMESPACE, api=admin)
    backend.start(CHALLENGER, 50)
    lease = RolloutLease(admin, NAMESPACE, name, holder="runner-0", duration=60)
    lease.acquire()
    notifier = Notifier(hook.url, timeout=2, retries=1, backoff=0.05)
    options = AutoOptions(run=RunOptions(steps=[10, 50, 100], name=name), pause_at=50)
    runner = Runner(backend, options, lines.append, notifier=notifier, commands=LeaseCommands(admin, NAMESPACE, name))
    runner._current = {"challenger_version": "2", "challenger_uri": CHALLENGER}
    result: dict = {}

    def step() -> None:
        try:
            runner._step_hook({"step": "2/3", "weight": 50, "failures": 0})
            result["outcome"] = "resumed"
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            result["outcome"] = exc

    thread = threading.Thread(target=step, daemon=True)
    thread.start()
    poll(lambda: LeaseCommands(admin, NAMESPACE, name).read(), lambda a: a.get("paused-at") == "50", timeout=30)
    return thread, notifier, result


def _cli(apiserver, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig), "HOUSING_HOME": str(tmp_path / "home")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "housing", "rollout", *args, "-n", NAMESPACE]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def _isvc_with_chart_spec(render, admin, prefix: str) -> str:
    name = unique(prefix)
    (rendered,) = by_kind(render(VALUE_SETS["standard"]), "InferenceService")
    isvc = copy.deepcopy(rendered)  # the session's render is cached: renaming it in place renamed it for later tests
    isvc["metadata"]["name"] = name
    admin.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, isvc)
    return name


def test_pause_waits_until_housing_rollout_resume(apiserver, render, admin, tmp_path, monkeypatch):
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    name = _isvc_with_chart_spec(render, admin, "pause")
    assert _cli(apiserver, tmp_path, "resume", "--name", name).returncode == 1  # nothing paused yet: refused
    lines: list[str] = []
    with WebhookReceiver() as hook:
        thread, notifier, result = _paused_runner(admin, name, hook, lines)
        thread.join(3)
        assert thread.is_alive(), "the runner did not wait at its pause step"
        done = _cli(apiserver, tmp_path, "resume", "--name", name)
        assert done.returncode == 0, done.stderr
        assert "paused at 50%" in done.stdout
        thread.join(30)
        notifier.close()
        assert result["outcome"] == "resumed"
        assert hook.events() == ["pause", "resumed"]
    assert [line.split(":")[0] for line in lines] == ["RolloutPaused", "RolloutResumed"]
    stored = admin.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    assert stored["spec"]["canary"][0]["trafficPercent"] == 50  # still at its step, the walk goes on


def test_rollback_while_paused_is_done_by_the_runner(apiserver, render, admin, tmp_path, monkeypatch):
    from rollout.auto import LeaseCommands, RolloutStopped

    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    name = _isvc_with_chart_spec(render, admin, "pauserb")
    lines: list[str] = []
    with WebhookReceiver() as hook:
        thread, notifier, result = _paused_runner(admin, name, hook, lines)
        # the Lease is held by the runner: `rollback` leaves it a command instead of refusing
        done = _cli(apiserver, tmp_path, "rollback", "-b", "standard", "--name", name, "--reason", "looks wrong")
        assert done.returncode == 0, done.stderr
        assert "asked the paused rollout runner to roll back" in done.stdout
        thread.join(30)
        notifier.close()
        assert isinstance(result["outcome"], RolloutStopped) and "looks wrong" in str(result["outcome"])
        assert hook.events() == ["pause", "rollback"]
    stored = admin.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    assert "canary" not in stored["spec"]  # the canary is gone, the champion serves everything
    assert LeaseCommands(admin, NAMESPACE, name).read().get("paused-at") is None


def _finished_job(name: str) -> dict:
    """A Job as a kept install Job looks to the API server (what runs in it does not matter here)."""
    container = {"name": "training", "image": "housing-training:0.1.0"}
    pod = {"spec": {"restartPolicy": "Never", "containers": [container]}}
    return {"metadata": {"name": name}, "spec": {"template": pod}}


def test_a_reinstall_trains_again_beside_the_job_helm_kept(helm_bin, apiserver, admin):
    """helm keeps the install's training Job (resource-policy keep) past `helm uninstall`; a reinstall
    that reused its name adopted the finished Job and trained nothing (skaffold run → delete → dev on the
    node: the new dev MinIO never got a bundle). A reinstall now takes the next free name."""
    release = unique("housing")
    batch = kclient.BatchV1Api(apiserver.api_client())

    def install_job() -> str:
        objects = helm_render(helm_bin, release, ["training.enabled=true"], server=apiserver, upgrade=False)
        (job,) = [j for j in by_kind(objects, "Job") if "-train-install" in j["metadata"]["name"]]
        return job["metadata"]["name"]

    assert install_job() == f"{release}-train-install"
    batch.create_namespaced_job(NAMESPACE, _finished_job(f"{release}-train-install"))
    assert install_job() == f"{release}-train-install-2"
    batch.create_namespaced_job(NAMESPACE, _finished_job(f"{release}-train-install-2"))
    assert install_job() == f"{release}-train-install-3"
    # an upgrade renders no training Job at all, whatever is kept
    upgraded = helm_render(helm_bin, release, ["training.enabled=true"], server=apiserver)
    assert [j for j in by_kind(upgraded, "Job") if "-train-install" in j["metadata"]["name"]] == []


def test_helm_upgrade_applies_over_a_promotion_made_by_the_runner(helm_bin, apiserver, admin):
    """helm 4 applies server-side: after the runner promoted, `helm upgrade --reuse-values` must
    apply the InferenceService without a field-manager conflict — also when it changes the
    predictor container (it failed on the node: "conflict with "OpenAPI-Generator" …
    .spec.predictor.containers": the runner's JSON patch had taken the atomic list from helm, see
    rollout/backends/field_owners.py) — and keep the promoted bundle."""
    release = unique("housing")
    kube = ["--kubeconfig", str(apiserver.kubeconfig), "-n", NAMESPACE]
    sets = ["predictor.waitForBundleSeconds=0"]
    installed = run_helm(helm_bin, ["install", release, str(CHART), *kube, *[a for s in sets for a in ("--set", s)]])
    assert installed.returncode == 0, installed.stderr

    def live() -> dict:
        return admin.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, release)

    def owners(obj: dict) -> dict[str, str]:
        """manager (operation) of each entry owning .spec.predictor.containers"""
        return {
            e["manager"]: e["operation"]
            for e in obj["metadata"]["managedFields"]
            if "f:containers" in ((e.get("fieldsV1") or {}).get("f:spec") or {}).get("f:predictor", {})
        }

    try:
        assert owners(live()) == {"helm": "Apply"}  # helm 4 installed it server-side
        backend = st.StandardBackend(release, NAMESPACE, api=admin)
        backend.start(CHALLENGER, 10, digest="c" * 64)
        backend.promote()
        promoted = live()
        for more in (["predictor.maxReplicas=2"], ["payloadLog.enabled=true"]):  # the second changes the container
            upgraded = run_helm(
                helm_bin,
                ["upgrade", release, str(CHART), *kube, "--reuse-values", *[a for s in more for a in ("--set", s)]],
            )
            assert upgraded.returncode == 0, upgraded.stderr
        assert owners(promoted) == {"helm": "Apply"}  # the runner gave the containers back
        managers = {e["manager"] for e in promoted["metadata"]["managedFields"]}
        assert "housing-rollout" in managers and "OpenAPI-Generator" not in managers
        after = live()
        predictor = after["spec"]["predictor"]
        assert common.storage_uri(predictor) == CHALLENGER and common.bundle_digest(predictor) == "c" * 64
        (container,) = predictor["containers"]
        assert "--payload_log_uri" in container["args"]  # the upgrade's change is in
        assert owners(after) == {"helm": "Apply"}
    finally:
        run_helm(helm_bin, ["uninstall", release, *kube])
