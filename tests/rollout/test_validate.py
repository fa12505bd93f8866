"""The strict InferenceService validator itself: it must catch what it claims to catch."""

from __future__ import annotations

import copy

import pytest

from rollout.errors import ValidationError
from rollout.validate import validate_isvc

GOOD = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "housing", "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
    "spec": {
        "predictor": {
            "minReplicas": 1,
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "housing:0.1.0",
                    "args": ["--model_name", "housing"],
                    "env": [{"name": "STORAGE_URI", "value": "s3://models/housing/1"}],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                }
            ],
        },
        "canary": [{"trafficPercent": 10, "predictor": {"name": "challenger", "containers": []}}],
    },
}


def _mutated(path: list, value=None, delete: bool = False) -> dict:
    obj = copy.deepcopy(GOOD)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


def test_good_manifest_passes():
    validate_isvc(GOOD)


@pytest.mark.parametrize(
    ("path", "value", "delete", "where"),
    [
        (["spec", "predictor", "replicas"], 2, False, "spec.predictor.replicas"),
        (["spec", "canary", 0, "weight"], 10, False, "spec.canary[0].weight"),
        (["spec", "canary", 0, "trafficPercent"], "10", False, "spec.canary[0].trafficPercent"),
        (["spec", "canary", 0, "trafficPercent"], True, False, "spec.canary[0].trafficPercent"),
        (["spec", "canary"], {"trafficPercent": 10}, False, "spec.canary"),
        (["spec", "predictor", "minReplicas"], 1.5, False, "spec.predictor.minReplicas"),
        (["spec", "predictor", "containers", 0, "imagePullSecret"], "x", False,
         "spec.predictor.containers[0].imagePullSecret"),
        (["spec", "predictor", "containers", 0, "name"], None, True, "spec.predictor.containers[0].name"),
        (["spec", "predictor", "containers", 0, "args"], "--model_name housing", False,
         "spec.predictor.containers[0].args"),
        (["spec", "predictor", "containers", 0, "resources", "limits", "cpu"], 1, False,
         "spec.predictor.containers[0].resources.limits.cpu"),
        (["metadata", "annotations", "x"], 1, False, "metadata.annotations.x"),
        (["spec", "predictor", "storageUri"], "s3://models/housing/1", False, "spec.predictor.storageUri"),
        (["spec", "predictor"], None, True, "spec.predictor"),
    ],
)  # fmt: skip
def test_offending_key_is_named(path, value, delete, where):
    with pytest.raises(ValidationError) as info:
        validate_isvc(_mutated(path, value, delete))
    assert info.value.path == where, str(info.value)


def test_wrong_kind_or_version():
    with pytest.raises(ValidationError, match="kind"):
        validate_isvc(_mutated(["kind"], "Deployment"))
    with pytest.raises(ValidationError, match="apiVersion"):
        validate_isvc(_mutated(["apiVersion"], "serving.kserve.io/v1alpha1"))


def test_sdk_has_the_fields_the_chart_uses():
    """The 0.21 SDK models the Standard-mode canary list and named predictors."""
    from kserve.models import V1beta1CanarySpec, V1beta1InferenceServiceSpec, V1beta1PredictorSpec

    assert V1beta1InferenceServiceSpec.attribute_map["canary"] == "canary"
    assert V1beta1InferenceServiceSpec.openapi_types["canary"] == "list[V1beta1CanarySpec]"
    assert V1beta1CanarySpec.attribute_map == {"predictor": "predictor", "traffic_percent": "trafficPercent"}
    assert V1beta1PredictorSpec.attribute_map["name"] == "name"
    assert V1beta1PredictorSpec.attribute_map["canary_traffic_percent"] == "canaryTrafficPercent"
