"""What the rollout runner publishes (:func:`rollout.auto.summarize`): one readable Event per record
(the runner's loop itself: tests/integration/test_rollout_auto.py, on the node: test_node_delivery.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollout.auto import PublishingLog
from rollout.backends.base import RolloutStatus
from rollout.live_step import LiveGateOptions, live_gates


def published(tmp_path: Path) -> tuple[PublishingLog, list[tuple[str, str, bool]]]:
    from rollout.auto import summarize

    seen: list[tuple[str, str, bool]] = []

    def publish(record: dict[str, Any]) -> None:
        seen.append(summarize(record))

    return PublishingLog(tmp_path / "run.jsonl", publish), seen


def test_an_inconclusive_run_says_where_it_holds_and_why_as_a_warning(tmp_path: Path) -> None:
    """The record Analysis writes when a step still wants evidence at its last look (the live gate
    waiting for labels): a Warning naming the weight it holds at and the reason, not a dict."""
    log, seen = published(tmp_path)
    status = RolloutStatus("standard", "s3://m/1", "s3://m/2", 50, 50, True)
    why = "not enough evidence: live_rmse: waiting for labels: need 20 labelled rows per version, have a: 0, b: 3"
    log.write("inconclusive", reason=why, failures=0, status=status.to_dict())
    ((reason, message, warning),) = seen
    assert (reason, warning) == ("RolloutInconclusive", True)
    assert message == f"held at 50%, nothing promoted or rolled back: {why}"


def test_the_live_gate_options_read_as_a_sentence(tmp_path: Path) -> None:
    log, seen = published(tmp_path)
    options = LiveGateOptions("s3://models/payloads", min_labels=20, tolerance=0.1, days=7.0, require_labels=True)
    live_gates(options, "v1", "v2", log, echo=lambda _line: None)
    ((reason, message, warning),) = seen
    assert (reason, warning) == ("RolloutLiveGate", False)
    assert message == (
        "live gate on s3://models/payloads: v2 against v1, ≥ 20 labelled rows each in the last 7 days (required), "
        "RMSE within +10.0% of the champion's"
    )


class Sent(list):
    """Takes the runner's notifications (the webhook client's ``send``) as they are handed over."""

    def send(self, body: dict[str, Any]) -> None:
        self.append(body)


def test_a_notification_names_the_inferenceservice_of_a_kserve_backend_and_none_locally(tmp_path: Path) -> None:
    """Where an event happened comes from the backend's ``OnInferenceService`` capability, not a probe."""
    from rollout.auto import AutoOptions, Runner
    from rollout.backends.kserve_standard import StandardBackend
    from rollout.backends.local import LocalBackend
    from rollout.orchestrator import RunOptions

    options = AutoOptions(run=RunOptions(steps=[100]))
    for backend, where in (
        (StandardBackend("housing", "ml", dry_run=True), ("housing", "ml")),
        (LocalBackend(tmp_path / "home", "housing", "auto"), (None, None)),
    ):
        sent = Sent()
        Runner(backend, options, lambda _line: None, notifier=sent).note("runner", reason="started")
        ((body,),) = [sent]
        assert (body["inferenceservice"], body["namespace"]) == where
        assert body["event"] == "runner" and body["reason"] == "RunnerStarted" and body["message"] == "started"
