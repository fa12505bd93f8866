"""What the runner sends the API server about field ownership (rollout.backends.field_owners).

After a promotion, helm 4's server-side `helm upgrade` changing the predictor container failed:
``conflict with "OpenAPI-Generator" … .spec.predictor.containers`` — the runner's JSON patch had
taken the (atomic) containers list from helm. Here: the runner names its own field manager, and
after a write gives what it took from an applier back to it. Whether the API server then lets helm
apply is checked against a real kube-apiserver (tests/cluster/test_cluster_apiserver_delivery.py)
and on the node (tests/cluster/test_node_delivery.py).
"""

from __future__ import annotations

import copy

from rollout.backends import field_owners as fo
from rollout.backends import kserve_standard as st
from rollout.backends.kserve_common import apply_patch

CHAMPION = "s3://models/housing/1"
CHALLENGER = "s3://models/housing/2"
HELM = {"manager": "helm", "operation": "Apply", "apiVersion": "serving.kserve.io/v1beta1", "fieldsType": "FieldsV1"}
# what helm 4's apply of the chart's InferenceService owns (the shape a kube-apiserver v1.35 writes)
HELM_FIELDS = {
    "f:metadata": {"f:annotations": {"f:serving.kserve.io/deploymentMode": {}}, "f:labels": {"f:app": {}}},
    "f:spec": {
        "f:predictor": {
            "f:containers": {},
            "f:maxReplicas": {},
            "f:minReplicas": {},
            "f:serviceAccountName": {},
        }
    },
}


def _entry(manager: str, operation: str, fields: dict, **extra: str) -> dict:
    return {"manager": manager, "operation": operation, "fieldsType": "FieldsV1", "fieldsV1": fields, **extra}


def test_paths_and_trie_are_inverse_on_a_real_shape():
    fields = {
        "f:metadata": {"f:annotations": {".": {}, "f:a": {}}},
        "f:spec": {"f:canary": {}, "f:predictor": {"f:containers": {}, "f:name": {}}},
    }
    owned = fo.paths(fields)
    assert owned == {
        ("f:metadata", "f:annotations"),
        ("f:metadata", "f:annotations", "f:a"),
        ("f:spec", "f:canary"),
        ("f:spec", "f:predictor", "f:containers"),
        ("f:spec", "f:predictor", "f:name"),
    }
    assert fo.trie(owned) == fields


def test_a_promotion_gives_the_containers_back_to_helm_and_keeps_the_canary_fields():
    before = {"metadata": {"managedFields": [{**HELM, "fieldsV1": HELM_FIELDS}]}}
    after_fields = copy.deepcopy(HELM_FIELDS)
    del after_fields["f:spec"]["f:predictor"]["f:containers"]  # what the API server moved to the runner
    ours = {"f:spec": {"f:canary": {}, "f:predictor": {"f:containers": {}, "f:name": {}}}}
    after = {
        "metadata": {
            "managedFields": [{**HELM, "fieldsV1": after_fields}, _entry(fo.FIELD_MANAGER, "Update", ours)],
        }
    }
    took = fo.taken(before, after)
    assert [fo.paths(t["fieldsV1"]) for t in took.values()] == [{("f:spec", "f:predictor", "f:containers")}]
    entries = fo.handed_back(after, took)
    helm, runner = entries
    assert fo.paths(helm["fieldsV1"]) == fo.paths(HELM_FIELDS)  # helm owns what it applied again
    assert {k: helm[k] for k in HELM} == HELM
    # the runner keeps what nobody applied (name was not rendered by helm here)
    assert fo.paths(runner["fieldsV1"]) == {("f:spec", "f:canary"), ("f:spec", "f:predictor", "f:name")}


def test_an_applier_entry_the_write_emptied_is_recreated():
    only = {"f:spec": {"f:predictor": {"f:containers": {}}}}
    before = {"metadata": {"managedFields": [{**HELM, "fieldsV1": only, "time": "2026-12-08T00:00:00Z"}]}}
    after = {"metadata": {"managedFields": [_entry(fo.FIELD_MANAGER, "Update", copy.deepcopy(only))]}}
    (helm,) = fo.handed_back(after, fo.taken(before, after))  # the runner's entry is left empty: dropped
    assert helm["manager"] == "helm" and helm["operation"] == "Apply" and helm["fieldsV1"] == only


def test_update_managers_and_subresources_are_left_alone():
    """helm 3 (client-side, an Update manager) and kubectl edit never conflict; status is not the spec."""
    fields = {"f:spec": {"f:predictor": {"f:containers": {}}}}
    before = {
        "metadata": {
            "managedFields": [
                _entry("helm", "Update", fields),
                _entry("kserve", "Apply", fields, subresource="status"),
            ]
        }
    }
    after = {"metadata": {"managedFields": [_entry(fo.FIELD_MANAGER, "Update", fields)]}}
    assert fo.taken(before, after) == {}
    assert fo.taken({"metadata": {}}, after) == {}  # no managedFields at all (an old server, a dry run)


class _ServerShapedApi:
    """Records what the backend sends; answers each patch with the object a kube-apiserver returns
    (the ops applied, resourceVersion bumped, ``managedFields`` as the server computed them —
    given here, since ownership itself is the API server's and is checked against a real one)."""

    def __init__(self, obj: dict, managed_after_write: list[dict]) -> None:
        self.obj, self.managed_after_write, self.patches = obj, managed_after_write, []

    def get_namespaced_custom_object(self, *args):
        return copy.deepcopy(self.obj)

    def patch_namespaced_custom_object(self, *args, **kwargs):
        body = args[5]
        self.patches.append((body, kwargs))
        out = apply_patch(self.obj, body)
        if not any(op["path"] == "/metadata/managedFields" for op in body):
            out["metadata"]["managedFields"] = copy.deepcopy(self.managed_after_write)
        out["metadata"]["resourceVersion"] = str(int(out["metadata"]["resourceVersion"]) + 1)
        self.obj = out
        return copy.deepcopy(out)


def _isvc_with_a_canary() -> dict:
    def predictor(uri: str, name: str) -> dict:
        env = [{"name": "STORAGE_URI", "value": uri}]
        return {"name": name, "containers": [{"name": "kserve-container", "image": "housing:dev", "env": env}]}

    canary = {**predictor(CHALLENGER, "v2"), "minReplicas": 1}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "housing",
            "namespace": "ml",
            "resourceVersion": "10",
            "managedFields": [{**HELM, "fieldsV1": HELM_FIELDS}],
        },
        "spec": {
            "predictor": {**predictor(CHAMPION, "v1"), "minReplicas": 2, "maxReplicas": 3},
            "canary": [{"trafficPercent": 100, "predictor": canary}],
        },
    }


def test_the_runner_names_its_field_manager_and_hands_back_what_the_promotion_took():
    obj = _isvc_with_a_canary()
    helm_left = copy.deepcopy(HELM_FIELDS)
    del helm_left["f:spec"]["f:predictor"]["f:containers"]
    del helm_left["f:spec"]["f:predictor"]["f:minReplicas"]
    runner = {"f:spec": {"f:predictor": {"f:containers": {}, "f:minReplicas": {}, "f:name": {}}}}
    api = _ServerShapedApi(
        obj, [{**HELM, "fieldsV1": helm_left}, _entry(fo.FIELD_MANAGER, "Update", runner, apiVersion="v1beta1")]
    )
    st.StandardBackend("housing", "ml", api=api).promote()
    (write, write_kw), (back, back_kw) = api.patches
    for kwargs in (write_kw, back_kw):  # a JSON patch under the runner's name, never "OpenAPI-Generator"
        assert kwargs["field_manager"] == "housing-rollout"
        assert kwargs["_content_type"] == "application/json-patch+json"
    assert {"op": "remove", "path": "/spec/canary"} in write
    assert back[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "11"}  # after the write only
    assert back[1]["op"] == "replace" and back[1]["path"] == "/metadata/managedFields"
    helm, ours = back[1]["value"]
    assert helm["manager"] == "helm" and fo.paths(helm["fieldsV1"]) == fo.paths(HELM_FIELDS)
    assert ours["manager"] == "housing-rollout" and fo.paths(ours["fieldsV1"]) == {("f:spec", "f:predictor", "f:name")}
    assert "canary" not in api.obj["spec"] and api.obj["metadata"]["resourceVersion"] == "12"


def test_nothing_more_is_sent_when_the_write_took_nothing_from_an_applier():
    obj = _isvc_with_a_canary()
    obj["metadata"]["managedFields"] = [_entry("helm", "Update", HELM_FIELDS)]  # helm 3: client-side
    api = _ServerShapedApi(obj, [_entry("helm", "Update", HELM_FIELDS)])
    st.StandardBackend("housing", "ml", api=api).promote()
    assert len(api.patches) == 1 and api.patches[0][1]["field_manager"] == "housing-rollout"


class _MovedOnce(_ServerShapedApi):
    """The hand-back's first try meets a write in between (its resourceVersion test fails, 422)."""

    moved = False

    def patch_namespaced_custom_object(self, *args, **kwargs):
        body = args[5]
        if body[-1]["path"] == "/metadata/managedFields" and not self.moved:
            self.moved = True
            self.patches.append((body, kwargs))
            self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
            raise type("ApiException", (Exception,), {"status": 422, "body": "{}"})()
        return super().patch_namespaced_custom_object(*args, **kwargs)


def test_the_hand_back_is_rebuilt_on_the_fresh_object_after_a_write_in_between():
    obj = _isvc_with_a_canary()
    runner = {"f:spec": {"f:predictor": {"f:containers": {}}}}
    helm_left = copy.deepcopy(HELM_FIELDS)
    del helm_left["f:spec"]["f:predictor"]["f:containers"]
    api = _MovedOnce(obj, [{**HELM, "fieldsV1": helm_left}, _entry(fo.FIELD_MANAGER, "Update", runner)])
    st.StandardBackend("housing", "ml", api=api).promote()
    tries = [body for body, _ in api.patches if body[-1]["path"] == "/metadata/managedFields"]
    assert [t[0]["value"] for t in tries] == ["11", "12"]
    (helm,) = api.obj["metadata"]["managedFields"]  # the runner's entry had nothing else: gone
    assert fo.paths(helm["fieldsV1"]) == fo.paths(HELM_FIELDS)


class _RouteApi:
    """An HTTPRoute helm applied (no GRPCRoute, no parentRefs), answered the way _ServerShapedApi is."""

    def __init__(self, route: dict, managed_after_write: list[dict]) -> None:
        self.route, self.managed_after_write, self.patches = route, managed_after_write, []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        if plural != "httproutes":
            raise type("ApiException", (Exception,), {"status": 404, "body": "NotFound"})()
        return copy.deepcopy(self.route)

    def patch_namespaced_custom_object(self, *args, **kwargs):
        body = args[5]
        self.patches.append((body, kwargs))
        out = apply_patch(self.route, body)
        if not any(op["path"] == "/metadata/managedFields" for op in body):
            out["metadata"]["managedFields"] = copy.deepcopy(self.managed_after_write)
        out["metadata"]["resourceVersion"] = str(int(out["metadata"]["resourceVersion"]) + 1)
        self.route = out
        return copy.deepcopy(out)


def test_a_route_step_names_the_runner_and_gives_the_rules_back_to_helm():
    from rollout.backends.gateway_route import GatewayRoutes

    rules_fields = {"f:spec": {"f:rules": {}, "f:parentRefs": {}}}
    route = {
        "kind": "HTTPRoute",
        "metadata": {
            "name": "housing",
            "namespace": "ml",
            "resourceVersion": "5",
            "managedFields": [{**HELM, "apiVersion": "gateway.networking.k8s.io/v1", "fieldsV1": rules_fields}],
        },
        "spec": {"rules": [{"backendRefs": [{"name": "housing-predictor", "port": 80, "weight": 100}]}]},
    }
    runner = {
        "f:metadata": {"f:annotations": {".": {}, "f:rollout.housing.dev/backends": {}}},
        "f:spec": {"f:rules": {}},
    }
    helm_left = {**HELM, "fieldsV1": {"f:spec": {"f:parentRefs": {}}}}
    api = _RouteApi(route, [helm_left, _entry(fo.FIELD_MANAGER, "Update", runner)])
    GatewayRoutes(api, "ml", "housing").set("housing-predictor", "housing-v2-predictor", 10)
    (write, write_kw), (back, back_kw) = api.patches
    assert write_kw["field_manager"] == back_kw["field_manager"] == "housing-rollout"
    assert back[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "6"}
    helm, ours = back[1]["value"]
    assert fo.paths(helm["fieldsV1"]) == fo.paths(rules_fields)
    assert fo.paths(ours["fieldsV1"]) == fo.paths(runner) - {("f:spec", "f:rules")}  # the annotation stays ours


def test_a_restored_route_gives_the_rules_back_too():
    from rollout.backends.gateway_route import GatewayRoutes, Written

    rules_fields = {"f:spec": {"f:rules": {}}}
    route = {
        "kind": "HTTPRoute",
        "metadata": {"name": "housing", "namespace": "ml", "resourceVersion": "5", "annotations": {}},
        "spec": {"rules": [{"backendRefs": [{"name": "housing-predictor", "port": 80, "weight": 90}]}]},
    }
    route["metadata"]["managedFields"] = [{**HELM, "fieldsV1": rules_fields}]
    runner = {"f:spec": {"f:rules": {}}}
    api = _RouteApi(route, [_entry(fo.FIELD_MANAGER, "Update", runner)])
    rules = [{"backendRefs": [{"name": "housing-predictor", "port": 80, "weight": 100}]}]
    GatewayRoutes(api, "ml", "housing").restore([Written("HTTPRoute", "housing", rules, None)])
    (write, _), (back, kwargs) = api.patches
    assert write[0] == {"op": "replace", "path": "/spec/rules", "value": rules}
    assert kwargs["field_manager"] == "housing-rollout" and back[1]["path"] == "/metadata/managedFields"
    (helm,) = api.route["metadata"]["managedFields"]
    assert helm["manager"] == "helm" and helm["fieldsV1"] == rules_fields
