"""rollout.backends.gateway_route: the JSON patches a step sends to a route (pure)."""

from __future__ import annotations

import json

import pytest

from rollout.backends.gateway_route import (
    ANNOTATION_BACKENDS,
    backends_of,
    check_owner,
    desired_backends,
    predictor_service,
    route_ops,
)
from rollout.backends.kserve_common import apply_patch
from rollout.errors import RolloutError


def http_route(backends: list[tuple[str, int]], annotations: dict | None = None) -> dict:
    meta = {"name": "housing", "namespace": "ml", "resourceVersion": "7"}
    if annotations is not None:
        meta["annotations"] = annotations
    refs = [{"name": s, "port": 80, "weight": w} for s, w in backends]
    return {"kind": "HTTPRoute", "metadata": meta, "spec": {"rules": [{"backendRefs": refs}]}}


def test_kserve_service_names():
    assert predictor_service("housing", None) == "housing-predictor"
    assert predictor_service("housing", "v3") == "housing-v3-predictor"


def test_a_step_writes_weights_the_header_rule_and_what_it_wrote():
    route = http_route([("housing-predictor", 100)], {})
    ops = route_ops(route, desired_backends("housing-predictor", "housing-v3-predictor", 25), "housing-v3-predictor")
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}  # nothing over another write
    after = apply_patch(route, ops)
    assert backends_of(after) == [("housing-predictor", 75), ("housing-v3-predictor", 25)]
    variant = after["spec"]["rules"][1]
    assert variant["matches"] == [{"headers": [{"name": "x-housing-variant", "value": "challenger"}]}]
    assert variant["backendRefs"] == [{"name": "housing-v3-predictor", "port": 80}]
    assert json.loads(after["metadata"]["annotations"][ANNOTATION_BACKENDS]) == [
        ["housing-predictor", 75],
        ["housing-v3-predictor", 25],
    ]
    check_owner(after, "housing-predictor")  # what it wrote is what it finds
    # promotion: one backend, no header rule
    done = apply_patch(after, route_ops(after, desired_backends("housing-v3-predictor", None, 0), None))
    assert done["spec"]["rules"] == [{"backendRefs": [{"name": "housing-v3-predictor", "port": 80, "weight": 100}]}]


def test_the_header_rule_keeps_the_weighted_rules_matches():
    route = http_route([("a", 100)])
    route["spec"]["rules"][0]["matches"] = [{"method": {"service": "inference.GRPCInferenceService"}}]
    after = apply_patch(route, route_ops(route, desired_backends("a", "b", 10), "b"))
    assert after["spec"]["rules"][1]["matches"] == [
        {
            "method": {"service": "inference.GRPCInferenceService"},
            "headers": [{"name": "x-housing-variant", "value": "challenger"}],
        }
    ]


@pytest.mark.parametrize("percent", [-1, 101, 50.5, True])
def test_weights_outside_0_100_are_refused(percent):
    with pytest.raises(ValueError, match="0..100"):
        desired_backends("a", "b", percent)


def test_a_route_someone_else_changed_is_refused_by_name():
    route = http_route([("a", 50), ("b", 50)], {ANNOTATION_BACKENDS: json.dumps([["a", 90], ["b", 10]])})
    with pytest.raises(RolloutError, match="HTTPRoute ml/housing was changed by another owner"):
        check_owner(route, "a")
    with pytest.raises(RolloutError, match="does not route to the champion's Service a"):
        check_owner(http_route([("elsewhere", 100)]), "a")
