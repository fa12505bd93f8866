"""charts/housing scale-out values: KServe's autoscaling fields, the PodDisruptionBudget, --workers.

Rendered with the real helm; the InferenceService's field names are checked against the KServe
v0.20.0 CRD that scripts/tools/kube.sh caches (the file the API-server tier installs), and every
object against the kserve SDK models / the Kubernetes schemas, as in test_cluster_chart.py.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from rollout.backends.kserve_standard import CANARY_OMIT
from rollout.validate import validate_isvc

from .apiserver import find_tools
from .conftest import NAMESPACE, by_kind, in_ci, run_helm, template_args

pytestmark = pytest.mark.cluster

K8S_VERSION = kubernetes_validate.latest_version()
CANARY = ["canary.enabled=true", "canary.storageUri=s3://models/housing/2", "canary.trafficPercent=10"]
AUTOSCALE = [
    "predictor.minReplicas=2",
    "predictor.maxReplicas=5",
    "predictor.scaleMetric=cpu",
    "predictor.scaleTarget=60",
]
SCALE_FIELDS = ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget")


def _predictor(objects: list[dict]) -> dict:
    (isvc,) = by_kind(objects, "InferenceService")
    validate_isvc(isvc)
    return isvc["spec"]["predictor"]


def _workers(objects: list[dict]) -> str:
    args = _predictor(objects)["containers"][0]["args"]
    return args[args.index("--workers") + 1]


def _crd_predictor_properties() -> dict:
    tools, missing = find_tools()
    if tools is None:
        message = f"the KServe CRD is not cached ({', '.join(missing)}); run: bash scripts/tools/kube.sh"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    crd = yaml.safe_load(tools.crd.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["predictor"]["properties"]


def test_defaults_leave_kserve_its_own_autoscaling_defaults(render):
    """No scaleMetric/scaleTarget unless set (KServe: cpu at 80 % in Standard, concurrency in Knative); no PDB."""
    objects = render([])
    predictor = _predictor(objects)
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 2)
    assert "scaleMetric" not in predictor and "scaleTarget" not in predictor
    assert by_kind(objects, "PodDisruptionBudget") == []
    assert _workers(objects) == "1"  # the default CPU limit is "1"


def test_default_cpu_is_the_measured_sizing_rule(render):
    """docs/capacity.md: a 1-CPU limit per replica, and a request whose 80 % (KServe's default target)
    adds a pod at ~2/3 of the per-replica capacity measured through the Gateway."""
    resources = _predictor(render([]))["containers"][0]["resources"]
    assert (resources["requests"]["cpu"], resources["limits"]["cpu"]) == ("250m", "1")


def test_autoscaling_values_are_the_v0_20_crd_predictor_fields(render):
    predictor = _predictor(render(AUTOSCALE))
    assert {k: predictor[k] for k in SCALE_FIELDS} == {
        "minReplicas": 2,
        "maxReplicas": 5,
        "scaleMetric": "cpu",
        "scaleTarget": 60,
    }
    crd = _crd_predictor_properties()
    assert set(SCALE_FIELDS) <= set(crd), sorted(set(SCALE_FIELDS) - set(crd))
    assert "cpu" in crd["scaleMetric"]["enum"] and "memory" in crd["scaleMetric"]["enum"]
    assert crd["scaleTarget"]["type"] == "integer"


def test_knative_mode_may_scale_on_concurrency(render):
    predictor = _predictor(
        render(["kserve.deploymentMode=Knative", "predictor.scaleMetric=concurrency", "predictor.scaleTarget=8"])
    )
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 8)


def test_canary_carries_no_autoscaling_field_while_the_champion_autoscales(render):
    """KServe v0.20's webhook refuses them on a canary ("canary uses fixed replicas")."""
    (isvc,) = by_kind(render([*AUTOSCALE, *CANARY]), "InferenceService")
    validate_isvc(isvc)
    assert isvc["spec"]["predictor"]["scaleTarget"] == 60
    (canary,) = isvc["spec"]["canary"]
    assert not set(SCALE_FIELDS) & set(canary["predictor"]), canary["predictor"]
    assert set(SCALE_FIELDS) <= set(CANARY_OMIT)  # what `housing rollout` leaves out of its canary entry


@pytest.mark.parametrize("min_replicas", [1, 2, 3])
def test_pdb_only_with_two_replicas_or_more(render, min_replicas):
    objects = render([f"predictor.minReplicas={min_replicas}", "predictor.maxReplicas=4", *CANARY])
    pdbs = by_kind(objects, "PodDisruptionBudget")
    if min_replicas < 2:
        assert pdbs == []
        return
    (pdb,) = pdbs
    kubernetes_validate.validate(pdb, K8S_VERSION, strict=True)
    assert pdb["metadata"]["namespace"] == NAMESPACE
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    (isvc,) = by_kind(objects, "InferenceService")
    # it selects the champion's and the canary's pods (a promotion renames the champion's Deployment)
    for predictor in (isvc["spec"]["predictor"], isvc["spec"]["canary"][0]["predictor"]):
        assert selector.items() <= predictor["labels"].items(), (selector, predictor["labels"])
    # and nothing else the chart runs
    for obj in objects:
        template = (obj.get("spec") or {}).get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        assert not selector.items() <= labels.items(), obj["metadata"]["name"]


def test_pdb_min_available_and_off(render):
    (pdb,) = by_kind(
        render(["predictor.minReplicas=3", "predictor.maxReplicas=3", "predictor.podDisruptionBudget.minAvailable=2"]),
        "PodDisruptionBudget",
    )
    kubernetes_validate.validate(pdb, K8S_VERSION, strict=True)
    assert pdb["spec"]["minAvailable"] == 2 and "maxUnavailable" not in pdb["spec"]
    assert (
        by_kind(
            render(["predictor.minReplicas=2", "predictor.podDisruptionBudget.enabled=false"]), "PodDisruptionBudget"
        )
        == []
    )


@pytest.mark.parametrize(
    ("sets", "workers"),
    [
        (["predictor.resources.limits.cpu=500m"], "1"),
        (["predictor.resources.limits.cpu=1500m"], "2"),
        (["predictor.resources.limits.cpu=0.5"], "1"),
        (["predictor.resources.limits.cpu=4"], "4"),
        (["predictor.resources.limits.cpu=4", "predictor.workers=3"], "3"),
        (["predictor.resources.limits.cpu=4", "rateLimit.requestsPerSecond=5"], "1"),
    ],
)
def test_workers_follow_the_cpu_limit_when_unset(helm_bin, sets, workers):
    args = template_args([s for s in sets if "limits.cpu" not in s])
    args += [a for s in sets if "limits.cpu" in s for a in ("--set-string", s)]
    result = run_helm(helm_bin, args)
    assert result.returncode == 0, result.stderr
    assert _workers([d for d in yaml.safe_load_all(result.stdout) if d]) == workers


BAD = {
    "rps-in-standard": (["predictor.scaleMetric=rps"], "predictor.scaleMetric rps needs kserve.deploymentMode Knative"),
    "concurrency-in-standard": (["predictor.scaleMetric=concurrency"], "predictor.scaleMetric concurrency needs"),
    "memory-without-target": (["predictor.scaleMetric=memory"], "predictor.scaleTarget is required"),
    "max-below-min": (
        ["predictor.minReplicas=3", "predictor.maxReplicas=2"],
        "predictor.maxReplicas (2) must be at least",
    ),
    "unknown-metric": (["predictor.scaleMetric=gpu"], "/predictor/scaleMetric"),
    "negative-target": (["predictor.scaleTarget=-5"], "/predictor/scaleTarget"),
    "pdb-unknown-key": (["predictor.podDisruptionBudget.max=1"], "podDisruptionBudget"),
    "pdb-zero": (["predictor.podDisruptionBudget.maxUnavailable=0"], "/predictor/podDisruptionBudget/maxUnavailable"),
    "rate-limit-two-workers": (["rateLimit.requestsPerSecond=5", "predictor.workers=2"], "/predictor/workers"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_scale_values_are_refused_naming_the_field(helm_bin, name):
    sets, message = BAD[name]
    result = run_helm(helm_bin, template_args(sets))
    assert result.returncode != 0, f"{name} was accepted"
    assert message in result.stderr, result.stderr
