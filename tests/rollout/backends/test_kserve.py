"""KServe patches in both modes: built from an object, applied, and validated against the SDK models."""

from __future__ import annotations

import copy
import io
import json

import pytest

from rollout.backends import kserve_serverless as sl
from rollout.backends import kserve_standard as st
from rollout.backends.kserve_common import KServeBackend, apply_patch
from rollout.errors import ConflictError, RolloutError, ValidationError
from rollout.validate import isvc_errors, validate_isvc

CHAMPION = "s3://models/housing/1"
CHALLENGER = "s3://models/housing/2"


def isvc(**predictor_extra) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "housing", "namespace": "ml", "resourceVersion": "100"},
        "spec": {
            "predictor": {
                "serviceAccountName": "housing-predictor",
                "minReplicas": 1,
                "model": {
                    "modelFormat": {"name": "housing"},
                    "runtime": "housing-runtime",
                    "storageUri": CHAMPION,
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}},
                },
                **predictor_extra,
            }
        },
    }


def step(obj: dict, ops: list[dict]) -> dict:
    full = [{"op": "test", "path": "/metadata/resourceVersion", "value": obj["metadata"]["resourceVersion"]}, *ops]
    out = apply_patch(obj, full)
    validate_isvc(out)
    out["metadata"]["resourceVersion"] = str(int(out["metadata"]["resourceVersion"]) + 1)
    return out


def test_base_object_is_valid():
    assert isvc_errors(isvc()) == []


def test_standard_lifecycle_validates_and_promotes():
    obj = step(isvc(name="v1"), st.start_ops(isvc(name="v1"), CHALLENGER, 10))
    canary = obj["spec"]["canary"]
    assert canary[0]["trafficPercent"] == 10
    assert canary[0]["predictor"]["name"] == "v2"
    assert canary[0]["predictor"]["model"]["storageUri"] == CHALLENGER
    # the kserve v0.20.0 CRD requires model.name under spec.canary[].predictor (tests/cluster)
    assert canary[0]["predictor"]["model"]["name"] == "kserve-container"
    assert canary[0]["predictor"]["serviceAccountName"] == "housing-predictor"
    # nothing on the object's metadata: KServe copies its annotations onto every pod template
    assert "annotations" not in obj["metadata"]
    status = st.parse_status(obj)
    assert (status.champion, status.challenger, status.challenger_percent) == (CHAMPION, CHALLENGER, 10)
    for pct in (25, 50, 100):
        obj = step(obj, st.weight_ops(obj, pct))
        assert obj["spec"]["canary"][0]["trafficPercent"] == pct
    promoted = step(obj, st.promote_ops(obj))
    assert "canary" not in promoted["spec"]
    assert promoted["spec"]["predictor"]["name"] == "v2"
    assert promoted["spec"]["predictor"]["model"]["storageUri"] == CHALLENGER
    assert promoted["spec"]["predictor"]["minReplicas"] == 1  # the stable's own replicas again
    assert st.parse_status(promoted).champion == CHALLENGER


def test_standard_canary_keeps_the_champion_capacity_and_omits_autoscaling():
    """The controller scales the stable to minReplicas − canary pods: start adds them back."""
    base = isvc(name="v1", minReplicas=4, maxReplicas=5, scaleMetric="cpu", scaleTarget=80)
    obj = step(base, st.start_ops(base, CHALLENGER, 10))
    canary = obj["spec"]["canary"][0]["predictor"]
    for key in ("maxReplicas", "scaleMetric", "scaleTarget"):  # the v0.20.0 webhook refuses them on a canary
        assert key not in canary
    assert canary["minReplicas"] == 1  # ceil(4 × 10 / 100)
    assert obj["spec"]["predictor"]["minReplicas"] == 5  # 5 − 1 canary pod = the stable's 4 pods
    assert st.stable_replicas(obj["spec"]) == 4
    obj = step(obj, st.weight_ops(obj, 50))
    assert obj["spec"]["canary"][0]["predictor"]["minReplicas"] == 2
    assert obj["spec"]["predictor"]["minReplicas"] == 6 and obj["spec"]["predictor"]["maxReplicas"] == 6
    promoted = step(obj, st.promote_ops(obj))
    pred = promoted["spec"]["predictor"]
    assert (pred["name"], pred["minReplicas"], pred["scaleMetric"]) == ("v2", 4, "cpu")
    back = step(obj, st.rollback_ops(obj, "psi=0.9 > 0.25"))
    assert "canary" not in back["spec"] and back["spec"]["predictor"]["minReplicas"] == 4


def test_standard_promoted_predictor_is_the_merged_canary():
    """What the controller ran as the canary (stable merged with the entry) is what becomes stable."""
    base = isvc(name="v1", labels={"team": "ml"}, timeout=60)
    obj = step(base, st.start_ops(base, CHALLENGER, 50))
    obj["spec"]["canary"][0]["predictor"]["timeout"] = 30  # a field the canary overrides
    promoted = st.promote_ops(obj)[0]["value"]
    assert promoted["timeout"] == 30 and promoted["labels"] == {"team": "ml"}
    assert promoted["model"]["storageUri"] == CHALLENGER and promoted["name"] == "v2"


def test_standard_rollback_removes_canary():
    obj = step(isvc(), st.start_ops(isvc(), CHALLENGER, 25))
    back = step(obj, st.rollback_ops(obj, "error rate 0.4 > 0.01"))
    assert "canary" not in back["spec"]
    assert back["spec"]["predictor"]["model"]["storageUri"] == CHAMPION
    assert st.parse_status(back).challenger is None


def test_standard_refuses_second_canary_and_missing_canary():
    obj = step(isvc(), st.start_ops(isvc(), CHALLENGER, 10))
    with pytest.raises(RolloutError, match="already in progress"):
        st.start_ops(obj, "s3://models/housing/3", 10)
    with pytest.raises(RolloutError, match="no canary"):
        st.weight_ops(isvc(), 50)
    with pytest.raises(ValueError, match="0..100"):
        st.weight_ops(obj, 101)


def test_standard_status_reads_canary_statuses():
    obj = step(isvc(), st.start_ops(isvc(), CHALLENGER, 50))
    obj["status"] = {
        "conditions": [{"type": "Ready", "status": "True"}],
        "canaryStatuses": [{"name": "v2", "ready": True, "trafficPercent": 40}],
    }
    assert isvc_errors(obj) == []
    status = st.parse_status(obj)
    assert status.ready and status.challenger_percent == 40 and status.detail["canaryReady"]


def test_serverless_lifecycle_validates():
    obj = step(isvc(), sl.start_ops(isvc(), CHALLENGER, 10))
    pred = obj["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 10 and pred["model"]["storageUri"] == CHALLENGER
    status = sl.parse_status(obj)
    assert (status.champion, status.challenger, status.challenger_percent) == (CHAMPION, CHALLENGER, 10)
    obj = step(obj, sl.weight_ops(obj, 50))
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 50
    promoted = step(obj, sl.promote_ops(obj))
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert sl.parse_status(promoted).champion == CHALLENGER
    back = step(obj, sl.rollback_ops(obj, "psi 0.9"))
    assert back["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert sl.parse_status(back).champion_percent == 100


def test_serverless_status_reads_knative_traffic():
    obj = step(isvc(), sl.start_ops(isvc(), CHALLENGER, 25))
    obj["status"] = {
        "components": {
            "predictor": {
                "traffic": [
                    {"revisionName": "housing-predictor-00002", "percent": 25, "latestRevision": True, "tag": "latest"},
                    {"revisionName": "housing-predictor-00001", "percent": 75, "latestRevision": False, "tag": "prev"},
                ]
            }
        },
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    assert isvc_errors(obj) == []
    status = sl.parse_status(obj)
    assert status.ready and (status.champion_percent, status.challenger_percent) == (75, 25)


def test_custom_container_storage_uri_env():
    obj = isvc()
    obj["spec"]["predictor"] = {
        "containers": [
            {"name": "kserve-container", "image": "housing:dev", "env": [{"name": "STORAGE_URI", "value": CHAMPION}]}
        ]
    }
    out = step(obj, sl.start_ops(obj, CHALLENGER, 10))
    assert out["spec"]["predictor"]["containers"][0]["env"][0]["value"] == CHALLENGER
    out = step(obj, st.start_ops(obj, CHALLENGER, 10))
    assert out["spec"]["canary"][0]["predictor"]["containers"][0]["env"][0]["value"] == CHALLENGER


def test_validator_is_strict():
    bad = isvc()
    bad["spec"]["predictor"]["canaryTrafficPercent"] = "10"
    bad["spec"]["predictor"]["model"]["storageURI"] = CHALLENGER
    bad["spec"]["canary"] = [{"trafficPercent": 120, "predictor": {"model": {"modelFormat": {"name": "x"}}}}]
    errors = isvc_errors(bad)
    joined = "\n".join(errors)
    assert "canaryTrafficPercent: expected an integer" in joined
    assert "storageURI: unknown field" in joined
    assert "trafficPercent: must be within 0..100" in joined
    assert "predictor.name: required in a canary entry" in joined
    with pytest.raises(ValidationError):
        validate_isvc(bad)


class _Api:
    """Stands in for CustomObjectsApi only to exercise the retry loop (not a claim about the API server)."""

    def __init__(self, obj: dict, conflicts: int) -> None:
        self.obj, self.conflicts, self.patches = obj, conflicts, []

    def get_namespaced_custom_object(self, *args):
        return copy.deepcopy(self.obj)

    def patch_namespaced_custom_object(self, *args, **kwargs):
        body = args[5]
        self.patches.append((body, kwargs))
        if self.conflicts:
            self.conflicts -= 1
            self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
            raise type("ApiException", (Exception,), {"status": 409, "body": "Conflict"})()
        self.obj = apply_patch(self.obj, body)
        return self.obj


def test_patch_retries_on_conflict_with_fresh_resource_version():
    api = _Api(isvc(), conflicts=2)
    backend = st.StandardBackend("housing", "ml", api=api)
    status = backend.start(CHALLENGER, 10)
    assert status.challenger_percent == 10
    versions = [body[0]["value"] for body, _ in api.patches]
    assert versions == ["100", "101", "102"]
    assert api.patches[-1][1]["_content_type"] == "application/json-patch+json"
    api = _Api(isvc(), conflicts=99)
    with pytest.raises(ConflictError):
        sl.ServerlessBackend("housing", "ml", api=api).start(CHALLENGER, 10)


def test_dry_run_prints_patch_and_object_offline():
    out = io.StringIO()
    backend = sl.ServerlessBackend("housing", "ml", dry_run=True, manifest=isvc(), out=out)
    backend.start(CHALLENGER, 10)
    text = out.getvalue()
    assert "# JSON patch" in text and '"canaryTrafficPercent": 10' in text
    patch = json.loads(text.split("# JSON patch (application/json-patch+json)\n")[1].split("# resulting")[0])
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "100"}
    # dry-run chains on the manifest: the next command sees the previous result
    backend.set_weight(50)
    assert backend.last_object["spec"]["predictor"]["canaryTrafficPercent"] == 50


def test_dry_run_refuses_invalid_result():
    obj = isvc()
    obj["spec"]["predictor"]["model"]["bogus"] = 1
    backend = KServeBackend("housing", "ml", dry_run=True, manifest=obj, out=io.StringIO())
    with pytest.raises(ValidationError, match="bogus"):
        backend.patch(lambda o: [])


def test_patched_objects_pass_the_chart_validator_too():
    """Every object of both lifecycles passes the validator the chart tests use (tests/cluster)."""
    base = isvc(name="v1")
    objects = []
    for mod in (st, sl):
        obj = step(base, mod.start_ops(base, CHALLENGER, 10))
        objects += [obj, step(obj, mod.weight_ops(obj, 50)), step(obj, mod.promote_ops(obj))]
        objects.append(step(obj, mod.rollback_ops(obj, "reason")))
    for obj in objects:
        validate_isvc(obj)


def test_conflict_detection():
    from rollout.backends.kserve_common import _is_conflict

    def exc(status, body):
        return type("ApiException", (Exception,), {"status": status, "body": body})()

    assert _is_conflict(exc(409, "Operation cannot be fulfilled: the object has been modified"))
    failed_test = (
        '{"message":"the server rejected our request due to an error in our request: '
        'testing value /metadata/resourceVersion failed: test failed"}'
    )
    assert _is_conflict(exc(422, failed_test))
    assert not _is_conflict(exc(422, '{"message":"spec.predictor: Invalid value"}'))
    assert not _is_conflict(exc(403, "forbidden"))


def test_patch_apply_failure_shape_of_a_real_api_server():
    """kube-apiserver v1.35.4's answer to a failed ``test`` op (recorded in tests/cluster)."""
    from rollout.backends.kserve_common import _is_patch_apply_failure

    def exc(status, body):
        return type("ApiException", (Exception,), {"status": status, "body": body})()

    real = (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server rejected our '
        'request due to an error in our request","reason":"Invalid","details":{},"code":422}'
    )
    schema = (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"InferenceService.serving.'
        'kserve.io \\"x\\" is invalid: spec.canary[0].trafficPercent: Invalid value","reason":"Invalid",'
        '"details":{"name":"x","group":"serving.kserve.io","kind":"InferenceService","causes":[{"reason":'
        '"FieldValueInvalid","field":"spec.canary[0].trafficPercent"}]},"code":422}'
    )
    assert _is_patch_apply_failure(exc(422, real))
    assert not _is_patch_apply_failure(exc(422, schema))
    assert not _is_patch_apply_failure(exc(409, real))


class _Stale422Api:
    """The retry loop on a 422 without a message: a retry only when the object really moved."""

    body = '{"kind":"Status","status":"Failure","reason":"Invalid","details":{},"code":422}'

    def __init__(self, obj: dict, moved: bool) -> None:
        self.obj, self.moved, self.patches = obj, moved, 0

    def get_namespaced_custom_object(self, *args):
        return copy.deepcopy(self.obj)

    def patch_namespaced_custom_object(self, *args, **kwargs):
        self.patches += 1
        if self.patches == 1:
            if self.moved:
                self.obj["metadata"]["resourceVersion"] = "101"
            raise type("ApiException", (Exception,), {"status": 422, "body": self.body})()
        self.obj = apply_patch(self.obj, args[5])
        return self.obj


def test_patch_retries_on_bare_422_only_when_resource_version_moved():
    api = _Stale422Api(isvc(), moved=True)
    assert st.StandardBackend("housing", "ml", api=api).start(CHALLENGER, 10).challenger_percent == 10
    assert api.patches == 2
    api = _Stale422Api(isvc(), moved=False)
    with pytest.raises(RolloutError, match="patch of ml/housing failed"):
        st.StandardBackend("housing", "ml", api=api).start(CHALLENGER, 10)
    assert api.patches == 1


def test_status_written_by_the_v0_20_controller_is_not_judged():
    """The live object's status (controller-owned) has string URLs the SDK models call objects:
    a patch built from it must still validate (seen on the node tier)."""
    live = isvc(name="v1")
    live["status"] = {
        "url": "http://housing-canary.example.com",
        "address": {"url": "http://housing-v1-predictor.canary.svc.cluster.local"},
        "components": {"predictor": {"url": "http://housing-v1-predictor-canary.example.com"}},
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    assert isvc_errors(live) == []
    obj = step(live, st.start_ops(live, CHALLENGER, 10))
    assert obj["spec"]["canary"][0]["trafficPercent"] == 10


# -- digests: every deployed bundle pinned to its registered sha256 -----------------------------
OLD_DIGEST, NEW_DIGEST = "a" * 64, "b" * 64


def _pinned(digest: str | None = OLD_DIGEST) -> dict:
    """The chart's shape: a kserve-container with STORAGE_URI (and the champion's pin)."""
    obj = isvc(name="v1")
    env = [{"name": "STORAGE_URI", "value": CHAMPION}, {"name": "HOME", "value": "/tmp"}]
    if digest:
        env.append({"name": "HOUSING_BUNDLE_DIGEST", "value": digest})
    obj["spec"]["predictor"] = {
        "name": "v1",
        "minReplicas": 1,
        "containers": [{"name": "kserve-container", "image": "housing:dev", "env": env}],
    }
    return obj


def _env(predictor: dict) -> dict[str, str]:
    (container,) = predictor["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize("champion_digest", [OLD_DIGEST, None])
def test_standard_canary_carries_its_own_digest_and_promotion_keeps_it(champion_digest):
    obj = _pinned(champion_digest)
    started = step(obj, st.start_ops(obj, CHALLENGER, 10, digest=NEW_DIGEST.upper()))
    canary = _env(started["spec"]["canary"][0]["predictor"])
    assert (canary["STORAGE_URI"], canary["HOUSING_BUNDLE_DIGEST"]) == (CHALLENGER, NEW_DIGEST)
    assert _env(started["spec"]["predictor"]).get("HOUSING_BUNDLE_DIGEST") == champion_digest  # untouched
    status = st.parse_status(started)
    assert (status.detail["championDigest"], status.detail["canaryDigest"]) == (champion_digest, NEW_DIGEST)
    promoted = step(started, st.promote_ops(started))
    assert _env(promoted["spec"]["predictor"])["HOUSING_BUNDLE_DIGEST"] == NEW_DIGEST
    rolled_back = step(started, st.rollback_ops(started, "bad"))
    assert _env(rolled_back["spec"]["predictor"]).get("HOUSING_BUNDLE_DIGEST") == champion_digest


def test_standard_canary_without_a_digest_drops_the_champions_pin():
    """A canary is a copy of the champion: keeping the champion's digest would fail its own bundle."""
    obj = _pinned()
    started = step(obj, st.start_ops(obj, CHALLENGER, 10))
    assert "HOUSING_BUNDLE_DIGEST" not in _env(started["spec"]["canary"][0]["predictor"])
    assert _env(started["spec"]["predictor"])["HOUSING_BUNDLE_DIGEST"] == OLD_DIGEST


def test_serverless_start_pins_the_new_revision():
    for champion_digest in (OLD_DIGEST, None):
        obj = _pinned(champion_digest)
        out = step(obj, sl.start_ops(obj, CHALLENGER, 10, NEW_DIGEST))
        assert _env(out["spec"]["predictor"])["HOUSING_BUNDLE_DIGEST"] == NEW_DIGEST
        assert _env(out["spec"]["predictor"])["STORAGE_URI"] == CHALLENGER
        unpinned = step(obj, sl.start_ops(obj, CHALLENGER, 10))
        assert "HOUSING_BUNDLE_DIGEST" not in _env(unpinned["spec"]["predictor"])


def test_model_spec_is_pinned_in_its_own_env():
    obj = isvc(name="v1")
    out = step(obj, st.start_ops(obj, CHALLENGER, 10, digest=NEW_DIGEST))
    model = out["spec"]["canary"][0]["predictor"]["model"]
    assert model["env"] == [{"name": "HOUSING_BUNDLE_DIGEST", "value": NEW_DIGEST}]


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "a" * 63])
def test_a_malformed_digest_is_refused_before_any_write(bad):
    api = _Api(_pinned(), conflicts=0)
    with pytest.raises(RolloutError, match="sha256"):
        st.StandardBackend("housing", "ml", api=api).start(CHALLENGER, 10, digest=bad)
    assert api.patches == []


def test_backend_start_sends_the_digest_to_the_api_server():
    api = _Api(_pinned(), conflicts=0)
    st.StandardBackend("housing", "ml", api=api).start(CHALLENGER, 10, digest=NEW_DIGEST)
    assert _env(api.obj["spec"]["canary"][0]["predictor"])["HOUSING_BUNDLE_DIGEST"] == NEW_DIGEST
