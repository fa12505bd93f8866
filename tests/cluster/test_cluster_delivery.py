"""charts/housing, continuous delivery: training only when asked, the rollout runner's Deployment.

Rendered with helm v4 (``helm template``; ``--is-upgrade`` renders what an upgrade applies).
"""

from __future__ import annotations

import pytest

from .conftest import RELEASE, VALUE_SETS, by_kind, run_helm, template_args

pytestmark = pytest.mark.cluster

TRAIN_INSTALL = f"{RELEASE}-train-install"
CRONJOB = f"{RELEASE}-train"
AUTO = VALUE_SETS["delivery"]


def _training_jobs(objects: list[dict]) -> list[dict]:
    return [
        j
        for j in by_kind(objects, "Job")
        if j["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "training"
    ]


def _env(pod: dict, container: str = "training") -> dict[str, str | None]:
    (c,) = [c for c in pod["spec"]["containers"] if c["name"] == container]
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def test_install_trains_once_and_an_upgrade_trains_nothing(render):
    (job,) = _training_jobs(render(["predictor.storageUri=s3://models/housing/7"]))
    assert job["metadata"]["name"] == TRAIN_INSTALL  # not named after the revision
    assert job["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # the first upgrade keeps it
    assert _env(job["spec"]["template"])["HOUSING_BUNDLE_URI"] == "s3://models/housing/7"
    for sets in (
        [],
        ["predictor.minReplicas=3", "predictor.maxReplicas=3"],
        ["training.bundleUri=s3://models/housing/8"],
    ):
        upgraded = render(sets, extra=["--is-upgrade"])
        assert _training_jobs(upgraded) == [], f"helm upgrade --set {sets} would train"
        assert [c["metadata"]["name"] for c in by_kind(upgraded, "CronJob")] == [CRONJOB]


def test_training_cronjob_on_a_schedule_never_overlaps_and_writes_a_new_destination(render):
    objects = render(["training.schedule=0 3 * * 0", "training.timeZone=Europe/Paris"])
    (cron,) = by_kind(objects, "CronJob")
    spec = cron["spec"]
    assert spec["schedule"] == "0 3 * * 0" and spec["timeZone"] == "Europe/Paris"
    assert spec["suspend"] is False
    assert spec["concurrencyPolicy"] == "Forbid"
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 3)
    pod = spec["jobTemplate"]["spec"]["template"]
    env = _env(pod)
    # no fixed destination: each run publishes <bucket>/<model>/<UTC time>-<random>, so two runs
    # never collide, and registers it in MLflow as the challenger (same env as the install's Job)
    assert "HOUSING_BUNDLE_URI" not in env
    (install,) = _training_jobs(objects)
    install_env = _env(install["spec"]["template"])
    install_env.pop("HOUSING_BUNDLE_URI")
    # … but only the install's Job records its digest where the predictor pins it (training/pin.py)
    assert install_env.pop("HOUSING_PIN_CONFIGMAP") and install_env.pop("HOUSING_PIN_NAMESPACE")
    assert env == install_env
    assert env["HOUSING_BUNDLE_ROOT"] == "s3://models" and env["MLFLOW_TRACKING_URI"]
    install_labels = dict(install["spec"]["template"]["metadata"]["labels"])
    assert install_labels.pop("housing.dev/bundle-pin-writer") == "true"  # + the API server (its egress policy)
    assert pod["metadata"]["labels"] == install_labels  # else the same NetworkPolicy peers
    assert pod["spec"]["containers"][0]["command"] == ["python", "-m", "training"]


def test_without_a_schedule_the_cronjob_is_suspended_for_on_demand_runs(render):
    (cron,) = by_kind(render(), "CronJob")
    assert cron["spec"]["suspend"] is True  # `kubectl create job --from=cronjob/...` still works
    assert by_kind(render(["training.enabled=false"]), "CronJob") == []


def test_the_rollout_runner_is_off_by_default(render):
    assert [d for d in by_kind(render(), "Deployment") if d["metadata"]["name"] == f"{RELEASE}-rollout"] == []


def test_rollout_runner_deployment_from_values(render):
    objects = render(AUTO)
    (runner,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == f"{RELEASE}-rollout"]
    assert runner["spec"]["replicas"] == 1
    assert runner["spec"]["strategy"] == {"type": "Recreate"}
    pod = runner["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-rollout"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "rollout"  # MLflow + MinIO admit it
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "housing-training:0.1.0"
    assert container["command"] == ["housing", "rollout", "auto"]
    args = container["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--backend"] == "standard" and flags["--name"] == RELEASE
    assert flags["--steps"] == "10,25,50,100"
    assert flags["--pause-at"] == "50"
    assert flags["--prometheus-url"] == "http://prometheus.monitoring.svc:9090"
    assert flags["--notify-url"] == "http://hooks.example:8080/rollouts"
    env = _env(pod, "runner")
    assert env["MLFLOW_TRACKING_URI"] and env["HOUSING_MODEL_NAME"] == "housing"
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == f"{RELEASE}-rollout"]
    assert any("events" in rule["resources"] and "create" in rule["verbs"] for rule in role["rules"])


def _runner_args(objects: list[dict]) -> list[str]:
    (runner,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == f"{RELEASE}-rollout"]
    return runner["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_runner_gates_on_live_accuracy_when_asked(render):
    """rollout.auto.liveGate → `housing rollout auto --live-gate` reading the predictor's payload log;
    unset figures stay the command's own defaults (not copied into the chart)."""
    assert "--live-gate" not in _runner_args(render(AUTO))
    args = _runner_args(render([*AUTO, "payloadLog.enabled=true", "rollout.auto.liveGate.enabled=true"]))
    assert "--live-gate" in args and "--require-labels" not in args
    assert args[args.index("--live-log") + 1] == "s3://models/payloads"  # the predictor's log (housing.payloadLogUri)
    assert not {"--live-min-labels", "--live-tolerance", "--live-days"} & set(args)
    args = _runner_args(
        render(
            [
                *AUTO,
                "rollout.auto.liveGate.enabled=true",
                "rollout.auto.liveGate.logUri=s3://logs/served",
                "rollout.auto.liveGate.minLabels=80",
                "rollout.auto.liveGate.tolerance=0.05",
                "rollout.auto.liveGate.days=3",
                "rollout.auto.liveGate.requireLabels=true",
            ]
        )
    )
    at = {
        flag: args[args.index(flag) + 1]
        for flag in ("--live-log", "--live-min-labels", "--live-tolerance", "--live-days")
    }
    assert at == {
        "--live-log": "s3://logs/served",
        "--live-min-labels": "80",
        "--live-tolerance": "0.05",
        "--live-days": "3",
    }
    assert "--require-labels" in args


BAD_DELIVERY_VALUES = {
    # (--set values, what the error must name)
    "pause-not-a-step": (["rollout.auto.pauseAt=30"], "rollout.auto.pauseAt=30"),
    "negative-interval": (["rollout.auto.intervalSeconds=-5"], "/rollout/auto/intervalSeconds"),
    "negative-poll": (["rollout.auto.pollSeconds=-1"], "/rollout/auto/pollSeconds"),
    "steps-not-increasing": (["rollout.auto.steps={50,10,100}"], "rollout.auto.steps must increase"),
    "steps-not-ending-at-100": (["rollout.auto.steps={10,50}"], "rollout.auto.steps must end at 100"),
    "no-prometheus": (["rollout.auto.prometheusUrl="], "/rollout/auto/prometheusUrl"),
    "knative": (["kserve.deploymentMode=Knative"], "needs kserve.deploymentMode Standard"),
    "bad-schedule": (["training.schedule=every sunday"], "/training/schedule"),
    "bad-notify-url": (["rollout.notify.url=hooks.example"], "/rollout/notify/url"),
    "live-gate-without-a-log": (["rollout.auto.liveGate.enabled=true"], "needs payloadLog.enabled=true"),
    "live-gate-bad-days": (["rollout.auto.liveGate.days=-1"], "/rollout/auto/liveGate/days"),
    # the runner refuses --live-min-labels 1 (exit 2, a crash-looping pod): helm refuses it first
    "live-gate-one-label": (["rollout.auto.liveGate.minLabels=1"], "/rollout/auto/liveGate/minLabels"),
    "live-gate-bad-log": (["rollout.auto.liveGate.logUri=/var/log"], "/rollout/auto/liveGate/logUri"),
}


@pytest.mark.parametrize("name", sorted(BAD_DELIVERY_VALUES))
def test_bad_delivery_values_fail_naming_the_value(helm_bin, name):
    sets, named = BAD_DELIVERY_VALUES[name]
    base = ["rollout.auto.enabled=true", "rollout.auto.prometheusUrl=http://prometheus:9090"]
    result = run_helm(helm_bin, template_args(base + sets))
    assert result.returncode != 0, f"{name} was accepted"
    assert named in result.stderr, result.stderr
