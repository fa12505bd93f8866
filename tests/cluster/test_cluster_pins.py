"""The install's bundle pin (issue 22 item 4) against a real kube-apiserver, with the real helm.

``helm install`` renders the predictor's ``HOUSING_BUNDLE_DIGEST`` from the ConfigMap
``<release>-bundle-pins`` (the key of its storage URI); the install's training Job, as its own
ServiceAccount, writes the registered digest there (training/pin.py). Checked here: that account may
write that ConfigMap and no other, and helm's later upgrades (server-side apply, lookups) keep both
the recorded key and the predictor's reference to it — including an upgrade made while the Job is
still training — so no predictor pod ever depends on MLflow remembering the registration.
No kubelet runs here: what a pod does with the reference is the node tier's
(test_node_chart.py::test_the_installs_bundle_altered_after_registration_never_turns_ready).
"""

from __future__ import annotations

from typing import Any

import pytest

from common.config import BUNDLE_DIGEST_ENV
from training.pin import PinError, pin_key, record_pin

from .apiserver import unique
from .conftest import CHART, NAMESPACE, TOOLS_DIR, _missing, run_helm

pytestmark = pytest.mark.cluster

kclient = pytest.importorskip("kubernetes.client")
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
BUNDLE_1 = "s3://models/housing/1"
DIGEST = "d" * 64


@pytest.fixture(scope="module")
def admin(apiserver) -> Any:
    return apiserver.admin_objects(NAMESPACE)


def digest_env(admin: Any, release: str) -> dict | None:
    """The live champion's HOUSING_BUNDLE_DIGEST entry (None when unpinned)."""
    live = admin.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, release)
    (container,) = live["spec"]["predictor"]["containers"]
    return next((e for e in container.get("env", []) if e["name"] == BUNDLE_DIGEST_ENV), None)


def test_the_install_job_records_the_pin_and_helm_upgrades_keep_it(helm_bin, apiserver, admin):
    release = unique("housing")
    pins, writer = f"{release}-bundle-pins", f"{release}-train-install"
    kube = ["--kubeconfig", str(apiserver.kubeconfig), "-n", NAMESPACE]

    def helm(verb: str, *sets: str) -> None:
        extra = ["--reuse-values"] if verb == "upgrade" else []
        result = run_helm(
            helm_bin, [verb, release, str(CHART), *kube, *extra, *[a for s in sets for a in ("--set", s)]]
        )
        assert result.returncode == 0, result.stderr

    core = kclient.CoreV1Api(apiserver.api_client())
    reference = {"valueFrom": {"configMapKeyRef": {"name": pins, "key": pin_key(BUNDLE_1)}}}
    helm("install")
    try:
        assert digest_env(admin, release) == {"name": BUNDLE_DIGEST_ENV, **reference}
        assert not core.read_namespaced_config_map(pins, NAMESPACE).data  # nothing recorded yet
        # an upgrade while the Job is still training keeps the reference (the live object pins so)
        helm("upgrade", "training.enabled=false", "predictor.maxReplicas=3")
        assert digest_env(admin, release) == {"name": BUNDLE_DIGEST_ENV, **reference}
        helm("upgrade", "training.enabled=true")  # the Job's account again (an upgrade renders no Job)

        as_job = apiserver.api_client()
        as_job.set_default_header("Impersonate-User", f"system:serviceaccount:{NAMESPACE}:{writer}")
        said: list[str] = []
        record_pin(BUNDLE_1, DIGEST, pins, NAMESPACE, kclient.CoreV1Api(as_job), say=said.append)
        assert core.read_namespaced_config_map(pins, NAMESPACE).data == {pin_key(BUNDLE_1): DIGEST}
        assert said == [f"pinned {BUNDLE_1} to {DIGEST} in ConfigMap {NAMESPACE}/{pins} (key {pin_key(BUNDLE_1)})"]
        # that ConfigMap only: the Role names it (403 is not retried)
        with pytest.raises(PinError, match="HTTP 403"):
            record_pin(BUNDLE_1, DIGEST, f"{release}-other", NAMESPACE, kclient.CoreV1Api(as_job), interval=0)

        # helm applies the chart's ConfigMap (no data) server-side: the recorded key stays
        helm("upgrade", "training.enabled=false", "predictor.maxReplicas=2")
        assert core.read_namespaced_config_map(pins, NAMESPACE).data == {pin_key(BUNDLE_1): DIGEST}
        assert digest_env(admin, release) == {"name": BUNDLE_DIGEST_ENV, **reference}
        # a URI nothing recorded, without a digest: unpinned as before; back to the install's: pinned
        # from the recorded key again (the chart's lookup of the ConfigMap)
        helm("upgrade", "predictor.storageUri=s3://models/housing/1-copy")
        assert digest_env(admin, release) is None
        helm("upgrade", f"predictor.storageUri={BUNDLE_1}")
        assert digest_env(admin, release) == {"name": BUNDLE_DIGEST_ENV, **reference}
        # a digest in values wins over the recorded one
        helm("upgrade", f"predictor.bundleDigest={'e' * 64}")
        assert digest_env(admin, release) == {"name": BUNDLE_DIGEST_ENV, "value": "e" * 64}
    finally:
        run_helm(helm_bin, ["uninstall", release, *kube])


def test_skaffolds_helm_3_redeploy_keeps_the_pin(apiserver, admin):
    """skaffold deploys with helm 3 (three-way merge, not server-side apply): its redeploy of new images
    — the case that left the reverted design's pods waiting on a restarted MLflow — keeps the recorded
    key and the predictor's reference to it."""
    helm3 = TOOLS_DIR / "helm3" / "helm"
    if not helm3.is_file():
        _missing("helm 3 (skaffold's)", "bash scripts/tools/skaffold.sh")
    release = unique("housing")
    pins = f"{release}-bundle-pins"
    kube = ["--kubeconfig", str(apiserver.kubeconfig), "-n", NAMESPACE]
    core = kclient.CoreV1Api(apiserver.api_client())
    installed = run_helm(helm3, ["install", release, str(CHART), *kube])
    assert installed.returncode == 0, installed.stderr
    try:
        as_job = apiserver.api_client()
        as_job.set_default_header("Impersonate-User", f"system:serviceaccount:{NAMESPACE}:{release}-train-install")
        record_pin(BUNDLE_1, DIGEST, pins, NAMESPACE, kclient.CoreV1Api(as_job), say=lambda _: None)
        images = ["--set", "image.tag=rebuilt", "--set", "training.image.tag=rebuilt"]
        upgraded = run_helm(helm3, ["upgrade", release, str(CHART), *kube, *images])
        assert upgraded.returncode == 0, upgraded.stderr
        assert core.read_namespaced_config_map(pins, NAMESPACE).data == {pin_key(BUNDLE_1): DIGEST}
        reference = {"configMapKeyRef": {"name": pins, "key": pin_key(BUNDLE_1)}}
        assert digest_env(admin, release) == {"name": BUNDLE_DIGEST_ENV, "valueFrom": reference}
    finally:
        run_helm(helm3, ["uninstall", release, *kube])
