"""charts/housing: helm lint, rendering for every value set, objects validated strictly.

Built-in kinds are validated against the Kubernetes JSON schemas bundled by kubernetes-validate
(newest version it ships, strict: no unknown fields); InferenceService against the kserve SDK
models (rollout.validate.validate_isvc); the ServiceMonitor's few fields by hand.
"""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest
import yaml

from common import config
from predictor.guard.policy import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_INFLIGHT_BODY_BYTES,
    Guard,
    GuardConfig,
)
from predictor.transport.drain import DRAIN_FILE_ENV
from rollout.backends import kserve_standard
from rollout.backends.kserve_common import apply_patch
from rollout.validate import validate_isvc
from training.pin import pin_key

from . import gateway_api
from .conftest import CHART, NAMESPACE, RELEASE, VALUE_SETS, by_kind, run_helm, template_args

pytestmark = pytest.mark.cluster

K8S_VERSION = kubernetes_validate.latest_version()
CUSTOM_KINDS = {"InferenceService", "ServiceMonitor", "PrometheusRule"}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
}


def _values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_helm_lint_strict(helm_bin):
    result = run_helm(helm_bin, ["lint", "--strict", str(CHART)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict_value_sets(helm_bin, name):
    args = ["lint", "--strict", str(CHART)]
    for item in VALUE_SETS[name]:
        args += ["--set", item]
    result = run_helm(helm_bin, args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_values_agree_with_housing_config():
    values = _values()
    assert values["model"]["name"] == config.DEFAULT_MODEL_NAME
    assert values["predictor"]["httpPort"] == config.DEFAULT_HTTP_PORT
    assert values["predictor"]["grpcPort"] == config.DEFAULT_GRPC_PORT
    assert values["predictor"]["metricsPort"] == config.METRICS_PORT
    assert values["s3"]["bucket"] == config.DEFAULT_BUCKET
    assert values["predictor"]["storageUri"].startswith(f"s3://{config.DEFAULT_BUCKET}/{config.DEFAULT_MODEL_NAME}/")
    assert values["predictor"]["livenessProbe"]["httpGet"]["port"] == config.DEFAULT_HTTP_PORT
    assert "httpGet" not in values["predictor"]["readinessProbe"]  # the chart writes it from model.name and httpPort


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_validate(render, name):
    objects = render(VALUE_SETS[name])
    assert objects, "nothing rendered"
    for obj in objects:
        kind = obj["kind"]
        where = f"{kind}/{obj['metadata']['name']}"
        if kind == "InferenceService":
            validate_isvc(obj)
        elif obj["apiVersion"].startswith(f"{gateway_api.GROUP}/"):
            gateway_api.validate(obj)
        elif kind == "ServiceMonitor":
            assert obj["apiVersion"] == "monitoring.coreos.com/v1", where
            assert set(obj) <= {"apiVersion", "kind", "metadata", "spec"}, where
            assert set(obj["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}, where
            for ep in obj["spec"]["endpoints"]:
                assert set(ep) <= {"port", "targetPort", "path", "interval", "scheme"}, where
        elif kind == "PrometheusRule":
            assert obj["apiVersion"] == "monitoring.coreos.com/v1", where
            assert set(obj["spec"]) == {"groups"}, where
            for group in obj["spec"]["groups"]:
                assert set(group) <= {"name", "interval", "rules"}, where
                for rule in group["rules"]:
                    assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}, where
        else:
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where} invalid for Kubernetes {K8S_VERSION}: {exc.message} at {list(exc.path)}")
        assert obj["metadata"].get("namespace", NAMESPACE) == NAMESPACE, where


def _isvc(objects: list[dict]) -> dict:
    (isvc,) = by_kind(objects, "InferenceService")
    return isvc


def _predictor_container(predictor: dict) -> dict:
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    return container


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _container_images(objects: list[dict]) -> dict[tuple[str, str], str]:
    """(object name, container name) -> image, for every container and init container."""
    images = {}
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] == "InferenceService":
            pods = [spec["predictor"]] + [c["predictor"] for c in spec.get("canary", [])]
        elif obj["kind"] in ("Job", "Deployment"):
            pods = [spec["template"]["spec"]]
        elif obj["kind"] == "Pod":
            pods = [spec]
        else:
            continue
        for pod in pods:
            for container in pod.get("initContainers", []) + pod["containers"]:
                images[(obj["metadata"]["name"], container["name"])] = container["image"]
    return images


def test_serving_and_training_images_each_run_their_workloads(render):
    """The serving image runs the predictor pods (their wait-for-bundle init container too) and
    helm test; the training image the training Job, the dev-stack MLflow and the bucket Job."""
    digest = "0" * 64
    images = _container_images(
        render(
            [
                "image.repository=registry.example:5000/housing-serving",
                "image.tag=1.2",
                "training.image.repository=registry.example:5000/housing-training",
                f"training.image.tag=1.3@sha256:{digest}",
                "canary.enabled=true",
                "canary.storageUri=s3://models/housing/2",
            ]
        )
    )
    serving = {k for k, v in images.items() if v == "registry.example:5000/housing-serving:1.2"}
    training = {k for k, v in images.items() if v == f"registry.example:5000/housing-training:1.3@sha256:{digest}"}
    assert serving == {
        (RELEASE, "wait-for-bundle"),
        (RELEASE, "kserve-container"),  # the champion and the canary entry, same key
        (f"{RELEASE}-test-v1", "v1-predict"),
    }
    assert training == {
        (f"{RELEASE}-train-install", "wait-for-services"),
        (f"{RELEASE}-train-install", "training"),
        (f"{RELEASE}-mlflow", "mlflow"),
        (f"{RELEASE}-minio-bucket-r1", "bucket"),
    }
    others = {v for k, v in images.items() if k not in serving | training}
    assert others == {_values()["devStack"]["minio"]["image"]}
    defaults = _container_images(render())
    assert defaults[(RELEASE, "kserve-container")] == "housing-serving:0.1.0"
    assert defaults[(f"{RELEASE}-train-install", "training")] == "housing-training:0.1.0"


def test_knative_predictor_has_one_port_and_no_init_container(render):
    """Knative allows one container port and (by default) no init containers."""
    predictor = _isvc(render(["kserve.deploymentMode=Knative"]))["spec"]["predictor"]
    assert [p["name"] for p in _predictor_container(predictor)["ports"]] == ["http1"]
    assert "initContainers" not in predictor


def test_isvc_standard_defaults(render):
    isvc = _isvc(render())
    assert isvc["metadata"]["name"] == RELEASE
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    spec = isvc["spec"]
    assert "canary" not in spec
    predictor = spec["predictor"]
    assert "canaryTrafficPercent" not in predictor
    assert predictor["serviceAccountName"] == RELEASE
    assert predictor["minReplicas"] == 1 and predictor["maxReplicas"] >= 1
    container = _predictor_container(predictor)
    assert container["image"] == "housing-serving:0.1.0"
    assert container["command"] == ["python", "-m", "predictor"]
    args = container["args"]
    assert args[:8] == [
        "--model_name", config.DEFAULT_MODEL_NAME,
        "--model_dir", "/mnt/models",
        "--http_port", str(config.DEFAULT_HTTP_PORT),
        "--grpc_port", str(config.DEFAULT_GRPC_PORT),
    ]  # fmt: skip
    assert _env(container)["STORAGE_URI"] == _values()["predictor"]["storageUri"]
    # Standard mode: KServe makes a Service port of every declared container port after the first
    assert container["ports"] == [
        {"name": "http1", "containerPort": config.DEFAULT_HTTP_PORT, "protocol": "TCP"},
        {"name": "grpc", "containerPort": config.DEFAULT_GRPC_PORT, "protocol": "TCP"},
        {"name": "metrics", "containerPort": config.METRICS_PORT, "protocol": "TCP"},
    ]
    assert args[args.index("--metrics_port") + 1] == str(config.METRICS_PORT)  # the HTTP port answers it 404
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # the predictor waits for its bundle before KServe's storage-initializer runs
    (wait,) = predictor["initContainers"]
    assert wait["name"] == "wait-for-bundle" and _env(wait)["STORAGE_URI"] == _env(container)["STORAGE_URI"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"]["port"] == config.DEFAULT_HTTP_PORT
    assert container["livenessProbe"]["httpGet"]["port"] == config.DEFAULT_HTTP_PORT
    annotations = predictor["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(config.METRICS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_pods_meet_restricted_pod_security(render, name):
    objects = render(VALUE_SETS[name])
    pod_specs = []
    isvc = _isvc(objects)
    pod_specs.append(("isvc.predictor", isvc["spec"]["predictor"]))
    for i, entry in enumerate(isvc["spec"].get("canary", [])):
        pod_specs.append((f"isvc.canary[{i}]", entry["predictor"]))
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            pod_specs.append((obj["metadata"]["name"], obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "CronJob":
            pod_specs.append((obj["metadata"]["name"], obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            pod_specs.append((obj["metadata"]["name"], obj["spec"]))
    assert len(pod_specs) >= 2
    for where, spec in pod_specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        # only the rollout runner and the install's training Job (it records the registered digest) talk
        # to the API server, each as its own ServiceAccount with a minimal Role
        talks = where in (f"{RELEASE}-rollout", f"{RELEASE}-train-install")
        assert spec.get("automountServiceAccountToken") is talks, where
        if talks:
            assert spec["serviceAccountName"] == where, where
        for container in spec["containers"]:
            sc = container["securityContext"]
            for key, want in RESTRICTED_CONTAINER.items():
                assert sc[key] is want, f"{where}/{container['name']}: {key}"
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert container["resources"]["limits"]["memory"], where
            assert container["resources"]["requests"]["cpu"], where


def test_canary_standard_mode_renders_spec_canary(render):
    isvc = _isvc(render(VALUE_SETS["canary-10-standard"]))
    spec = isvc["spec"]
    assert "canaryTrafficPercent" not in spec["predictor"]
    assert _env(_predictor_container(spec["predictor"]))["STORAGE_URI"] == _values()["predictor"]["storageUri"]
    (entry,) = spec["canary"]
    assert entry["trafficPercent"] == 10
    assert entry["predictor"]["name"] == "challenger"
    container = _predictor_container(entry["predictor"])
    assert _env(container)["STORAGE_URI"] == "s3://models/housing/2"
    # KServe v0.20's webhook refuses replica bounds on a canary ("canary uses fixed replicas")
    assert "maxReplicas" not in entry["predictor"] and "minReplicas" not in entry["predictor"]
    assert spec["predictor"]["maxReplicas"] == _values()["predictor"]["maxReplicas"]
    # the same pod labels as the stable: a promotion keeps the canary's pods without a restart
    assert entry["predictor"]["labels"] == spec["predictor"]["labels"]


def test_standard_mode_has_an_endpoint_service_that_survives_promotion(render):
    """<release>-inference selects every predictor pod of the InferenceService by KServe's labels."""
    objects = render(VALUE_SETS["canary-10-standard"])
    isvc = _isvc(objects)
    (svc,) = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == f"{RELEASE}-inference"]
    assert svc["spec"]["selector"] == {
        "serving.kserve.io/inferenceservice": isvc["metadata"]["name"],
        "component": "predictor",
    }
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    container = _predictor_container(isvc["spec"]["predictor"])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"]["port"] == 80 and named[ports["http"]["targetPort"]] == _values()["predictor"]["httpPort"]
    assert named[ports["grpc"]["targetPort"]] == _values()["predictor"]["grpcPort"]
    hooks = [o for o in by_kind(objects, "Pod") if "test" in o["metadata"]["name"]]
    assert hooks and f"{RELEASE}-inference." in str(hooks[0]["spec"]["containers"][0]["env"])
    knative = render(VALUE_SETS["canary-10-serverless"])
    assert not [s for s in by_kind(knative, "Service") if s["metadata"]["name"] == f"{RELEASE}-inference"]


def test_canary_serverless_mode_renders_canary_traffic_percent(render):
    isvc = _isvc(render(VALUE_SETS["canary-10-serverless"]))
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    spec = isvc["spec"]
    assert "canary" not in spec
    assert spec["predictor"]["canaryTrafficPercent"] == 10
    assert "name" not in spec["predictor"]
    # KServe keeps the last fully rolled-out revision (the champion); the new one is the challenger.
    assert _env(_predictor_container(spec["predictor"]))["STORAGE_URI"] == "s3://models/housing/2"


def test_legacy_raw_deployment_name_still_renders_spec_canary(render):
    isvc = _isvc(render(VALUE_SETS["legacy-mode-names-canary"]))
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert isvc["spec"]["canary"][0]["trafficPercent"] == 10


def test_named_predictor_standard(render):
    isvc = _isvc(render(VALUE_SETS["named-predictor"]))
    assert isvc["spec"]["predictor"]["name"] == "blue"
    assert isvc["spec"]["canary"][0]["predictor"]["name"] == "challenger"


def _secrets(objects: list[dict]) -> dict[str, dict]:
    return {s["metadata"]["name"]: s for s in by_kind(objects, "Secret")}


def test_s3_secret_annotations_and_generated_credentials(render):
    objects = render()
    secrets = _secrets(objects)
    assert set(secrets) == {f"{RELEASE}-s3", f"{RELEASE}-s3-serving"}  # the admin's, the serving user's
    for secret in secrets.values():
        annotations = secret["metadata"]["annotations"]
        assert annotations["serving.kserve.io/s3-endpoint"] == f"{RELEASE}-minio.{NAMESPACE}.svc.cluster.local:9000"
        assert annotations["serving.kserve.io/s3-usehttps"] == "0"
        assert annotations["serving.kserve.io/s3-region"] == "us-east-1"
        assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert secrets[f"{RELEASE}-s3"]["data"] != secrets[f"{RELEASE}-s3-serving"]["data"]
    # Random on every render without a cluster: nothing secret comes from values.
    again = _secrets(render(["s3.region=us-east-1"]))
    assert again[f"{RELEASE}-s3"]["data"] != secrets[f"{RELEASE}-s3"]["data"]
    service_accounts = {sa["metadata"]["name"]: sa for sa in by_kind(objects, "ServiceAccount")}
    # KServe's storage-initializer reads the bucket as the serving user
    assert service_accounts[RELEASE]["secrets"] == [{"name": f"{RELEASE}-s3-serving"}]


def _secret_refs(container: dict) -> dict[str, str]:
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


@pytest.mark.parametrize("payload_log", [False, True])
def test_serving_reads_the_bucket_as_its_own_user_that_the_bucket_job_creates(render, payload_log):
    """Only training, MLflow and the bucket Job hold the admin keys: a predictor pod can read
    bundles and write the payload log's prefix (housing.minio_users), never change a bundle."""
    objects = render(["payloadLog.enabled=true"] if payload_log else [])
    admin, serving = f"{RELEASE}-s3", f"{RELEASE}-s3-serving"
    predictor = _isvc(objects)["spec"]["predictor"]
    (wait,) = predictor["initContainers"]
    assert set(_secret_refs(wait).values()) == {serving}
    assert set(_secret_refs(_predictor_container(predictor)).values()) == ({serving} if payload_log else set())
    jobs = {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in by_kind(objects, "Job")}
    assert set(_secret_refs(jobs["training"]["spec"]["template"]["spec"]["containers"][0]).values()) == {admin}
    (bucket,) = jobs["minio-bucket"]["spec"]["template"]["spec"]["containers"]
    refs = _secret_refs(bucket)
    assert (refs["AWS_ACCESS_KEY_ID"], refs["SERVING_ACCESS_KEY"], refs["SERVING_SECRET_KEY"]) == (
        admin,
        serving,
        serving,
    )
    assert "housing.minio_users" in bucket["command"][-1]
    prefix = _env(bucket)["PAYLOAD_LOG_PREFIX"]
    assert prefix == (f"{config.DEFAULT_BUCKET}/payloads" if payload_log else "")
    if payload_log:
        assert _flag(_args(objects), "--payload_log_uri") == f"s3://{prefix}"


def test_a_serving_secret_of_ones_own_is_used_and_none_is_generated(render):
    objects = render(["s3.servingSecret=reader"])
    assert set(_secrets(objects)) == {f"{RELEASE}-s3"}
    (sa,) = [sa for sa in by_kind(objects, "ServiceAccount") if sa["metadata"]["name"] == RELEASE]
    assert sa["secrets"] == [{"name": "reader"}]
    (wait,) = _isvc(objects)["spec"]["predictor"]["initContainers"]
    assert set(_secret_refs(wait).values()) == {"reader"}
    # the dev MinIO is the chart's: its bucket Job creates the user of that Secret
    (job,) = [j for j in by_kind(objects, "Job") if j["metadata"]["name"].startswith(f"{RELEASE}-minio-bucket")]
    assert _secret_refs(job["spec"]["template"]["spec"]["containers"][0])["SERVING_SECRET_KEY"] == "reader"


def test_existing_secret_renders_no_secret(render):
    objects = render(VALUE_SETS["existing-secret"])
    assert set(_secrets(objects)) <= {f"{RELEASE}-s3-serving"}
    (sa,) = [sa for sa in by_kind(objects, "ServiceAccount") if sa["metadata"]["name"] == RELEASE]
    assert sa["secrets"] == [{"name": _values()["s3"]["servingSecret"] or f"{RELEASE}-s3-serving"}]
    external = render([*VALUE_SETS["existing-secret"], "devStack.minio.enabled=false", "s3.endpoint=s3.example:9000"])
    assert by_kind(external, "Secret") == []  # no dev MinIO, no serving Secret given: serving shares it
    (sa,) = [sa for sa in by_kind(external, "ServiceAccount") if sa["metadata"]["name"] == RELEASE]
    assert sa["secrets"] == [{"name": "my-s3-credentials"}]
    (job,) = [j for j in by_kind(objects, "Job") if j["metadata"]["name"].endswith("-train-install")]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in e
    }
    assert refs == {"AWS_ACCESS_KEY_ID": "my-s3-credentials", "AWS_SECRET_ACCESS_KEY": "my-s3-credentials"}


def test_training_job_wiring(render):
    objects = render()
    (job,) = [
        j for j in by_kind(objects, "Job") if j["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    ]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "training"]
    env = _env(container)
    assert env["MLFLOW_TRACKING_URI"] == f"http://{RELEASE}-mlflow.{NAMESPACE}.svc.cluster.local:5000"
    assert env["AWS_ENDPOINT_URL"] == f"http://{RELEASE}-minio.{NAMESPACE}.svc.cluster.local:9000"
    assert env["HOUSING_BUNDLE_ROOT"] == f"s3://{config.DEFAULT_BUCKET}"
    assert env["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["key"] == "AWS_ACCESS_KEY_ID"
    assert env["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["key"] == "AWS_SECRET_ACCESS_KEY"
    # its own ServiceAccount: it records the registered digest in the pins' ConfigMap (training/pin.py)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == f"{RELEASE}-train-install"
    assert env["HOUSING_PIN_CONFIGMAP"] == f"{RELEASE}-bundle-pins" and env["HOUSING_PIN_NAMESPACE"] == NAMESPACE
    (cron,) = by_kind(objects, "CronJob")  # later runs register challengers, which rollouts pin: no token, no pin
    cron_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cron_pod["serviceAccountName"] == RELEASE and cron_pod["automountServiceAccountToken"] is False
    assert "HOUSING_PIN_CONFIGMAP" not in _env(cron_pod["containers"][0])


def test_rollout_rbac_is_minimal(render):
    objects = render()
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == f"{RELEASE}-rollout"]
    assert role["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "resourceNames": [_isvc(objects)["metadata"]["name"]],  # its own only (issue 22 item 9)
            "verbs": ["get", "patch"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [f"{RELEASE}-rollout"],  # the one Lease a run holds (rollout/lease.py)
            "verbs": ["get", "update"],
        },
        # a rollout step is an Event on the InferenceService; `housing rollout status` lists them
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "list"]},
    ]
    (binding,) = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == f"{RELEASE}-rollout"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    (subject,) = binding["subjects"]
    assert subject["kind"] == "ServiceAccount" and subject["namespace"] == NAMESPACE
    assert subject["name"] in {sa["metadata"]["name"] for sa in by_kind(objects, "ServiceAccount")}
    assert by_kind(objects, "ClusterRole") == [] and by_kind(objects, "ClusterRoleBinding") == []


def test_dev_stack_flags(render):
    on = {o["metadata"]["name"] for o in render() if o["kind"] in ("Deployment", "Service")}
    assert {f"{RELEASE}-minio", f"{RELEASE}-mlflow"} <= on
    off = render(VALUE_SETS["devstack-off"])
    dev_stack = [o for o in off if o["kind"] in ("Deployment", "Service")]
    assert [o["metadata"]["name"] for o in dev_stack] == [f"{RELEASE}-inference"]  # only the model's endpoint
    (job,) = by_kind(off, "Job")
    env = _env(job["spec"]["template"]["spec"]["containers"][0])
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage.svc.cluster.local:9000"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops.svc.cluster.local:5000"
    monitored = render(VALUE_SETS["devstack-servicemonitor"])
    (monitor,) = by_kind(monitored, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["targetPort"] == config.METRICS_PORT  # not the routed HTTP port
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_helm_test_hook_sends_v1_request(render):
    objects = render()
    (pod,) = by_kind(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = _env(pod["spec"]["containers"][0])
    assert env["PREDICT_URL"] == (
        f"http://{RELEASE}-inference.{NAMESPACE}.svc.cluster.local/v1/models/{config.DEFAULT_MODEL_NAME}:predict"
    )
    (cm,) = [
        c for c in by_kind(objects, "ConfigMap") if c["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]
    body = json.loads(cm["data"]["v1-request.json"])
    assert isinstance(body["instances"], list) and body["instances"]


def test_notes_print_v1_and_v2_curl(helm_bin):
    result = run_helm(helm_bin, ["install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE])
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"/v1/models/{config.DEFAULT_MODEL_NAME}:predict" in notes
    assert f"/v2/models/{config.DEFAULT_MODEL_NAME}/infer" in notes
    assert "curl" in notes
    for name in ("v1-request.json", "v2-request.json"):
        assert f"@charts/housing/files/{name}" in notes
        assert (CHART / "files" / name).is_file()


def test_sample_requests_agree():
    v1 = json.loads((CHART / "files" / "v1-request.json").read_text())
    v2 = json.loads((CHART / "files" / "v2-request.json").read_text())
    (row,) = v1["instances"]
    tensors = {t["name"]: t for t in v2["inputs"]}
    assert set(tensors) == set(row)
    for name, value in row.items():
        tensor = tensors[name]
        assert tensor["shape"] == [1] and tensor["data"] == [value]
        assert tensor["datatype"] == ("BYTES" if isinstance(value, str) else "FP64")


GATEWAY_CANARY = ["canary.enabled=true", "canary.storageUri=s3://models/housing/2"]
BAD_VALUES = {
    "traffic-over-100": ["canary.trafficPercent=150"],
    "traffic-negative": ["canary.trafficPercent=-1"],
    "traffic-not-int": ["canary.trafficPercent=ten"],
    "unknown-mode": ["kserve.deploymentMode=Raw"],
    "storage-not-s3": ["predictor.storageUri=http://example.com/model"],
    "canary-without-uri": ["canary.enabled=true"],
    "unknown-top-level-key": ["replicas=3"],
    "unknown-nested-key": ["predictor.replicas=3"],
    "port-out-of-range": ["predictor.httpPort=70000"],
    "root-filesystem-writable": ["containerSecurityContext.readOnlyRootFilesystem=false"],
    "privilege-escalation": ["containerSecurityContext.allowPrivilegeEscalation=true"],
    "run-as-root-allowed": ["podSecurityContext.runAsNonRoot=false"],
    "bad-mlflow-backend": ["devStack.mlflow.backend=mysql"],
    "postgres-backend-removed": ["devStack.mlflow.backend=postgres"],
    "no-endpoint-without-minio": ["devStack.minio.enabled=false"],
    "bad-pull-policy": ["image.pullPolicy=Sometimes"],
    "training-image-tag-bad": ["training.image.tag=latest@sha256:short"],
    "training-image-empty-repository": ["training.image.repository="],
    "training-image-unknown-key": ["training.image.pullPolicy=Always"],
    "quantity-not-string": ["predictor.resources.limits.cpu=2"],
    "bad-bucket": ["s3.bucket=Models_Bucket"],
    "alert-error-rate-over-1": ["monitoring.prometheusRule.errorRate=2"],
    "alert-threshold-not-a-number": ["monitoring.prometheusRule.p95Seconds=fast"],
    "alert-bad-duration": ["monitoring.prometheusRule.for=5 minutes"],
    "dashboard-unknown-key": ["monitoring.grafanaDashboard.folder=ML"],
    "auth-secret-bad-name": ["auth.existingSecret=Bad_Secret"],
    "rate-limit-negative": ["rateLimit.requestsPerSecond=-1"],
    "rate-limit-not-a-number": ["rateLimit.requestsPerSecond=lots"],
    "body-limit-tiny": ["predictor.maxBodyBytes=10"],
    "monitoring-namespace-bad": ["networkPolicy.monitoring.namespace=Monitoring_NS"],
    "network-policy-unknown-key": ["networkPolicy.egress=true"],
    "rate-limit-with-two-workers": ["rateLimit.requestsPerSecond=10", "predictor.workers=2"],
    "payload-sample-over-1": ["payloadLog.sample=1.5"],
    "payload-uri-not-s3": ["payloadLog.uri=/var/log/payloads"],
    "trusted-proxy-not-a-cidr": ["rateLimit.trustedProxies={gateway}"],
    "gateway-weight-over-100": [
        "gateway.enabled=true",
        "canary.enabled=true",
        "canary.storageUri=s3://models/housing/2",
        "canary.trafficPercent=101",
    ],
    "gateway-weight-negative": [
        "gateway.enabled=true",
        "canary.enabled=true",
        "canary.storageUri=s3://models/housing/2",
        "canary.trafficPercent=-1",
    ],
    "gateway-bad-listener-port": ["gateway.enabled=true", "gateway.listenerPort=0"],
    "gateway-bad-listener-name": ["gateway.enabled=true", "gateway.grpcListener=gRPC_listener"],
    "gateway-bad-name": ["gateway.enabled=true", "gateway.create=false", "gateway.gatewayName=Shared_GW"],
    "gateway-unknown-key": ["gateway.mirror=true"],
    "gateway-knative": ["gateway.enabled=true", "kserve.deploymentMode=Knative"],
    "digest-not-hex": ["predictor.bundleDigest=" + "z" * 64],
    "digest-too-short": ["predictor.bundleDigest=abc123"],
    "canary-digest-uppercase": ["canary.bundleDigest=" + "A" * 64],
    "queued-rpcs-negative": ["predictor.maxQueuedRpcs=-1"],
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(helm_bin, name):
    result = run_helm(helm_bin, template_args(BAD_VALUES[name]))
    assert result.returncode != 0, f"{name} was accepted"
    assert "schema" in result.stderr or "values don't meet" in result.stderr, result.stderr


def _training_env(objects: list[dict]) -> dict[str, str]:
    (job,) = [j for j in by_kind(objects, "Job") if j["metadata"]["name"].endswith("-train-install")]
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_install_trains_exactly_the_bundle_the_inferenceservice_serves(render):
    """One source of truth: the training Job's destination is predictor.storageUri on install."""
    objects = render(["predictor.storageUri=s3://models/housing/7"])
    assert _training_env(objects)["HOUSING_BUNDLE_URI"] == "s3://models/housing/7"
    isvc = by_kind(objects, "InferenceService")[0]
    env = {e["name"]: e.get("value") for e in isvc["spec"]["predictor"]["containers"][0].get("env", [])}
    assert env["STORAGE_URI"] == "s3://models/housing/7"
    assert _training_env(render(["training.bundleUri=s3://models/housing/8"]))["HOUSING_BUNDLE_URI"] == (
        "s3://models/housing/8"
    )


def test_monitoring_extras_are_off_by_default(render):
    objects = render()
    assert by_kind(objects, "PrometheusRule") == []
    assert not [c for c in by_kind(objects, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]]


def test_grafana_dashboard_configmap_for_the_sidecar(render):
    from housing import dashboard

    (cm,) = [
        c for c in by_kind(render(VALUE_SETS["monitoring-all"]), "ConfigMap") if "housing.json" in c.get("data", {})
    ]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["housing.json"]) == json.loads(dashboard.render())
    folder = render([*VALUE_SETS["monitoring-all"], "monitoring.grafanaDashboard.annotations.grafana_folder=ML"])
    (cm,) = [c for c in by_kind(folder, "ConfigMap") if "housing.json" in c.get("data", {})]
    assert cm["metadata"]["annotations"] == {"grafana_folder": "ML"}


def test_prometheus_rule_is_the_generated_rules(render):
    """The chart renders exactly housing/alerts.py's rules: defaults from values.yaml, overrides from --set."""
    from housing import alerts

    (rule,) = by_kind(render(VALUE_SETS["monitoring-all"]), "PrometheusRule")
    assert rule["spec"]["groups"] == alerts.groups()
    sets = [
        "monitoring.prometheusRule.enabled=true",
        "monitoring.prometheusRule.errorRate=0.02",
        "monitoring.prometheusRule.for=10m",
        "model.name=houses",
        "monitoring.prometheusRule.labels.release=kps",
    ]
    (rule,) = by_kind(render(sets), "PrometheusRule")
    assert rule["spec"]["groups"] == alerts.groups({"errorRate": 0.02, "for": "10m", "model": "houses"})
    assert rule["metadata"]["labels"]["release"] == "kps"


def test_standard_mode_keeps_the_predictors_own_scrape_port(render):
    """KServe's "enable-prometheus-scraping" rewrites prometheus.io/port to the Knative queue-proxy's
    9091; in Standard mode nothing listens there (found on the node tier), so the chart turns it off."""
    isvc = _isvc(render(VALUE_SETS["standard"]))
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "false"
    pod = isvc["spec"]["predictor"]["annotations"]
    assert pod["prometheus.io/port"] == str(_values()["predictor"]["metricsPort"])
    knative = _isvc(render(VALUE_SETS["canary-10-serverless"]))
    assert knative["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"


# -- the guard: API keys, rate limits, network policies ------------------------------------------
def _args(objects: list[dict]) -> list[str]:
    return _predictor_container(_isvc(objects)["spec"]["predictor"])["args"]


def _flag(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def test_payload_log_is_off_by_default_and_points_at_the_charts_s3(render):
    assert _flag(_args(render()), "--payload_log_uri") is None
    objects = render(["payloadLog.enabled=true", "payloadLog.sample=0.5", "payloadLog.drop={LSTAT,B}"])
    args = _args(objects)
    bucket = _values()["s3"]["bucket"]
    assert _flag(args, "--payload_log_uri") == f"s3://{bucket}/payloads"
    assert (_flag(args, "--payload_log_sample"), _flag(args, "--payload_log_drop")) == ("0.5", "LSTAT,B")
    env = {e["name"] for e in _predictor_container(_isvc(objects)["spec"]["predictor"])["env"]}
    assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env
    own = _args(render(["payloadLog.enabled=true", "payloadLog.uri=s3://audit/housing"]))
    assert _flag(own, "--payload_log_uri") == "s3://audit/housing"


def test_guard_is_off_by_default_but_the_body_limit(render):
    objects = render()
    args = _args(objects)
    assert _flag(args, "--api_keys_file") is None and _flag(args, "--rate_limit") is None
    assert int(_flag(args, "--max_body_bytes")) == _values()["predictor"]["maxBodyBytes"]
    assert int(_flag(args, "--max_inflight_body_bytes")) == _values()["predictor"]["maxInflightBodyBytes"]
    assert int(_flag(args, "--max_concurrency")) == _values()["predictor"]["maxConcurrency"]
    assert _flag(args, "--max_queued_rpcs") is None  # null: the predictor's default, 16x the cap
    predictor = _isvc(objects)["spec"]["predictor"]
    assert [v["name"] for v in predictor["volumes"]] == ["tmp", "bundle-pins"]  # no key Secret (the pins: see below)


@pytest.mark.parametrize(("sets", "queued"), [([], 16 * DEFAULT_MAX_CONCURRENCY), (["=300"], 300), (["=0"], 0)])
def test_the_grpc_queue_reaches_the_predictor_and_0_is_no_queue(render, sets, queued):
    """null (the default) leaves the predictor's own, 16x the cap; 0 is no queue, not the default."""
    from predictor.__main__ import build_parser, guard_config

    args = _args(render(["predictor.maxQueuedRpcs" + s for s in sets]))
    assert _flag(args, "--max_queued_rpcs") == (sets[0][1:] if sets else None)
    assert guard_config(build_parser().parse_args(args)).queued_rpcs == queued


def test_trusted_proxies_reach_the_predictor(render):
    assert _flag(_args(render()), "--trusted_proxies") is None
    args = _args(render(["rateLimit.trustedProxies={10.244.0.0/16,fd00::/8}"]))
    assert _flag(args, "--trusted_proxies") == "10.244.0.0/16,fd00::/8"


def test_memory_defaults_agree_with_the_predictor():
    """One source of truth: the chart's defaults are the predictor's (``predictor.guard.policy``)."""
    predictor = _values()["predictor"]
    assert predictor["maxBodyBytes"] == DEFAULT_MAX_BODY_BYTES
    assert predictor["maxInflightBodyBytes"] == DEFAULT_MAX_INFLIGHT_BODY_BYTES
    assert predictor["maxConcurrency"] == DEFAULT_MAX_CONCURRENCY


def test_inflight_budget_below_the_body_limit_is_refused(helm_bin):
    result = run_helm(
        helm_bin, template_args(["predictor.maxBodyBytes=2000000", "predictor.maxInflightBodyBytes=1000000"])
    )
    assert result.returncode != 0 and "maxInflightBodyBytes must be at least" in result.stderr, result.stderr


def test_a_grpc_listener_on_the_http_listeners_port_is_refused(helm_bin):
    result = run_helm(helm_bin, template_args(["gateway.enabled=true", "gateway.grpcListenerPort=8000"]))
    assert result.returncode != 0 and "gateway.grpcListenerPort: must differ" in result.stderr, result.stderr


def test_api_keys_secret_is_mounted_whole_and_passed(render):
    objects = render(VALUE_SETS["guarded"])
    predictor = _isvc(objects)["spec"]["predictor"]
    container = _predictor_container(predictor)
    (volume,) = [v for v in predictor["volumes"] if v["name"] == "api-keys"]
    assert volume["secret"]["secretName"] == "housing-api-keys"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "api-keys"]
    assert mount["readOnly"] is True and "subPath" not in mount  # a subPath mount never sees a rotation
    assert _flag(container["args"], "--api_keys_file") == f"{mount['mountPath']}/api-keys"
    open_paths = _flag(container["args"], "--open_paths").split(",")
    probes = [container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")]
    guard = Guard(GuardConfig(open_paths=tuple(open_paths)))
    assert all(guard.is_open(p) for p in probes) and "/metrics" in open_paths  # probes never need a key
    assert (_flag(container["args"], "--rate_limit"), _flag(container["args"], "--rate_burst")) == ("50", "100")
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "housing-api-keys"]


def _policies(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"].removeprefix(f"{RELEASE}-"): o["spec"] for o in by_kind(objects, "NetworkPolicy")}


def _pod_labels(objects: list[dict]) -> list[dict[str, str]]:
    """Labels of every pod the chart makes (workload templates, the test Pod, the predictor)."""
    labels = [o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] in ("Deployment", "Job")]
    labels += [o["metadata"]["labels"] for o in by_kind(objects, "Pod")]
    labels.append(_isvc(objects)["spec"]["predictor"]["labels"])
    return labels


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _components(objects: list[dict], selector: dict) -> set[str]:
    return {lab.get("app.kubernetes.io/component") for lab in _pod_labels(objects) if _selects(selector, lab)}


@pytest.mark.parametrize("name", ["standard", "guarded", "serverless"])
def test_network_policies_default_deny_and_allow_only_the_named_peers(render, name):
    objects = render(VALUE_SETS[name])
    policies = _policies(objects)
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    expected_peers = {
        "minio": {"training", "predictor", "minio-bucket", "mlflow", "rollout"},
        "mlflow": {"training", "rollout"},
    }
    for target, peers in expected_peers.items():
        spec = policies[target]
        assert _components(objects, spec["podSelector"]) == {target}
        (rule,) = spec["ingress"]
        (peer,) = rule["from"]
        assert set(peer) == {"podSelector"}, "no namespaceSelector: only this namespace"
        allowed = peers - {"rollout"}  # rollout pods are the user's, not the chart's
        assert _components(objects, peer["podSelector"]) == allowed, target
        assert _selects(peer["podSelector"], {**_pod_labels(objects)[0], "app.kubernetes.io/component": "rollout"}) == (
            "rollout" in peers
        )
    predictor = policies["predictor"]
    assert _components(objects, predictor["podSelector"]) == {"predictor"}
    rule, scrape = predictor["ingress"]
    gateways, test_pod = rule["from"]
    (monitoring,) = scrape["from"]
    namespaces = set(gateways["namespaceSelector"]["matchExpressions"][0]["values"])
    assert {"kserve", "traefik"} <= namespaces  # traefik: scripts/kind/gateway.sh's namespace
    assert ("knative-serving" in namespaces) == (name == "serverless")
    assert monitoring["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    if name == "guarded":
        assert monitoring["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert _components(objects, test_pod["podSelector"]) == {"test"}
    assert {p["port"] for p in rule["ports"]} == {config.DEFAULT_HTTP_PORT, config.DEFAULT_GRPC_PORT}
    assert [p["port"] for p in scrape["ports"]] == [config.METRICS_PORT]  # the scraper reaches /metrics only


def test_network_policies_follow_the_dev_stack_and_can_be_off(render):
    assert "minio" not in _policies(render(VALUE_SETS["devstack-off"]))
    ingress = {
        n for n, spec in _policies(render(VALUE_SETS["devstack-off"])).items() if "Ingress" in spec["policyTypes"]
    }
    assert ingress == {"default-deny", "predictor"}
    assert by_kind(render(VALUE_SETS["network-policy-off"]), "NetworkPolicy") == []


@pytest.mark.parametrize("model_name", [None, "boston-prices"])
def test_readiness_probes_the_model_itself(render, model_name):
    """Issue 22: /v2/health/ready stayed 200 with the model unloaded; the model's own path does not."""
    isvc = _isvc(render([f"model.name={model_name}"] if model_name else []))
    want = f"/v2/models/{model_name or config.DEFAULT_MODEL_NAME}/ready"
    container = _predictor_container(isvc["spec"]["predictor"])
    assert container["readinessProbe"]["httpGet"] == {"path": want, "port": config.DEFAULT_HTTP_PORT}
    assert container["readinessProbe"]["periodSeconds"] == _values()["predictor"]["readinessProbe"]["periodSeconds"]
    assert _flag(container["args"], "--model_name") == (model_name or config.DEFAULT_MODEL_NAME)


@pytest.mark.parametrize("sets", [[], ["predictor.preStopSleepSeconds=30", "predictor.drainSeconds=60"]])
def test_the_grace_period_covers_prestop_and_both_drains(render, sets):
    """Issue 22: the default 30 s was shorter than the preStop sleep plus uvicorn's grace."""
    isvc = _isvc(render(VALUE_SETS["canary-10-standard"] + sets))
    values = {k.split("=")[0].split(".")[1]: int(k.split("=")[1]) for k in sets} or _values()["predictor"]
    pre, drain = values["preStopSleepSeconds"], values["drainSeconds"]
    for predictor in (isvc["spec"]["predictor"], isvc["spec"]["canary"][0]["predictor"]):
        assert predictor["terminationGracePeriodSeconds"] >= pre + 2 * drain
        assert int(_flag(_predictor_container(predictor)["args"], "--drain_seconds")) == drain


@pytest.mark.parametrize("sets", [[], ["predictor.accessLog=true", "predictor.traceLog=true"]])
def test_the_per_request_log_lines_are_off_unless_asked_for(render, sets):
    """Issue 27: the values reach the predictor's flags; the defaults are the predictor's own (off)."""
    from predictor.__main__ import build_parser

    isvc = _isvc(render(VALUE_SETS["canary-10-standard"] + sets))
    args = _predictor_container(isvc["spec"]["predictor"])["args"]
    want = "true" if sets else "false"
    assert (_flag(args, "--access_log"), _flag(args, "--trace_log")) == (want, want)
    parsed = build_parser().parse_args(args)
    assert (parsed.access_log, parsed.trace_log) == (bool(sets), bool(sets))
    defaults = build_parser().parse_args([])
    assert (_values()["predictor"]["accessLog"], _values()["predictor"]["traceLog"]) == (
        defaults.access_log,
        defaults.trace_log,
    )


def test_drain_default_agrees_with_the_predictor():
    from predictor.__main__ import DEFAULT_DRAIN_SECONDS

    assert _values()["predictor"]["drainSeconds"] == DEFAULT_DRAIN_SECONDS


def test_predictor_keeps_serving_while_it_leaves_the_endpoints(render):
    """A rolled-back canary's pods stop at once: a preStop sleep lets kube-proxy drop them first."""
    isvc = _isvc(render(VALUE_SETS["canary-10-standard"]))
    seconds = _values()["predictor"]["preStopSleepSeconds"]
    for predictor in (isvc["spec"]["predictor"], isvc["spec"]["canary"][0]["predictor"]):
        container = _predictor_container(predictor)
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[:3] == ["python", "-m", "predictor.transport.drain"]
        assert float(_flag(command, "--seconds")) == seconds > 0
        # the hook and the server agree on the flag file through the container's environment
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[DRAIN_FILE_ENV].startswith("/tmp/")  # the writable emptyDir: the root is read-only


def test_no_prestop_no_drain_file(render):
    isvc = _isvc(render(VALUE_SETS["canary-10-standard"] + ["predictor.preStopSleepSeconds=0"]))
    container = _predictor_container(isvc["spec"]["predictor"])
    assert "lifecycle" not in container
    assert DRAIN_FILE_ENV not in {e["name"] for e in container["env"]}


def _routes(objects: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objects if o["kind"] in ("HTTPRoute", "GRPCRoute")}


def test_gateway_is_off_by_default(render):
    kinds = {o["kind"] for o in render()}
    assert not kinds & {"HTTPRoute", "GRPCRoute", "Gateway", "GatewayClass"}


def test_gateway_route_weights_champion_and_canary_and_a_header_reaches_the_canary(render):
    """gateway.enabled: the routes' first rule weights KServe's Services of the champion and the
    canary 100 − p / p; x-housing-variant: challenger goes to the canary (HTTP and gRPC alike)."""
    objects = render(VALUE_SETS["gateway-canary-25"])
    routes = _routes(objects)
    assert set(routes) == {"HTTPRoute", "GRPCRoute"}
    (gateway,) = by_kind(objects, "Gateway")
    (klass,) = by_kind(objects, "GatewayClass")
    assert gateway["spec"]["gatewayClassName"] == klass["metadata"]["name"] == "traefik"
    # KServe v0.20's Service names (constants.PredictorServiceName): {isvc}-{predictor name}-predictor
    champion, canary = f"{RELEASE}-blue-predictor", f"{RELEASE}-green-predictor"
    ports = {"HTTPRoute": 80, "GRPCRoute": _values()["predictor"]["grpcPort"]}
    # each route on a listener of its own (an HTTPRoute and a GRPCRoute may not share one)
    listeners = {item["name"]: item for item in gateway["spec"]["listeners"]}
    assert {name: (item["port"], item["allowedRoutes"]["kinds"]) for name, item in listeners.items()} == {
        "http": (8000, [{"kind": "HTTPRoute"}]),
        "grpc": (8001, [{"kind": "GRPCRoute"}]),
    }
    sections = {"HTTPRoute": "http", "GRPCRoute": "grpc"}
    for kind, route in routes.items():
        assert route["metadata"]["name"] == RELEASE
        assert route["spec"]["parentRefs"] == [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": RELEASE,
                "namespace": NAMESPACE,
                "sectionName": sections[kind],
            }
        ]
        weighted, variant = route["spec"]["rules"]
        assert weighted["backendRefs"] == [
            {"name": champion, "port": ports[kind], "weight": 75},
            {"name": canary, "port": ports[kind], "weight": 25},
        ]
        assert variant["backendRefs"] == [{"name": canary, "port": ports[kind]}]
        (match,) = variant["matches"]
        assert match["headers"] == [{"name": "x-housing-variant", "value": "challenger"}]
    assert routes["GRPCRoute"]["spec"]["rules"][0]["matches"] == [
        {"method": {"service": "inference.GRPCInferenceService"}}
    ]
    assert routes["GRPCRoute"]["spec"]["rules"][1]["matches"][0]["method"] == {
        "service": "inference.GRPCInferenceService"
    }


def test_gateway_route_without_canary_sends_everything_to_the_champion(render):
    (route,) = [r for r in render(["gateway.enabled=true", "gateway.grpc=false"]) if r["kind"] == "HTTPRoute"]
    assert route["spec"]["rules"] == [{"backendRefs": [{"name": f"{RELEASE}-predictor", "port": 80, "weight": 100}]}]


def test_gateway_can_attach_to_an_existing_gateway(render):
    objects = render(VALUE_SETS["gateway-existing-no-grpc"])
    assert not by_kind(objects, "Gateway") and not by_kind(objects, "GatewayClass")
    routes = _routes(objects)
    assert set(routes) == {"HTTPRoute"}
    assert routes["HTTPRoute"]["spec"]["parentRefs"][0] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "shared",
        "namespace": "gateways",
        "sectionName": "http",
    }
    # a Gateway whose listeners have other names: the route attaches to all of them
    (route,) = by_kind(render([*VALUE_SETS["gateway-existing-no-grpc"], "gateway.httpListener="]), "HTTPRoute")
    assert "sectionName" not in route["spec"]["parentRefs"][0]
    assert routes["HTTPRoute"]["spec"]["hostnames"] == ["housing.example.com"]


def test_gateway_lets_the_rollout_account_move_only_the_charts_routes(render):
    (role,) = [
        r
        for r in by_kind(render(VALUE_SETS["gateway-canary-25"]), "Role")
        if r["metadata"]["name"].endswith("-rollout")
    ]
    assert {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes", "grpcroutes"],
        "resourceNames": [RELEASE],
        "verbs": ["get", "patch"],
    } in role["rules"]
    assert {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gateways"], "verbs": ["get"]} in role["rules"]


# -- bundle digests pinned in the cluster (issue 22 item 4) --------------------------------------
CHAMPION_DIGEST, CANARY_DIGEST = "1" * 64, "2" * 64


def _digest_ref(container: dict) -> dict | str | None:
    """HOUSING_BUNDLE_DIGEST of a predictor container: its value, or its configMapKeyRef."""
    entry = _env(container).get(config.BUNDLE_DIGEST_ENV)
    return entry["configMapKeyRef"] if isinstance(entry, dict) else entry


def test_the_installs_bundle_is_pinned_from_the_recorded_registration(render):
    """Issue 22 item 4, the install's first bundle (trained and registered after the render): the
    predictor's HOUSING_BUNDLE_DIGEST comes from the ConfigMap key the install's training Job writes
    once MLflow registered the version — the key training.pin.pin_key gives for that URI — so no pod
    asks MLflow, and until the key exists the kubelet starts no predictor container."""
    objects = render()
    (configmap,) = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == f"{RELEASE}-bundle-pins"]
    assert "data" not in configmap  # the chart renders no key: helm leaves the Job's keys alone
    ref = _digest_ref(_predictor_container(_isvc(objects)["spec"]["predictor"]))
    assert ref == {"name": f"{RELEASE}-bundle-pins", "key": pin_key(f"s3://{config.DEFAULT_BUCKET}/housing/1")}
    assert "optional" not in ref  # a missing key holds the container back; it never starts unpinned
    job = next(j for j in by_kind(objects, "Job") if j["metadata"]["name"] == f"{RELEASE}-train-install")
    assert _env(job["spec"]["template"]["spec"]["containers"][0])["HOUSING_BUNDLE_URI"] == "s3://models/housing/1"
    # the chart's key is training's, for any URI (two URIs sharing a key could only refuse a bundle)
    for uri in ("s3://models/housing/1/", "s3://my.bucket-1/a/ü~x+y=z@v", "s3://models/Housing_2.5/-x"):
        isvc = _isvc(render([f"predictor.storageUri={uri}"]))
        assert _digest_ref(_predictor_container(isvc["spec"]["predictor"]))["key"] == pin_key(uri), uri
    # training.bundleUri elsewhere: the install does not train what the predictor serves, nothing to pin from
    other = _isvc(render(["training.bundleUri=s3://models/housing/other"]))["spec"]["predictor"]
    assert _digest_ref(_predictor_container(other)) is None
    assert _digest_ref(_predictor_container(_isvc(render(["training.enabled=false"]))["spec"]["predictor"])) is None
    knative = _isvc(render(["kserve.deploymentMode=Knative"]))["spec"]["predictor"]
    assert _digest_ref(_predictor_container(knative))["key"] == pin_key("s3://models/housing/1")


def test_wait_for_bundle_waits_for_the_recorded_digest_and_says_why_it_gives_up(render, tmp_path):
    """The install's predictor pod: its init container (the rendered script, run here) waits for the
    ConfigMap key its HOUSING_BUNDLE_DIGEST reads (mounted whole, so the kubelet brings the Job's write),
    so the predictor container never waits on a missing key; when the time is up it fails with one
    line naming the ConfigMap, the key and what writes it."""
    import subprocess
    import sys

    pod = _isvc(render())["spec"]["predictor"]
    (init,) = pod["initContainers"]
    env = _env(init)
    key = pin_key("s3://models/housing/1")
    assert (env["PIN_CONFIGMAP"], env["PIN_FILE"]) == (f"{RELEASE}-bundle-pins", f"/etc/housing/pins/{key}")
    assert {"name": "bundle-pins", "mountPath": "/etc/housing/pins", "readOnly": True} in init["volumeMounts"]
    assert {"name": "bundle-pins", "configMap": {"name": f"{RELEASE}-bundle-pins"}} in pod["volumes"]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    script = init["command"][2]
    pins = tmp_path / "pins"
    pins.mkdir()
    run_env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(CHART.parents[1]),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "STORAGE_URI": "file:///mnt/not-s3",  # no bucket to look at: the pin alone is waited for
        "WAIT_SECONDS": "0",
        "PIN_CONFIGMAP": env["PIN_CONFIGMAP"],
        "PIN_FILE": str(pins / key),
    }
    gave_up = subprocess.run([sys.executable, "-c", script], env=run_env, capture_output=True, text=True, timeout=60)
    assert gave_up.returncode == 1, gave_up.stderr
    assert f"ConfigMap {RELEASE}-bundle-pins, key {key}" in gave_up.stderr, gave_up.stderr
    assert "gave up after 0 s" in gave_up.stderr and "training Job" in gave_up.stderr
    (pins / key).write_text(CHAMPION_DIGEST)
    found = subprocess.run([sys.executable, "-c", script], env=run_env, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0 and CHAMPION_DIGEST in found.stdout, found.stderr
    # a digest in values: nothing to wait for but the bundle, nothing mounted
    given = _isvc(render([f"predictor.bundleDigest={CHAMPION_DIGEST}"]))["spec"]["predictor"]
    assert "PIN_FILE" not in _env(given["initContainers"][0])
    assert "bundle-pins" not in {v["name"] for v in given["volumes"]}


def test_the_pins_writer_may_patch_its_configmap_only(render):
    objects = render()
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == f"{RELEASE}-train-install"]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [f"{RELEASE}-bundle-pins"],
            "verbs": ["get", "patch"],
        }
    ]
    (binding,) = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == f"{RELEASE}-train-install"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-train-install", "namespace": NAMESPACE}
    ]
    (sa,) = [a for a in by_kind(objects, "ServiceAccount") if a["metadata"]["name"] == f"{RELEASE}-train-install"]
    assert sa["automountServiceAccountToken"] is False  # only the install Job's pod mounts its token
    # an upgrade with training off drops the writer, never the pins
    off = render(["training.enabled=false"])
    assert not [o for o in off if o["metadata"]["name"] == f"{RELEASE}-train-install"]
    assert [c for c in by_kind(off, "ConfigMap") if c["metadata"]["name"] == f"{RELEASE}-bundle-pins"]


def test_bundle_digests_from_values_win_and_a_canary_is_pinned_from_values_only(render):
    """HOUSING_BUNDLE_DIGEST (the predictor's --bundle_digest) carries the registered sha256 given in
    values to each predictor; a values canary without one is unpinned (what `housing rollout` starts is
    pinned by its patch)."""
    sets = [
        f"predictor.bundleDigest={CHAMPION_DIGEST}",
        *VALUE_SETS["canary-10-standard"],
        f"canary.bundleDigest={CANARY_DIGEST}",
    ]
    spec = _isvc(render(sets))["spec"]
    assert _env(_predictor_container(spec["predictor"]))[config.BUNDLE_DIGEST_ENV] == CHAMPION_DIGEST
    canary = _env(_predictor_container(spec["canary"][0]["predictor"]))
    assert canary[config.BUNDLE_DIGEST_ENV] == CANARY_DIGEST
    unpinned = _isvc(render(VALUE_SETS["canary-10-standard"]))["spec"]["canary"][0]["predictor"]
    assert _digest_ref(_predictor_container(unpinned)) is None
    knative = [*VALUE_SETS["canary-10-serverless"], f"canary.bundleDigest={CANARY_DIGEST}"]
    predictor = _isvc(render(knative))["spec"]["predictor"]  # Knative: the predictor is the new revision
    assert _env(_predictor_container(predictor))[config.BUNDLE_DIGEST_ENV] == CANARY_DIGEST


def test_a_rollout_of_the_charts_object_pins_the_canary_and_promotes_its_pin(render):
    """What `housing rollout` (and the in-cluster runner) writes to the chart's InferenceService: the
    canary gets its own registered digest, never the champion's, and promotion keeps it."""
    # the champion pinned from values, and the install's (its digest read from the pins' ConfigMap)
    for sets in ([f"predictor.bundleDigest={CHAMPION_DIGEST}"], []):
        isvc = copy.deepcopy(_isvc(render(sets)))
        started = apply_patch(isvc, kserve_standard.start_ops(isvc, "s3://models/housing/2", 10, digest=CANARY_DIGEST))
        validate_isvc(started)
        canary = _predictor_container(started["spec"]["canary"][0]["predictor"])
        assert _env(canary)[config.BUNDLE_DIGEST_ENV] == CANARY_DIGEST, sets
        unpinned = apply_patch(isvc, kserve_standard.start_ops(isvc, "s3://models/housing/2", 10))
        canary_env = _env(_predictor_container(unpinned["spec"]["canary"][0]["predictor"]))
        assert config.BUNDLE_DIGEST_ENV not in canary_env, sets  # never the champion's pin
        promoted = apply_patch(started, kserve_standard.promote_ops(started))
        validate_isvc(promoted)
        assert _env(_predictor_container(promoted["spec"]["predictor"]))[config.BUNDLE_DIGEST_ENV] == CANARY_DIGEST


# -- egress (issue 22 item 14) ----------------------------------------------------------------------
def _reaches(objects: list[dict], labels: dict[str, str]) -> set[tuple[str, int | None]]:
    """(peer, port) a pod with ``labels`` may open connections to: a component of this release, a
    namespace, or "any" address."""
    out: set[tuple[str, int | None]] = set()
    for spec in _policies(objects).values():
        if "Egress" not in spec["policyTypes"] or not _selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("egress", []):
            peers = set()
            for to in rule.get("to") or [{"ipBlock": {"cidr": "0.0.0.0/0"}}]:
                if "namespaceSelector" in to:
                    peers.add(f"ns:{to['namespaceSelector']['matchLabels']['kubernetes.io/metadata.name']}")
                elif "podSelector" in to:
                    peers |= _components(objects, to["podSelector"])
                else:
                    assert to["ipBlock"]["cidr"] == "0.0.0.0/0", to
                    peers.add("any")
            ports = [p["port"] for p in rule.get("ports") or []] or [None]
            out |= {(peer, port) for peer in peers for port in ports}
    return out


def test_egress_is_denied_but_for_what_each_pod_needs(render):
    objects = render()
    base = {lab["app.kubernetes.io/component"]: lab for lab in _pod_labels(objects)}
    base["rollout"] = {**base["predictor"], "app.kubernetes.io/component": "rollout"}  # the user's or the runner's
    dns, s3, mlflow = ("any", 53), ("minio", 9000), ("mlflow", 5000)
    expected = {
        "predictor": {dns, s3},  # storage-initializer, wait-for-bundle, payload log
        "minio-bucket": {dns, s3},
        "mlflow": {dns, s3},  # the artifact proxy
        "minio": {dns},
        # the dataset download; the install's Job also the API server (it records the registered digest)
        "training": {dns, s3, mlflow, ("any", 443), ("any", 6443)},
        "test": {dns, ("predictor", config.DEFAULT_HTTP_PORT)},
        "rollout": {dns, s3, mlflow, ("any", 443), ("any", 6443), ("ns:monitoring", None)},
    }
    assert set(base) >= set(expected)
    for component, reach in expected.items():
        assert _reaches(objects, base[component]) == reach, component
    (cron,) = by_kind(objects, "CronJob")  # later training runs: no API server
    cron_labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert _reaches(objects, cron_labels) == {dns, s3, mlflow, ("any", 443)}
    other = {"app.kubernetes.io/name": "someone-else"}  # any other pod of the namespace: names only
    assert _reaches(objects, other) == {dns}


def test_egress_follows_external_services_and_can_be_off(render):
    external = render(
        [
            "devStack.minio.enabled=false",
            "s3.endpoint=s3.example.com",
            "s3.useHttps=true",
            "devStack.mlflow.enabled=false",
            "mlflow.trackingUri=https://mlflow.example:8443/",
            "rollout.notify.url=http://hooks.example:9999/x",
            "networkPolicy.egress.trainingInternet=false",
            "networkPolicy.egress.apiServer.cidrs={10.0.0.1/32}",
            "networkPolicy.egress.apiServer.ports={6443}",
        ]
    )
    predictor = _isvc(external)["spec"]["predictor"]["labels"]
    assert _reaches(external, predictor) == {("any", 53), ("any", 443)}
    training = {**predictor, "app.kubernetes.io/component": "training"}
    assert _reaches(external, training) == {("any", 53), ("any", 443), ("any", 8443)}
    rollout_spec = _policies(external)["egress-rollout"]
    assert rollout_spec["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert [p["port"] for p in rollout_spec["egress"][-1]["ports"]] == [9999]  # the notify webhook
    off = _policies(render(["networkPolicy.egress.enabled=false"]))
    assert not [name for name, spec in off.items() if "Egress" in spec["policyTypes"]]


def test_the_third_party_image_can_be_pinned_by_digest(render):
    """The chart's one third-party image (the dev stack's MinIO) is a tag by default — these machines
    cannot reach its registry to read the digest (docs/security.md) — and takes a digest as given."""
    pinned = f"quay.io/minio/minio@sha256:{'c' * 64}"
    objects = render([f"devStack.minio.image={pinned}"])
    (minio,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == f"{RELEASE}-minio"]
    assert minio["spec"]["template"]["spec"]["containers"][0]["image"] == pinned


# -- the quality exporter (issue 25) --------------------------------------------------------------
def _exporter(objects: list[dict]) -> tuple[dict | None, dict | None]:
    name = f"{RELEASE}-quality"
    deployments = [o for o in by_kind(objects, "Deployment") if o["metadata"]["name"] == name]
    services = [o for o in by_kind(objects, "Service") if o["metadata"]["name"] == name]
    return (deployments[0] if deployments else None), (services[0] if services else None)


def test_quality_exporter_is_off_by_default(render):
    assert _exporter(render()) == (None, None)
    assert "quality" not in _policies(render())


def test_quality_exporter_serves_live_accuracy_from_the_predictors_payload_log(render):
    """`housing quality --serve` in the training image, reading the log the predictor writes (one
    template names it), with the chart's S3 credentials; its Service and scrape annotations name the
    same port, and only the monitoring namespace may reach it."""
    sets = ["monitoring.qualityExporter.enabled=true", "payloadLog.enabled=true"]
    objects = render(sets)
    deployment, service = _exporter(objects)
    assert deployment is not None and service is not None
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    port = _values()["monitoring"]["qualityExporter"]["port"]
    assert container["command"] == ["housing", "quality"]
    assert container["image"] == "housing-training:0.1.0"
    args = container["args"]
    assert _flag(args, "--serve") == str(port) and _flag(args, "--days") == "7"
    assert (
        _flag(args, "--log")
        == _flag(_args(objects), "--payload_log_uri")
        == f"s3://{_values()['s3']['bucket']}/payloads"
    )
    assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(_env(container))
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]
    assert _selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    for obj in (deployment, service):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    policy = _policies(objects)["quality"]
    assert _components(objects, policy["podSelector"]) == {"quality-exporter"}
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert [p["port"] for p in rule["ports"]] == [port]
    # MinIO lets it in (it reads the log there) only when it is on
    minio = _policies(objects)["minio"]["ingress"][0]["from"][0]["podSelector"]
    assert _selects(minio, pod["metadata"]["labels"])
    assert "quality-exporter" not in json.dumps(_policies(render())["minio"])
    # its own log, window and port
    own = render(
        [
            "monitoring.qualityExporter.enabled=true",
            "monitoring.qualityExporter.logUri=s3://audit/housing",
            "monitoring.qualityExporter.days=30",
            "monitoring.qualityExporter.port=9200",
        ]
    )
    (container,) = _exporter(own)[0]["spec"]["template"]["spec"]["containers"]
    assert (_flag(container["args"], "--log"), _flag(container["args"], "--days")) == ("s3://audit/housing", "30")
    assert _flag(container["args"], "--serve") == "9200"


@pytest.mark.parametrize(
    "bad",
    [
        "monitoring.qualityExporter.logUri=/var/log",
        "monitoring.qualityExporter.port=0",
        "monitoring.qualityExporter.days=0",
    ],
)
def test_quality_exporter_bad_values_are_refused(helm_bin, bad):
    done = run_helm(helm_bin, template_args(["monitoring.qualityExporter.enabled=true", bad]))
    assert done.returncode != 0 and "qualityExporter" in done.stderr, done.stderr
