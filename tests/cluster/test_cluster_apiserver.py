"""The KServe rollout backends against a real kube-apiserver + etcd with the real KServe CRD.

No KServe controller runs: these tests check what the API server accepts and stores — the CRD's
schema (pruning, validation, ``spec.canary`` and ``canaryTrafficPercent``), the JSON patches the
backends send, their resourceVersion guard under a concurrent writer and the retry path, that
``--dry-run`` writes nothing, and that the chart's rollout Role is enough for a rollout.
"""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from typing import Any

import pytest

from rollout.backends import kserve_common as common
from rollout.backends import kserve_serverless as sl
from rollout.backends import kserve_standard as st
from rollout.errors import ConflictError, RolloutError

from .apiserver import unique
from .conftest import NAMESPACE, REPO, VALUE_SETS, by_kind, rollout_rbac

pytestmark = pytest.mark.cluster

kclient = pytest.importorskip("kubernetes.client")
ApiException = kclient.ApiException

GROUP, VERSION, PLURAL = common.GROUP, common.VERSION, common.PLURAL
CHAMPION = "s3://models/housing/1"
CHALLENGER = "s3://models/housing/2"
SERVER_FIELDS = ("resourceVersion", "generation", "managedFields", "uid", "creationTimestamp")


# -- fixtures and helpers --------------------------------------------------------------------
@pytest.fixture(scope="module")
def admin(apiserver) -> Any:
    """CustomObjectsApi as a system:masters user, with the chart's namespace created."""
    return apiserver.admin_objects(NAMESPACE)


def chart_isvc(render, value_set: str, name: str | None = None) -> dict:
    """The chart's InferenceService for a VALUE_SETS entry (renamed so tests do not collide)."""
    isvcs = by_kind(render(VALUE_SETS[value_set]), "InferenceService")
    assert len(isvcs) == 1, f"{value_set}: {len(isvcs)} InferenceServices rendered"
    obj = copy.deepcopy(isvcs[0])
    if name:
        obj["metadata"]["name"] = name
    return obj


def create(admin, obj: dict, validation: str = "Strict") -> dict:
    return admin.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, obj, field_validation=validation)


def get(admin, name: str) -> dict:
    return admin.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)


def rv(obj: dict) -> str:
    return obj["metadata"]["resourceVersion"]


def user_view(obj: dict) -> dict:
    """The object without the fields the server owns, for comparing with a local patch result."""
    out = copy.deepcopy(obj)
    for key in SERVER_FIELDS:
        out.get("metadata", {}).pop(key, None)
    return out


def standard(admin, name: str, **kw) -> st.StandardBackend:
    return st.StandardBackend(name, NAMESPACE, api=admin, **kw)


def serverless(admin, name: str, **kw) -> sl.ServerlessBackend:
    return sl.ServerlessBackend(name, NAMESPACE, api=admin, **kw)


def env_uri(predictor: dict) -> str | None:
    return common.storage_uri(predictor)


class Interfering:
    """A CustomObjectsApi proxy: before each of the first ``times`` patches, another client writes.

    The other writer is a real second client changing a label, exactly what a concurrent
    ``kubectl label`` or controller would do between our read and our patch.
    """

    def __init__(self, api: Any, other: Any, times: int) -> None:
        self.api, self.other, self.times = api, other, times
        self.patch_errors: list[ApiException] = []
        self.patches = 0

    def get_namespaced_custom_object(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return self.api.get_namespaced_custom_object(*args, **kwargs)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kwargs):  # noqa: ANN001, ANN003
        self.patches += 1
        if self.times > 0:  # the other writer gets in between our read and our patch
            self.times -= 1
            self.other.patch_namespaced_custom_object(
                group,
                version,
                namespace,
                plural,
                name,
                {"metadata": {"labels": {"concurrent-writer": uuid.uuid4().hex[:8]}}},
                _content_type="application/merge-patch+json",
            )
        try:
            return self.api.patch_namespaced_custom_object(group, version, namespace, plural, name, body, **kwargs)
        except ApiException as exc:
            self.patch_errors.append(exc)
            raise


# -- the CRD itself ----------------------------------------------------------------------------
def test_versions_and_crd_schema(apiserver, admin):
    """Which binaries and CRD ran, and where the two canary fields sit in the CRD's schema."""
    print(json.dumps(apiserver.versions))  # shown with -s; the report quotes it
    ext = kclient.ApiextensionsV1Api(apiserver.api_client())
    resp = ext.read_custom_resource_definition("inferenceservices.serving.kserve.io", _preload_content=False)
    crd = json.loads(resp.data)  # raw: the client's models mangle JSONSchemaProps.items
    served = {v["name"]: v for v in crd["spec"]["versions"] if v["served"]}
    assert list(served) == ["v1beta1"] and served["v1beta1"]["storage"]
    spec = served["v1beta1"]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    canary = spec["properties"]["canary"]
    assert canary["type"] == "array"
    assert sorted(canary["items"]["required"]) == ["predictor", "trafficPercent"]
    tp = canary["items"]["properties"]["trafficPercent"]
    assert (tp["minimum"], tp["maximum"]) == (0, 100)
    assert "name" in canary["items"]["properties"]["predictor"]["properties"]
    assert "canaryTrafficPercent" in spec["properties"]["predictor"]["properties"]
    # structural schema, no preserve-unknown-fields under spec: unknown fields are pruned
    assert "x-kubernetes-preserve-unknown-fields" not in spec
    version = kclient.VersionApi(apiserver.api_client()).get_code()
    assert version.git_version.startswith("v1."), version


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_chart_isvc_accepted_strictly_and_nothing_pruned(render, admin, value_set):
    """Every rendered InferenceService is accepted with fieldValidation=Strict and stored verbatim."""
    obj = chart_isvc(render, value_set, unique("chart"))
    stored = create(admin, obj)
    assert user_view(stored)["spec"] == obj["spec"], "the API server changed (pruned/defaulted) the spec"
    if "canary.enabled=true" in VALUE_SETS[value_set]:
        if "kserve.deploymentMode=Knative" in VALUE_SETS[value_set]:
            assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 10
        else:
            assert stored["spec"]["canary"][0]["trafficPercent"] in (10, obj["spec"]["canary"][0]["trafficPercent"])
            assert stored["spec"]["canary"][0]["predictor"]["name"]


def test_canary_fields_kept_unknown_fields_pruned_or_rejected(admin):
    """spec.canary and canaryTrafficPercent survive a non-strict create; a bogus field does not."""
    base = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": unique("fields")},
        "spec": {
            "predictor": {
                "canaryTrafficPercent": 30,
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": CHAMPION},
                "bogusPredictorField": 1,
            },
            "canary": [
                {
                    "trafficPercent": 20,
                    "predictor": {
                        "name": "v2",
                        "model": {
                            "name": "kserve-container",
                            "modelFormat": {"name": "sklearn"},
                            "storageUri": CHALLENGER,
                        },
                    },
                    "bogusCanaryField": True,
                }
            ],
        },
    }
    stored = create(admin, base, validation="Ignore")  # no Strict: the server silently prunes
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 30
    assert stored["spec"]["canary"] == [
        {
            "trafficPercent": 20,
            "predictor": {
                "name": "v2",
                "model": {"name": "kserve-container", "modelFormat": {"name": "sklearn"}, "storageUri": CHALLENGER},
            },
        }
    ]
    assert "bogusPredictorField" not in stored["spec"]["predictor"]  # pruning is real

    strict = copy.deepcopy(base)
    strict["metadata"]["name"] = unique("strict")
    with pytest.raises(ApiException) as info:
        create(admin, strict, validation="Strict")
    assert info.value.status == 400, info.value.body  # strict field validation: BadRequest
    assert "bogusCanaryField" in info.value.body and "bogusPredictorField" in info.value.body


@pytest.mark.parametrize("pct", [101, -1])
def test_crd_bounds_canary_traffic_percent(admin, pct):
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": unique("bounds")},
        "spec": {
            "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": CHAMPION}},
            "canary": [{"trafficPercent": pct, "predictor": {"name": "v2"}}],
        },
    }
    with pytest.raises(ApiException) as info:
        create(admin, obj)
    assert info.value.status == 422 and "trafficPercent" in info.value.body


def test_canary_predictor_schema_requires_model_name(admin):
    """kserve v0.20.0 CRD: ``model`` needs ``name`` under spec.canary[].predictor, not under spec.predictor."""
    model = {"modelFormat": {"name": "sklearn"}, "storageUri": CHAMPION}
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": unique("modelname")},
        "spec": {
            "predictor": {"model": model},
            "canary": [{"trafficPercent": 10, "predictor": {"name": "v2", "model": model}}],
        },
    }
    with pytest.raises(ApiException) as info:
        create(admin, obj)
    assert info.value.status == 422
    assert "spec.canary[0].predictor.model.name: Required value" in info.value.body
    del obj["spec"]["canary"]
    assert "name" not in create(admin, obj)["spec"]["predictor"]["model"]


def test_standard_start_on_a_model_spec_champion(admin):
    """The backend names the canary's model container, so a ``model:``-style champion works too."""
    name = unique("stdmodel")
    create(
        admin,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {
                "predictor": {
                    "model": {"modelFormat": {"name": "housing"}, "runtime": "housing-runtime", "storageUri": CHAMPION}
                }
            },
        },
    )
    be = standard(admin, name)
    be.start(CHALLENGER, 10)
    stored = get(admin, name)
    assert stored["spec"]["canary"][0]["predictor"]["model"]["name"] == "kserve-container"
    assert stored["spec"]["canary"][0]["predictor"]["model"]["storageUri"] == CHALLENGER
    be.promote()
    assert get(admin, name)["spec"]["predictor"]["model"]["storageUri"] == CHALLENGER


# -- Standard mode -------------------------------------------------------------------------------
def test_standard_lifecycle_stored_objects(render, admin):
    name = unique("std")
    created = create(admin, chart_isvc(render, "standard", name))
    be = standard(admin, name)

    started = be.start(CHALLENGER, 10)
    stored = get(admin, name)
    assert user_view(stored) == user_view(be.last_object), "the server's result differs from the local patch"
    assert int(rv(stored)) > int(rv(created))
    (entry,) = stored["spec"]["canary"]
    assert entry["trafficPercent"] == 10 and entry["predictor"]["name"] == "v2"
    assert env_uri(entry["predictor"]) == CHALLENGER
    assert env_uri(stored["spec"]["predictor"]) == CHAMPION
    # KServe copies the InferenceService's annotations onto the pod template: the backend writes none
    assert stored["metadata"].get("annotations") == created["metadata"].get("annotations")
    assert (started.champion, started.challenger, started.challenger_percent) == (CHAMPION, CHALLENGER, 10)

    for pct in (25, 50, 100):
        be.set_weight(pct)
        assert get(admin, name)["spec"]["canary"][0]["trafficPercent"] == pct
    assert be.status().challenger_percent == 100

    be.promote()
    stored = get(admin, name)
    assert "canary" not in stored["spec"]
    assert stored["spec"]["predictor"]["name"] == "v2"
    assert env_uri(stored["spec"]["predictor"]) == CHALLENGER
    assert stored["metadata"].get("annotations") == created["metadata"].get("annotations")
    assert user_view(stored) == user_view(be.last_object)
    # the promoted predictor still carries everything the chart gave the champion
    champion = chart_isvc(render, "standard")["spec"]["predictor"]
    assert stored["spec"]["predictor"]["serviceAccountName"] == champion["serviceAccountName"]
    assert (
        stored["spec"]["predictor"]["containers"][0]["securityContext"] == champion["containers"][0]["securityContext"]
    )


def test_standard_rollback_stored_object(render, admin):
    name = unique("stdrb")
    created = create(admin, chart_isvc(render, "standard", name))
    be = standard(admin, name, canary_name="challenger")
    be.start(CHALLENGER, 25)
    assert get(admin, name)["spec"]["canary"][0]["predictor"]["name"] == "challenger"
    status = be.rollback("p95 latency 0.9 s > 0.25 s")
    stored = get(admin, name)
    assert "canary" not in stored["spec"]
    assert env_uri(stored["spec"]["predictor"]) == CHAMPION
    assert stored["metadata"].get("annotations") == created["metadata"].get("annotations")
    assert stored["spec"]["predictor"]["minReplicas"] == created["spec"]["predictor"]["minReplicas"]
    assert status.challenger is None
    # a second rollback (nothing in progress) is accepted and changes nothing
    be.rollback("again")
    assert rv(get(admin, name)) == rv(stored)


def test_standard_on_chart_canary_already_rendered(render, admin):
    """The chart can render a canary itself; the backend takes it over (weight, promote)."""
    name = unique("stdcn")
    obj = chart_isvc(render, "named-predictor", name)
    create(admin, obj)
    canary_name = obj["spec"]["canary"][0]["predictor"]["name"]
    be = standard(admin, name)
    be.set_weight(40)
    assert get(admin, name)["spec"]["canary"][0]["trafficPercent"] == 40
    be.promote()
    stored = get(admin, name)
    assert stored["spec"]["predictor"]["name"] == canary_name and "canary" not in stored["spec"]


# -- Serverless mode -----------------------------------------------------------------------------
def test_serverless_lifecycle_stored_objects(render, admin):
    name = unique("sl")
    create(admin, chart_isvc(render, "serverless", name))
    be = serverless(admin, name)

    be.start(CHALLENGER, 10)
    stored = get(admin, name)
    assert user_view(stored) == user_view(be.last_object)
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert env_uri(stored["spec"]["predictor"]) == CHALLENGER
    assert stored["metadata"]["annotations"][common.ANNOTATION_CHAMPION_URI] == CHAMPION
    status = be.status()
    assert (status.champion, status.challenger, status.challenger_percent) == (CHAMPION, CHALLENGER, 10)

    be.set_weight(50)
    assert get(admin, name)["spec"]["predictor"]["canaryTrafficPercent"] == 50

    be.promote()
    stored = get(admin, name)
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert env_uri(stored["spec"]["predictor"]) == CHALLENGER
    assert be.status().champion == CHALLENGER


def test_serverless_rollback_stored_object(render, admin):
    name = unique("slrb")
    create(admin, chart_isvc(render, "serverless", name))
    be = serverless(admin, name)
    be.start(CHALLENGER, 30)
    be.rollback("prediction mean shift 0.4 > 0.1")
    stored = get(admin, name)
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert stored["metadata"]["annotations"][common.ANNOTATION_REASON] == "prediction mean shift 0.4 > 0.1"


# -- concurrency: the resourceVersion guard -----------------------------------------------------
def test_stale_resource_version_test_op_is_rejected_by_the_server(render, admin):
    """What a failed JSON-patch ``test`` actually returns, and that the backend calls it a conflict."""
    name = unique("rv")
    created = create(admin, chart_isvc(render, "standard", name))
    admin.patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, name, {"metadata": {"labels": {"x": "1"}}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    stale = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv(created)},
        {"op": "add", "path": "/metadata/labels/y", "value": "2"},
    ]
    with pytest.raises(ApiException) as info:
        admin.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name, stale,
            field_validation="Strict", _content_type="application/json-patch+json",
        )  # fmt: skip
    exc = info.value
    body = json.loads(exc.body)
    print(f"stale test op -> HTTP {exc.status} reason={body.get('reason')!r} message={body.get('message')!r}")
    # kube-apiserver v1.35: a bare 422 Invalid, generic message, no details — nothing says "test"
    assert exc.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == "the server rejected our request due to an error in our request"
    assert not body.get("details")
    assert common._is_patch_apply_failure(exc)
    assert not common._is_conflict(exc)  # the message test alone would not have retried
    assert "y" not in get(admin, name)["metadata"]["labels"]


def test_backend_retries_after_a_concurrent_write(apiserver, render, admin):
    name = unique("race")
    create(admin, chart_isvc(render, "standard", name))
    other = kclient.CustomObjectsApi(apiserver.api_client())
    api = Interfering(admin, other, times=2)
    be = st.StandardBackend(name, NAMESPACE, api=api)
    be.start(CHALLENGER, 10)
    assert api.patches == 3 and [e.status for e in api.patch_errors] == [422, 422]
    stored = get(admin, name)
    assert stored["spec"]["canary"][0]["trafficPercent"] == 10
    assert stored["metadata"]["labels"]["concurrent-writer"]  # the other write was kept, not clobbered


def test_backend_gives_up_after_max_retries(apiserver, render, admin):
    name = unique("giveup")
    created = create(admin, chart_isvc(render, "serverless", name))
    other = kclient.CustomObjectsApi(apiserver.api_client())
    api = Interfering(admin, other, times=common.MAX_RETRIES)
    be = sl.ServerlessBackend(name, NAMESPACE, api=api)
    with pytest.raises(ConflictError, match="gave up after"):
        be.start(CHALLENGER, 10)
    assert api.patches == common.MAX_RETRIES
    stored = get(admin, name)
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert env_uri(stored["spec"]["predictor"]) == env_uri(created["spec"]["predictor"])


def test_concurrent_backends_and_writers_lose_no_update(apiserver, render, admin):
    """Real threads: weight changes and label writers race; every write lands or retries cleanly."""
    name = unique("threads")
    create(admin, chart_isvc(render, "standard", name))
    standard(admin, name).start(CHALLENGER, 1)
    errors: list[BaseException] = []
    weights = list(range(2, 14))

    def set_weight(pct: int) -> None:
        try:
            st.StandardBackend(name, NAMESPACE, api=kclient.CustomObjectsApi(apiserver.api_client())).set_weight(pct)
        except ConflictError:
            pass  # allowed under this contention: the backend said so instead of clobbering
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def label(i: int) -> None:
        try:
            kclient.CustomObjectsApi(apiserver.api_client()).patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, name, {"metadata": {"labels": {f"w{i}": "1"}}},
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=set_weight, args=(p,)) for p in weights]
    threads += [threading.Thread(target=label, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    stored = get(admin, name)
    assert all(stored["metadata"]["labels"].get(f"w{i}") == "1" for i in range(6)), "a label write was clobbered"
    assert stored["spec"]["canary"][0]["trafficPercent"] in weights
    assert len(stored["spec"]["canary"]) == 1


# -- dry run -------------------------------------------------------------------------------------
class Recording:
    def __init__(self, api: Any) -> None:
        self.api, self.calls = api, []

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self.api, attr)

        def call(*args, **kwargs):  # noqa: ANN002, ANN003
            self.calls.append(attr)
            return target(*args, **kwargs)

        return call


@pytest.mark.parametrize("mode", ["standard", "serverless"])
def test_dry_run_writes_nothing_and_server_agrees(apiserver, render, admin, mode):
    name = unique(f"dry{mode[:2]}")
    created = create(admin, chart_isvc(render, mode, name))
    api = Recording(admin)
    cls = st.StandardBackend if mode == "standard" else sl.ServerlessBackend
    out = io.StringIO()
    be = cls(name, NAMESPACE, api=api, dry_run=True, out=out)
    be.start(CHALLENGER, 10)
    assert api.calls == ["get_namespaced_custom_object"]
    assert rv(get(admin, name)) == rv(created)
    # the printed patch is exactly what the server would do: send it with dryRun=All
    printed = json.loads(out.getvalue().split("# resulting")[0].split("\n", 1)[1])
    assert printed == be.last_patch
    server_result = admin.patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, name, printed,
        dry_run="All", field_validation="Strict", _content_type="application/json-patch+json",
    )  # fmt: skip
    assert user_view(server_result) == user_view(be.last_object)
    assert rv(get(admin, name)) == rv(created)


def test_cli_dry_run_against_the_server_sends_nothing(apiserver, render, admin, tmp_path):
    name = unique("clidry")
    created = create(admin, chart_isvc(render, "standard", name))
    env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig), "HOUSING_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "housing", "rollout", "start", "-b", "standard", "--name", name]
    cmd += ["-n", NAMESPACE, "--challenger-uri", CHALLENGER, "--percent", "10", "--dry-run"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert '"path": "/spec/canary"' in result.stdout
    assert f'"value": "{rv(created)}"' in result.stdout  # the resourceVersion guard, read from the server
    assert rv(get(admin, name)) == rv(created)

    # without --dry-run the same command does write (so the test above is not vacuous); no controller
    # runs here, so the canary never turns Ready: start says so after --ready-timeout and exits 1
    live_cmd = [c for c in cmd if c != "--dry-run"] + ["--ready-timeout", "3"]
    live = subprocess.run(live_cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert live.returncode == 1, live.stderr + live.stdout
    assert "not Ready after 3 s" in live.stderr + live.stdout
    assert get(admin, name)["spec"]["canary"][0]["trafficPercent"] == 10
    nowait = subprocess.run(live_cmd + ["--no-wait"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert nowait.returncode == 0, nowait.stderr + nowait.stdout


# -- RBAC: the chart's rollout Role --------------------------------------------------------------
def test_chart_rollout_role_is_enough_and_no_more(apiserver, render, admin):
    as_sa = rollout_rbac(apiserver, render)
    objs = render(VALUE_SETS["standard"])
    (role,) = [o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "housing-rollout"]
    (name,) = role["rules"][0]["resourceNames"]  # the release's own InferenceService, and no other
    other = unique("rbac")
    create(admin, chart_isvc(render, "standard", name))
    create(admin, chart_isvc(render, "standard", other))
    sa_api = kclient.CustomObjectsApi(as_sa)
    be = standard(sa_api, name)
    be.start(CHALLENGER, 10)
    be.set_weight(50)
    be.promote()
    assert get(admin, name)["spec"]["predictor"]["name"] == "v2"
    with pytest.raises(ApiException) as info:
        sa_api.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    assert info.value.status == 403
    # patch on any other InferenceService of the namespace would amount to running any image there
    with pytest.raises(RolloutError, match="403|Forbidden|forbidden"):
        standard(sa_api, other).start(CHALLENGER, 10)


def test_missing_object_is_a_clear_error(admin):
    with pytest.raises(RolloutError, match="not found"):
        standard(admin, "does-not-exist").status()


# -- the rollout Lease: one run at a time --------------------------------------------------------
def test_lease_refuses_a_second_run_naming_the_first_and_expires(apiserver, admin):
    from rollout.lease import RolloutLease

    isvc = unique("lease")
    first = RolloutLease(admin, NAMESPACE, isvc, holder="alice@ci:1:aaaaaa", duration=3)
    assert first.acquire() is None  # nobody held it before
    first.renew(step="1/4", weight=10)
    second = RolloutLease(admin, NAMESPACE, isvc, holder="bob@ci:2:bbbbbb", duration=3)
    with pytest.raises(RolloutError, match=r"alice@ci:1:aaaaaa.*step=1/4"):
        second.acquire()
    with pytest.raises(RolloutError, match="alice"):
        second.check_free()
    # alice's process dies without releasing: after the duration the Lease is bob's to take
    import time

    time.sleep(3.5)
    before = second.acquire()
    assert before is not None and before.holder == "alice@ci:1:aaaaaa" and not before.live()
    assert before.progress == {"step": "1/4", "weight": "10"}  # where the dead run stopped
    assert second.state().progress == {}  # bob's run shows no step of alice's as its own
    with pytest.raises(RolloutError, match="lost Lease"):
        first.renew()
    second.release(outcome="promoted")
    state = second.state()
    assert state is not None and state.holder is None and state.progress["outcome"] == "promoted"
    stored = admin.get_namespaced_custom_object("coordination.k8s.io", "v1", NAMESPACE, "leases", f"{isvc}-rollout")
    assert stored["spec"]["leaseTransitions"] == 1


def test_lease_race_has_one_winner(apiserver, admin):
    """Two runs reading a free Lease at once: the resourceVersion makes one of the writes fail."""
    from rollout.lease import RolloutLease

    isvc = unique("race")
    RolloutLease(admin, NAMESPACE, isvc, holder="seed", duration=1).acquire()
    import time

    time.sleep(1.2)  # expired: free for both
    a = RolloutLease(admin, NAMESPACE, isvc, holder="a", duration=30)
    b = RolloutLease(admin, NAMESPACE, isvc, holder="b", duration=30)
    obj = a._get()
    a._write(obj, "a", acquired=True)
    with pytest.raises(RolloutError, match="at the same moment"):
        b._write(obj, "b", acquired=True)  # b read the same version before a wrote
    assert a.state().holder == "a"


def test_a_stopped_run_is_resumed_from_its_leases_weight(render, admin):
    """A run killed mid-walk leaves its canary and its Lease's progress: the next run adopts the
    canary (no second start) and goes on from the weight it was at."""
    from rollout.lease import RolloutLease
    from rollout.orchestrator import resume_steps

    name = unique("resume")
    create(admin, chart_isvc(render, "standard", name))
    be = standard(admin, name)
    steps = [20, 50, 100]
    assert resume_steps(be, CHALLENGER, steps, None) is None  # no canary: a fresh walk
    be.start(CHALLENGER, 50)
    dead = RolloutLease(admin, NAMESPACE, name, holder="killed@ci:1:aaaaaa", duration=1)
    dead.acquire()
    dead.renew(**{"challenger-uri": CHALLENGER, "step": "2/3", "weight": 50})
    state = dead.state()
    assert resume_steps(be, CHALLENGER, steps, state) == [50, 100]
    assert resume_steps(be, "s3://models/housing/other", steps, state) is None  # another canary runs
    other = RolloutLease(admin, NAMESPACE, name, holder="x", duration=1)
    other.progress = {"challenger-uri": "s3://models/housing/other", "weight": "50"}
    assert resume_steps(be, CHALLENGER, steps, state_with(other)) == steps  # progress of another challenger
    assert resume_steps(be, CHALLENGER, steps, None) == steps  # no progress known: from the first step


def state_with(lease):
    """A LeaseState carrying ``lease.progress`` (as an earlier run's Lease would)."""
    from rollout.lease import LeaseState

    return LeaseState(holder=lease.holder, acquired=None, renewed=None, duration=1, progress=dict(lease.progress))


def test_chart_rollout_role_may_hold_its_lease_only(apiserver, render, admin):
    from rollout.lease import RolloutLease

    as_sa = rollout_rbac(apiserver, render)
    sa_api = kclient.CustomObjectsApi(as_sa)
    lease = RolloutLease(sa_api, NAMESPACE, "housing", holder="rollout-sa", duration=30)
    try:
        lease.acquire()
        lease.renew(step="1/2")
        lease.release()
    finally:  # leave no Lease for the other tests
        admin.delete_namespaced_custom_object("coordination.k8s.io", "v1", NAMESPACE, "leases", "housing-rollout")
    with pytest.raises(RolloutError, match="forbidden"):
        RolloutLease(sa_api, NAMESPACE, "other", holder="rollout-sa").acquire()


# -- MLflow unreachable at promotion: the re-run finishes the registry step only ---------------------
def test_promote_with_mlflow_down_is_finished_by_a_rerun_without_a_second_cluster_change(
    apiserver, render, admin, mlflow_server, servers_up, tmp_path
):
    from mlflow import MlflowClient

    from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, TAG_BUNDLE_URI

    name = unique("mlfdown")
    model = unique("housing-mlfdown")
    create(admin, chart_isvc(render, "standard", name))
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    client.create_registered_model(model)
    for uri in (CHAMPION, CHALLENGER):
        client.create_model_version(model, source=uri, tags={TAG_BUNDLE_URI: uri})
    client.set_registered_model_alias(model, ALIAS_CHAMPION, "1")
    client.set_registered_model_alias(model, ALIAS_CHALLENGER, "2")
    env = {
        **os.environ,
        "KUBECONFIG": str(apiserver.kubeconfig),
        "HOUSING_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "HOUSING_MODEL_NAME": model,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    }

    def rollout(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "housing", "rollout", *args, "-b", "standard", "--name", name, "-n", NAMESPACE]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=180)

    started = rollout("start", "--percent", "50", "--no-wait", "--skip-quality-gate")  # no bundles here
    assert started.returncode == 0, started.stdout + started.stderr
    mlflow_server.stop()
    down = rollout("promote")
    assert down.returncode == 1, down.stdout + down.stderr
    assert "the cluster is promoted but MLflow" in down.stderr and "again" in down.stderr, down.stderr
    promoted = get(admin, name)
    assert "canary" not in promoted["spec"] and env_uri(promoted["spec"]["predictor"]) == CHALLENGER
    mlflow_server.start()
    assert str(client.get_model_version_by_alias(model, ALIAS_CHAMPION).version) == "1"  # not moved yet
    again = rollout("promote")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already serves as the champion" in again.stdout
    assert rv(get(admin, name)) == rv(promoted)  # no second cluster change
    assert str(client.get_model_version_by_alias(model, ALIAS_CHAMPION).version) == "2"
    assert str(client.get_model_version_by_alias(model, "previous").version) == "1"
