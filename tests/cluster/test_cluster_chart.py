"""charts/housing: helm lint, rendering for every value set, objects validated strictly.

Built-in kinds are validated against the Kubernetes JSON schemas bundled by kubernetes-validate
(newest version it ships, strict: no unknown fields); InferenceService against the kserve SDK
models (rollout.validate.validate_isvc); the ServiceMonitor's few fields by hand.
"""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from housing import config
from rollout.validate import validate_isvc

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
    assert values["s3"]["bucket"] == config.DEFAULT_BUCKET
    assert values["predictor"]["storageUri"].startswith(f"s3://{config.DEFAULT_BUCKET}/{config.DEFAULT_MODEL_NAME}/")
    for probe in ("readinessProbe", "livenessProbe"):
        assert values["predictor"][probe]["httpGet"]["port"] == config.DEFAULT_HTTP_PORT


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_validate(render, name):
    objects = render(VALUE_SETS[name])
    assert objects, "nothing rendered"
    for obj in objects:
        kind = obj["kind"]
        where = f"{kind}/{obj['metadata']['name']}"
        if kind == "InferenceService":
            validate_isvc(obj)
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
        (f"{RELEASE}-train-r1", "wait-for-services"),
        (f"{RELEASE}-train-r1", "training"),
        (f"{RELEASE}-mlflow", "mlflow"),
        (f"{RELEASE}-minio-bucket-r1", "bucket"),
    }
    others = {v for k, v in images.items() if k not in serving | training}
    assert others == {_values()["devStack"]["minio"]["image"]}
    defaults = _container_images(render())
    assert defaults[(RELEASE, "kserve-container")] == "housing-serving:0.1.0"
    assert defaults[(f"{RELEASE}-train-r1", "training")] == "housing-training:0.1.0"


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
    ]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # the predictor waits for its bundle before KServe's storage-initializer runs
    (wait,) = predictor["initContainers"]
    assert wait["name"] == "wait-for-bundle" and _env(wait)["STORAGE_URI"] == _env(container)["STORAGE_URI"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"]["port"] == config.DEFAULT_HTTP_PORT
    assert container["livenessProbe"]["httpGet"]["port"] == config.DEFAULT_HTTP_PORT
    annotations = predictor["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(config.DEFAULT_HTTP_PORT)
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
        elif obj["kind"] == "Pod":
            pod_specs.append((obj["metadata"]["name"], obj["spec"]))
    assert len(pod_specs) >= 2
    for where, spec in pod_specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
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


def test_s3_secret_annotations_and_generated_credentials(render):
    objects = render()
    (secret,) = by_kind(objects, "Secret")
    annotations = secret["metadata"]["annotations"]
    assert annotations["serving.kserve.io/s3-endpoint"] == f"{RELEASE}-minio.{NAMESPACE}.svc.cluster.local:9000"
    assert annotations["serving.kserve.io/s3-usehttps"] == "0"
    assert annotations["serving.kserve.io/s3-region"] == "us-east-1"
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    # Random on every render without a cluster: nothing secret comes from values.
    (again,) = by_kind(render(["s3.region=us-east-1"]), "Secret")
    assert again["data"] != secret["data"]
    service_accounts = {sa["metadata"]["name"]: sa for sa in by_kind(objects, "ServiceAccount")}
    assert service_accounts[RELEASE]["secrets"] == [{"name": secret["metadata"]["name"]}]


def test_existing_secret_renders_no_secret(render):
    objects = render(VALUE_SETS["existing-secret"])
    assert by_kind(objects, "Secret") == []
    (sa,) = [sa for sa in by_kind(objects, "ServiceAccount") if sa["metadata"]["name"] == RELEASE]
    assert sa["secrets"] == [{"name": "my-s3-credentials"}]
    (job,) = [j for j in by_kind(objects, "Job") if "train" in j["metadata"]["name"]]
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
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == RELEASE


def test_rollout_rbac_is_minimal(render):
    objects = render()
    (role,) = by_kind(objects, "Role")
    assert role["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "verbs": ["get", "list", "watch", "patch"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [f"{RELEASE}-rollout"],  # the one Lease a run holds (rollout/lease.py)
            "verbs": ["get", "update"],
        },
    ]
    (binding,) = by_kind(objects, "RoleBinding")
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
    pg = render(VALUE_SETS["devstack-postgres-servicemonitor"])
    names = {o["metadata"]["name"] for o in pg if o["kind"] in ("Deployment", "Service", "Secret")}
    assert f"{RELEASE}-postgres" in names
    (monitor,) = by_kind(pg, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["targetPort"] == config.DEFAULT_HTTP_PORT
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_helm_test_hook_sends_v1_request(render):
    objects = render()
    (pod,) = by_kind(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = _env(pod["spec"]["containers"][0])
    assert env["PREDICT_URL"] == (
        f"http://{RELEASE}-inference.{NAMESPACE}.svc.cluster.local/v1/models/{config.DEFAULT_MODEL_NAME}:predict"
    )
    (cm,) = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["annotations"].get("helm.sh/hook") == "test"]
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
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(helm_bin, name):
    result = run_helm(helm_bin, template_args(BAD_VALUES[name]))
    assert result.returncode != 0, f"{name} was accepted"
    assert "schema" in result.stderr or "values don't meet" in result.stderr, result.stderr


def _training_env(objects: list[dict]) -> dict[str, str]:
    (job,) = [j for j in by_kind(objects, "Job") if "train" in j["metadata"]["name"]]
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_install_trains_exactly_the_bundle_the_inferenceservice_serves(render):
    """One source of truth: the training Job's destination is predictor.storageUri on install."""
    objects = render(["predictor.storageUri=s3://models/housing/7"])
    assert _training_env(objects)["HOUSING_BUNDLE_URI"] == "s3://models/housing/7"
    isvc = by_kind(objects, "InferenceService")[0]
    env = {e["name"]: e.get("value") for e in isvc["spec"]["predictor"]["containers"][0].get("env", [])}
    assert env["STORAGE_URI"] == "s3://models/housing/7"
    upgraded = render(["training.bundleUri=s3://models/housing/8"], extra=["--is-upgrade"])
    assert _training_env(upgraded)["HOUSING_BUNDLE_URI"] == "s3://models/housing/8"
    assert "HOUSING_BUNDLE_URI" not in _training_env(render([], extra=["--is-upgrade"]))


def test_monitoring_extras_are_off_by_default(render):
    objects = render()
    assert by_kind(objects, "PrometheusRule") == []
    assert not [c for c in by_kind(objects, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]]


def test_grafana_dashboard_configmap_for_the_sidecar(render):
    from housing import dashboard

    (cm,) = [c for c in by_kind(render(VALUE_SETS["monitoring-all"]), "ConfigMap") if "housing.json" in c["data"]]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["housing.json"]) == json.loads(dashboard.render())
    folder = render([*VALUE_SETS["monitoring-all"], "monitoring.grafanaDashboard.annotations.grafana_folder=ML"])
    (cm,) = [c for c in by_kind(folder, "ConfigMap") if "housing.json" in c["data"]]
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
    assert pod["prometheus.io/port"] == str(_values()["predictor"]["httpPort"])
    knative = _isvc(render(VALUE_SETS["canary-10-serverless"]))
    assert knative["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"


# -- the guard: API keys, rate limits, network policies ------------------------------------------
def _args(objects: list[dict]) -> list[str]:
    return _predictor_container(_isvc(objects)["spec"]["predictor"])["args"]


def _flag(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def test_guard_is_off_by_default_but_the_body_limit(render):
    objects = render()
    args = _args(objects)
    assert _flag(args, "--api_keys_file") is None and _flag(args, "--rate_limit") is None
    assert int(_flag(args, "--max_body_bytes")) == _values()["predictor"]["maxBodyBytes"]
    predictor = _isvc(objects)["spec"]["predictor"]
    assert [v["name"] for v in predictor["volumes"]] == ["tmp"]


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
    probes = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    assert probes <= set(open_paths) and "/metrics" in open_paths
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
    objects = render(VALUE_SETS[name] + ["devStack.mlflow.backend=postgres"])
    policies = _policies(objects)
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    expected_peers = {
        "minio": {"training", "predictor", "minio-bucket", "mlflow"},
        "mlflow": {"training", "rollout"},
        "postgres": {"mlflow"},
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
    (rule,) = predictor["ingress"]
    gateways, monitoring, test_pod = rule["from"]
    namespaces = set(gateways["namespaceSelector"]["matchExpressions"][0]["values"])
    assert {"kserve", "envoy-gateway-system"} <= namespaces
    assert ("knative-serving" in namespaces) == (name == "serverless")
    assert monitoring["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    if name == "guarded":
        assert monitoring["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert _components(objects, test_pod["podSelector"]) == {"test"}
    assert {p["port"] for p in rule["ports"]} == {config.DEFAULT_HTTP_PORT, config.DEFAULT_GRPC_PORT}


def test_network_policies_follow_the_dev_stack_and_can_be_off(render):
    assert "minio" not in _policies(render(VALUE_SETS["devstack-off"]))
    assert set(_policies(render(VALUE_SETS["devstack-off"]))) == {"default-deny", "predictor"}
    assert by_kind(render(VALUE_SETS["network-policy-off"]), "NetworkPolicy") == []


def test_predictor_keeps_serving_while_it_leaves_the_endpoints(render):
    """A rolled-back canary's pods stop at once: a preStop sleep lets kube-proxy drop them first."""
    isvc = _isvc(render(VALUE_SETS["canary-10-standard"]))
    seconds = _values()["predictor"]["preStopSleepSeconds"]
    for predictor in (isvc["spec"]["predictor"], isvc["spec"]["canary"][0]["predictor"]):
        assert _predictor_container(predictor)["lifecycle"]["preStop"]["sleep"]["seconds"] == seconds > 0
