"""``housing rollout auto | resume | retry``: the in-cluster rollout runner and the commands a person
gives it. Mounted on ``housing rollout`` by :mod:`rollout.cli`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import typer

from rollout.analysis_config import parse_steps
from rollout.auto import RESUME, ROLLBACK, AutoOptions, LeaseCommands, Runner
from rollout.cli_options import GateFlags, LiveFlags, StepFlags, flag_group
from rollout.orchestrator import RunOptions, UsageError
from rollout.quality_gate import DEFAULT_TOLERANCE


def _echo(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} {message}", flush=True)


@flag_group("live", LiveFlags)
@flag_group("canary", StepFlags)
@flag_group("gates", GateFlags)
def auto(
    backend: str = typer.Option("standard", "--backend", "-b", help="standard (KServe Standard mode)"),
    name: str = typer.Option(None, "--name", help="InferenceService name (default: the model name)"),
    namespace: str = typer.Option(None, "--namespace", "-n", help="namespace (default: the pod's, else default)"),
    poll: float = typer.Option(30.0, help="seconds between two looks at the MLflow registry"),
    canary: StepFlags = StepFlags,
    ready_timeout: float = typer.Option(600.0, help="seconds the canary may take to turn Ready"),
    quality_tolerance: float = typer.Option(DEFAULT_TOLERANCE, help="quality gate: allowed RMSE excess share"),
    prometheus_url: str = typer.Option(..., help="Prometheus scraping the predictors"),
    gates: GateFlags = GateFlags,
    pause_at: int = typer.Option(0, help="wait at this step until `housing rollout resume` (0: never)"),
    notify_url: str = typer.Option(None, help="POST every rollout event as JSON to this URL"),
    notify_timeout: float = typer.Option(5.0, help="seconds per notification attempt"),
    notify_retries: int = typer.Option(3, help="retries per notification"),
    live: LiveFlags = LiveFlags,
    max_polls: int = typer.Option(None, hidden=True, help="stop after this many looks (tests)"),
) -> None:
    """Run forever: roll out every new MLflow challenger (quality gate, canary, promote/rollback).

    Each step is a Kubernetes Event on the InferenceService, a log line, and (with --notify-url) a
    JSON POST. Leadership is the rollout Lease: one runner (or `housing rollout run`) at a time.
    With --live-gate every step is also judged on live accuracy, as with `housing rollout run`: the
    challenger's RMSE on labelled payload rows (housing feedback) against the champion's.
    Exit 2 on bad flags; SIGTERM releases the Lease with the progress so the next runner resumes.
    """
    from rollout.cli import _name, fail, make_backend

    try:
        step_list = parse_steps(canary.steps)
        for label, value in (("--poll", poll), ("--interval", canary.interval), ("--ready-timeout", ready_timeout)):
            if value <= 0:
                raise UsageError(f"{label} must be positive, got {value}")
        if pause_at and pause_at not in step_list:
            raise UsageError(f"--pause-at {pause_at} is not one of --steps {canary.steps}")
        if backend != "standard":
            raise UsageError(f"--backend must be standard for the rollout runner, got {backend!r}")
        live_options = live.options()
    except (UsageError, ValueError) as exc:
        fail(str(exc), 2)
    namespace = namespace or _pod_namespace()
    isvc = _name(name)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    be = make_backend("standard", isvc, namespace)
    run = RunOptions(
        steps=step_list,
        interval=canary.interval,
        min_requests=canary.min_requests,
        max_failures=canary.max_failures,
        thresholds=gates.thresholds(),
        prometheus_url=prometheus_url,
        name=isvc,
        ready_timeout=ready_timeout,
        quality_tolerance=quality_tolerance,
        live_gate=live_options,
    )
    from rollout.kube_events import EventRecorder, core_api

    recorder = EventRecorder(core_api(be.api.api_client), namespace, isvc, _uid(be), os.environ.get("POD_NAME", ""))
    notifier = None
    if notify_url:
        from rollout.notify import Notifier

        notifier = Notifier(notify_url, notify_timeout, notify_retries)
    stop = threading.Event()

    def on_term(signum: int, _frame: Any) -> None:
        stop.set()
        raise SystemExit(128 + signum)  # unwinds a running rollout: the Lease is released with its progress

    signal.signal(signal.SIGTERM, on_term)
    options = AutoOptions(run=run, poll=poll, pause_at=pause_at)
    runner = Runner(
        be, options, _echo, recorder=recorder, notifier=notifier, commands=LeaseCommands(be.api, namespace, isvc)
    )
    try:
        runner.run_forever(max_polls)
    finally:
        if notifier is not None:
            notifier.close()
            _echo(f"notify: {notifier.counts()}")


def _pod_namespace() -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path) as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def _uid(be: Any) -> str | None:
    try:
        return (be.read().get("metadata") or {}).get("uid")
    except Exception:  # noqa: BLE001 - an Event without a uid still lists under the name
        return None


def resume(
    name: str = typer.Option(None, "--name", help="InferenceService name (default: the model name)"),
    namespace: str = typer.Option("default", "--namespace", "-n", help="Kubernetes namespace"),
) -> None:
    """Let a rollout paused at its pause step (rollout.auto.pauseAt) go on."""
    from rollout.backends.base import RolloutError
    from rollout.cli import _name, fail, make_backend

    be = make_backend("standard", _name(name), namespace)
    try:
        state = LeaseCommands(be.api, namespace, _name(name)).ask(RESUME)
    except RolloutError as exc:
        fail(str(exc), 1)
    typer.echo(f"asked the runner to resume the rollout paused at {state.get('paused-at')}%")


def ask_rollback(be: Any, namespace: str, isvc: str, reason: str) -> bool:
    """If a runner waits at a pause, leave it a rollback command (True); else False."""
    from rollout.backends.base import RolloutError

    commands = LeaseCommands(be.api, namespace, isvc)
    try:
        if not commands.read().get("paused-at"):
            return False
        commands.ask(f"{ROLLBACK}:{reason}")
    except RolloutError:
        return False
    return True


def retry(
    version: str = typer.Argument(..., help="the MLflow model version to try again"),
) -> None:
    """Make a rejected version the challenger again (the runner then rolls it out once more)."""
    from common.config import ALIAS_CHALLENGER, load_settings
    from registry import lifecycle as registry
    from rollout.cli import fail

    model = load_settings().model_name
    try:
        client = registry.client()
        client.get_model_version(model, version)
        client.delete_model_version_tag(model, version, registry.TAG_STATUS)
        client.set_model_version_tag(model, version, registry.TAG_REASON, "retry asked")
        client.set_registered_model_alias(model, ALIAS_CHALLENGER, version)
    except Exception as exc:  # noqa: BLE001
        fail(f"cannot make version {version} of {model!r} the challenger: {registry.short_error(exc)}", 1)
    typer.echo(f"version {version} of {model!r} is the challenger again")


def register(app: typer.Typer) -> None:
    """Mount the commands on ``housing rollout``."""
    app.command()(auto)
    app.command()(resume)
    app.command()(retry)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(typer.run(auto))
