"""The rollout runner's loop (rollout.auto.Runner) end to end on one machine: a real embedded
MLflow registry (sqlite), real predictor processes behind the local router, a real Prometheus,
bundles from the real training code, and a real webhook receiver on loopback.

The cluster side (the Lease, Events, pause/resume) is covered on a real API server
(tests/cluster/test_cluster_apiserver_auto.py) and on the node (tests/cluster/test_node_delivery.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION
from common.net import free_port
from registry import lifecycle as registry
from rollout.auto import AutoOptions, Runner
from rollout.backends.local import LocalBackend
from rollout.live_step import LiveGateOptions
from rollout.notify import Notifier
from rollout.orchestrator import RunOptions
from testkit.bundles import derive_bundle
from testkit.registry import register_pair
from testkit.webhook import WebhookReceiver

pytestmark = pytest.mark.integration
MODEL = "housing"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from testkit.procs import train_bundle

    root = tmp_path_factory.mktemp("auto-bundles")
    champion = train_bundle(tmp_path_factory.getbasetemp(), "boston", "linear")
    return {
        "champion": champion,
        "good": derive_bundle(champion, root / "good", relative_shift=0.002, version=f"good-{uuid.uuid4().hex[:6]}"),
        # a shifted target: its RMSE on the evaluation rows is far worse than the champion's
        "worse": derive_bundle(champion, root / "worse", relative_shift=0.5, version=f"worse-{uuid.uuid4().hex[:6]}"),
    }


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    home = tmp_path / "home"
    monkeypatch.setenv("HOUSING_HOME", str(home))
    monkeypatch.delenv("HOUSING_MODEL_NAME", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def register(tracking: str, champion: Path, challenger: Path) -> MlflowClient:
    return register_pair(tracking, MODEL, champion, challenger)


def polled(
    tmp_path: Path, answers: list[str], live: LiveGateOptions | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """A runner polled once per item of ``answers``, each poll asserted to answer it; (what the webhook got,
    the runner's log lines)."""
    backend = LocalBackend(tmp_path / "home", MODEL, "auto")
    # the champion's requests shadowed to the challenger: the paired comparison decides in a few seconds
    run = RunOptions(steps=[50, 100], interval=3, min_requests=30, traffic=60, name="auto", shadow=1.0, live_gate=live)
    lines: list[str] = []
    with WebhookReceiver() as hook:
        notifier = Notifier(hook.url, timeout=2, retries=2, backoff=0.05)
        auto = Runner(backend, AutoOptions(run=run, poll=1), lines.append, notifier=notifier)
        for answer in answers:
            assert auto.poll_once() == answer, "\n".join(lines)
        notifier.close()
        bodies = list(hook.bodies)
    return bodies, lines


def test_runner_promotes_a_new_challenger_once_and_the_webhook_gets_every_event_in_order(tmp_path, bundles, tracking):
    client = register(tracking, bundles["champion"], bundles["good"])
    # the second poll: the challenger alias moved to champion, nothing left to do
    bodies, lines = polled(tmp_path, ["promoted", "idle"])
    events = [b.get("event", "?") for b in bodies]
    print("\n".join(lines))
    assert str(client.get_model_version_by_alias(MODEL, ALIAS_CHAMPION).version) == "2"
    assert events[0] == "quality_gate" and events[1] == "start" and events[-1] == "promote", events
    steps = [b for b in bodies if b["event"] == "step"]
    # the steps that moved on (a look may also hold or wait for evidence first)
    assert [s["weights"]["challenger"] for s in steps if s["decision"] in ("advance", "promote")] == [50, 100]
    assert all(b["challenger_version"] == "2" and b["reason"] for b in bodies)
    assert any(line.startswith("RolloutPromoted") for line in lines)  # each event is a log line too


def test_the_runner_judges_every_look_on_live_accuracy_with_the_live_gate(tmp_path, bundles, tracking):
    """``housing rollout auto --live-gate``: the options reach every rollout the runner starts. No labelled
    rows yet and labels not required: the live_rmse gate waits at every look without holding the rollout."""
    register(tracking, bundles["champion"], bundles["good"])
    live = LiveGateOptions(str(tmp_path / "payloads"), min_labels=20)
    bodies, _ = polled(tmp_path, ["promoted"], live)
    (started,) = [b for b in bodies if b["event"] == "live_gate"]
    assert started["log_uri"] == live.log_uri and started["min_labels"] == 20
    looks = [b for b in bodies if b["event"] == "step" and "look" in b]
    assert looks, [b["event"] for b in bodies]
    for look in looks:
        (gate,) = [g for g in look["gates"] if g["name"] == "live_rmse"]
        assert gate["passed"] and gate["value"] is None and "label" in gate["note"], gate


def test_a_worse_challenger_is_refused_and_never_tried_again(tmp_path, bundles, tracking):
    client = register(tracking, bundles["champion"], bundles["worse"])
    events = [b.get("event", "?") for b in polled(tmp_path, ["refused", "idle", "idle"])[0]]
    assert events == ["quality_gate", "refused"], events  # no canary ever started
    mv = client.get_model_version(MODEL, "2")
    assert mv.tags[registry.TAG_STATUS] == "rejected"
    assert registry.resolve(MODEL, tracking)[ALIAS_CHALLENGER] is None
    assert str(client.get_model_version_by_alias(MODEL, ALIAS_CHAMPION).version) == "1"


def test_mlflow_unreachable_waits_says_so_once_and_promotes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOUSING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    bodies, lines = polled(tmp_path, ["waiting"] * 3)
    assert [b["event"] for b in bodies] == ["waiting"]  # said once while nothing changes
    assert "unreachable" in bodies[0]["message"] and "retrying" in bodies[0]["message"]
    assert lines and lines[0].startswith("WARNING RolloutWaiting")
