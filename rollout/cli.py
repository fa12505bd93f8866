"""``housing rollout``: champion/challenger canaries with automatic, model-aware promotion.

Mounted by ``housing.cli`` as ``housing rollout``; also ``python -m rollout``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from common.config import load_settings
from rollout.analysis_config import DEFAULT_ALPHA, parse_steps
from rollout.backends import BACKENDS
from rollout.backends.base import AwaitsReady, Backend, HoldsLease, RolloutStatus
from rollout.cli_options import GateFlags, LiveFlags, StepFlags, flag_group
from rollout.errors import RolloutError
from rollout.orchestrator import (
    GateRefused,
    RunOptions,
    UsageError,
    pinned,
    quality_gate,
    resolve_for,
    run_rollout,
    run_shadow,
)
from rollout.quality_gate import DEFAULT_TOLERANCE

EXAMPLES = """
Embedded mode (real predictor processes behind a local router):

  # champion vs challenger from the MLflow aliases, steps 10,25,50,100,
  # gates read from a Prometheus started for the run:
  housing rollout run --traffic 50
  housing rollout run --steps 20,50,100 --interval 10 --min-requests 100
  housing rollout start --percent 10        # prints the router URL
  housing rollout status
  housing rollout promote
  housing rollout rollback --reason "psi too high"
  housing rollout shadow --fraction 1 --duration 30 --traffic 50
  housing rollout stop                      # stop the local processes

Kubernetes (KServe 0.20+; --dry-run prints the JSON patch, sends nothing):

  housing rollout start -b standard --name housing -n ml \\
      --challenger-uri s3://models/housing/V2 --percent 10 --dry-run
  housing rollout run -b serverless --prometheus-url http://prometheus:9090
  housing rollout run -b standard --manifest isvc.yaml --dry-run
"""

app = typer.Typer(
    name="rollout",
    help="Canary rollouts: champion vs challenger, split by request, gated on Prometheus.\n" + EXAMPLES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def _load_manifest(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"--manifest {path}: {exc.strerror}") from exc
    try:
        obj = json.loads(text)
    except ValueError:
        import yaml

        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind") == "InferenceService"]
        if not docs:
            raise UsageError(f"--manifest {path}: no InferenceService in the file") from None
        obj = docs[0]
    obj.setdefault("metadata", {}).setdefault("resourceVersion", "0")
    return obj


def make_backend(
    backend: str,
    name: str,
    namespace: str,
    dry_run: bool = False,
    manifest: Path | None = None,
    canary_name: str | None = None,
    route: str | None = None,
) -> Any:
    _check_backend(backend)
    if backend == "local":
        from rollout.backends.local import LocalBackend

        settings = load_settings()
        return LocalBackend(settings.home, settings.model_name, name)
    obj = _load_manifest(manifest)
    if obj is not None and not dry_run:
        raise UsageError("--manifest is only for --dry-run (the live object is read from the cluster)")
    if backend == "standard":
        from rollout.backends.kserve_standard import StandardBackend

        return StandardBackend(name, namespace, dry_run=dry_run, manifest=obj, canary_name=canary_name, route=route)
    if route:
        raise UsageError("--route applies to the standard backend (a Gateway API route in front of KServe Standard)")
    from rollout.backends.kserve_serverless import ServerlessBackend

    return ServerlessBackend(name, namespace, dry_run=dry_run, manifest=obj)


def show(status: RolloutStatus, as_json: bool = False) -> None:
    if as_json:
        typer.echo(json.dumps(status.to_dict(), indent=2, default=str))
        return
    typer.echo(f"backend     {status.backend}   ready={status.ready}")
    typer.echo(f"champion    {status.champion_percent:>3}%  {status.champion or '-'}  {status.champion_version or ''}")
    if status.challenger or status.challenger_percent:
        pct, uri, ver = status.challenger_percent, status.challenger or "-", status.challenger_version or ""
        typer.echo(f"challenger  {pct:>3}%  {uri}  {ver}")
    if status.detail.get("router"):
        typer.echo(f"router      {status.detail['router']}")
    gateway = status.detail.get("gateway")
    if gateway:
        backends = ", ".join(f"{svc} {weight}" for svc, weight in gateway.get("backends") or [])
        typer.echo(f"gateway     {gateway.get('route')}: {backends or '-'}")


def _run(fn) -> None:  # noqa: ANN001
    try:
        fn()
    except UsageError as exc:
        fail(str(exc), 2)
    except GateRefused as exc:
        fail(f"refused before the canary: {exc}", 4)
    except ValueError as exc:
        fail(str(exc), 2)
    except (RolloutError, LookupError) as exc:
        fail(str(exc), 1)


BackendOpt = typer.Option(
    "local", "--backend", "-b", help="local | standard (KServe RawDeployment) | serverless (Knative)"
)
NameOpt = typer.Option(
    None, "--name", help="InferenceService name, or the local deployment name (default: the model name)"
)
NamespaceOpt = typer.Option("default", "--namespace", "-n", help="Kubernetes namespace")
DryRunOpt = typer.Option(False, "--dry-run", help="KServe: print the JSON patch and the resulting object, send nothing")
ManifestOpt = typer.Option(
    None, "--manifest", help="KServe --dry-run: read the current InferenceService from this JSON/YAML file"
)
RouteOpt = typer.Option(
    None,
    "--route",
    envvar="HOUSING_ROUTE",
    help="standard: the HTTPRoute (and GRPCRoute) whose weights the rollout moves (the chart's gateway.enabled)",
)
ToleranceOpt = typer.Option(
    DEFAULT_TOLERANCE,
    "--quality-tolerance",
    help="quality gate: the challenger's RMSE on the evaluation rows may exceed the champion's by this share",
)
AllowWorseOpt = typer.Option(
    False, "--allow-worse", help="canary a challenger the quality gate finds worse (recorded in the event log)"
)
SkipGateOpt = typer.Option(
    False,
    "--skip-quality-gate",
    help="no offline comparison (e.g. this host cannot read the bundles); recorded in the event log",
)


def check_limits(limits: dict[str, tuple[float, float, float, bool]]) -> None:
    """``{flag: (value, low, high, low_included)}``: a value outside its range (the upper bound
    included, the lower one when ``low_included``) or not a number is a usage error naming the flag."""
    for flag, (value, low, high, low_included) in limits.items():
        above = value >= low if low_included else value > low
        if math.isnan(value) or not above or value > high:
            lo = "[" if low_included else "("
            hi = "inf)" if math.isinf(high) else f"{high:g}]"
            raise UsageError(f"{flag} must be within {lo}{low:g}, {hi}, got {value:g}")


def _check_lease(be: Backend, dry_run: bool) -> None:
    """Refuse a manual step while a ``rollout run`` holds the InferenceService's Lease."""
    if not dry_run and isinstance(be, HoldsLease):
        be.lease().check_free()


def _finish(status: RolloutStatus, dry_run: bool, sync: Callable[[], str | None] | None, done: str, cmd: str) -> None:
    """After a manual promote or rollback: ``sync`` the registry (unless None), then show the status;
    a RolloutError naming the command to run again when the cluster moved and MLflow did not."""
    if dry_run:
        return
    if sync is not None and (why := sync()):
        raise RolloutError(f"the cluster is {done} but {why}; run `housing rollout {cmd}` again to finish")
    show(status)


@dataclass(frozen=True)
class TargetFlags:
    """Where start, run, promote and rollback act, as given."""

    backend: str = BackendOpt
    name: str = NameOpt
    namespace: str = NamespaceOpt
    dry_run: bool = DryRunOpt
    manifest: Path = ManifestOpt
    route: str = RouteOpt


@dataclass(frozen=True)
class QualityFlags:
    """The offline quality gate before a canary starts (``start`` and ``run``), as given."""

    tolerance: float = ToleranceOpt
    allow_worse: bool = AllowWorseOpt
    skip: bool = SkipGateOpt


def _manual(
    target: TargetFlags,
    step: Callable[[Backend], RolloutStatus],
    sync: Callable[[], str | None] | None,
    done: str,
    cmd: str,
    ask_runner: str | None = None,
) -> None:
    """A manual promote or rollback (``cmd``): ``step`` on the backend unless a run holds its Lease, then
    :func:`_finish`. ``ask_runner``: on KServe Standard, first ask a paused rollout runner to roll back with
    this reason (nothing more when it takes it)."""
    t = target

    def go() -> None:
        be = make_backend(t.backend, _name(t.name), t.namespace, t.dry_run, t.manifest, route=t.route)
        if ask_runner is not None and not t.dry_run and t.backend == "standard":
            from rollout.auto_cli import ask_rollback

            if ask_rollback(be, t.namespace, _name(t.name), ask_runner):  # the rollout runner waits at its pause
                typer.echo("asked the paused rollout runner to roll back")
                return
        _check_lease(be, t.dry_run)
        _finish(step(be), t.dry_run, sync, done, cmd)

    _run(go)


def _name(name: str | None) -> str:
    return name or load_settings().model_name


@app.command()
@flag_group("target", TargetFlags)
@flag_group("quality", QualityFlags)
def start(
    target: TargetFlags,
    percent: int = typer.Option(10, "--percent", "-p", help="challenger share of traffic, 0..100"),
    challenger_uri: str = typer.Option(None, help="bundle URI of the challenger (default: MLflow alias challenger)"),
    champion_uri: str = typer.Option(None, help="local: bundle URI of the champion (default: MLflow alias champion)"),
    canary_name: str = typer.Option(None, help="standard: name of the canary predictor (default from the URI)"),
    sticky: bool = typer.Option(False, help="local: route by a hash of x-request-id / the V2 body id"),
    port: int = typer.Option(None, help="local: router port (default: a free one)"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="standard: return once the canary reports Ready"),
    ready_timeout: float = typer.Option(600.0, help="standard: seconds the canary may take to turn Ready"),
    quality: QualityFlags = QualityFlags,
) -> None:
    """Deploy the challenger next to the champion with PERCENT % of the traffic.

    On KServe Standard it returns once ``status.canaryStatuses`` says the canary is Ready (exit 1
    with the reason after --ready-timeout; the champion keeps serving, `rollback` removes the canary).

    Refused (exit code 4) when the two versions' feature schemas differ, or when the challenger
    scores worse than the champion on the evaluation rows beyond --quality-tolerance.

    Example: housing rollout start --percent 10
    """

    def go() -> None:
        from rollout.backends.base import check_percent

        check_percent(percent)
        t = target
        be = make_backend(t.backend, _name(t.name), t.namespace, t.dry_run, t.manifest, canary_name, t.route)
        _check_lease(be, t.dry_run)
        champ, chall = resolve_for(be, champion_uri, challenger_uri)
        if not t.dry_run:
            if quality.skip:
                typer.echo("quality gate: skipped (--skip-quality-gate)")
            else:
                chall = pinned(chall, quality_gate(champ, chall, quality.tolerance, quality.allow_worse, typer.echo))
        be.prepare(champ["uri"], chall["uri"], port=port, sticky=sticky)  # local: champion + challenger at 0 %
        status = be.start(chall["uri"], percent, digest=chall["digest"])
        if wait and not t.dry_run and isinstance(be, AwaitsReady):
            started = time.monotonic()
            status = be.wait_ready(ready_timeout)
            typer.echo(f"canary Ready after {time.monotonic() - started:.1f} s")
        if not t.dry_run:
            show(status)

    _run(go)


@app.command()
def status(
    backend: str = BackendOpt,
    name: str = NameOpt,
    namespace: str = NamespaceOpt,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    watch: bool = typer.Option(False, "--watch", "-w", help="a live view, with the gates of the latest run"),
    every: float = typer.Option(2.0, help="--watch: seconds between refreshes"),
    count: int = typer.Option(None, hidden=True, help="--watch: stop after this many views"),
    route: str = RouteOpt,
) -> None:
    """Show who serves what share of traffic (read back from the target).

    Example: housing rollout status --watch   (Ctrl-C to stop)
    """
    if watch:
        from rollout.watch import latest_log
        from rollout.watch import watch as live

        def go() -> None:
            if every <= 0:
                raise UsageError(f"--every must be positive, got {every}")
            be, home = make_backend(backend, _name(name), namespace, route=route), load_settings().home
            live(be.status, lambda: latest_log(home, _name(name)), every, count)

        return _run(go)

    def once() -> None:
        be = make_backend(backend, _name(name), namespace, route=route)
        state = be.lease().state() if isinstance(be, HoldsLease) else None
        if as_json:
            data = be.status().to_dict()
            if isinstance(be, HoldsLease):  # the rollout run's Lease: who holds it, until when, its progress
                data["lease"] = None if state is None else state.to_dict()
                data["events"] = _events(be)  # the rollout runner's Events on the InferenceService
            typer.echo(json.dumps(data, indent=2, default=str))
            return
        show(be.status())
        if isinstance(be, HoldsLease):
            typer.echo(f"rollout     {'no run yet' if state is None else state.describe()}")
            _show_events(be)

    _run(once)


def _events(be: Any) -> list[dict[str, Any]] | None:
    """The rollout Events on the InferenceService (None when they cannot be read)."""
    from rollout.kube_events import core_api, recent_events

    try:
        return recent_events(core_api(be.api.api_client), be.namespace, be.isvc, limit=12)
    except Exception:  # noqa: BLE001 - no permission to list events, or no cluster: status shows the rest
        return None


def _show_events(be: Any) -> None:
    for e in _events(be) or []:
        typer.echo(f"  {e['time'][11:19]} {e['type']:<7} {e['reason']:<18} {e['message']}")


@app.command()
@flag_group("target", TargetFlags)
def promote(
    target: TargetFlags,
    registry_sync: bool = typer.Option(True, "--registry/--no-registry", help="move the MLflow aliases"),
) -> None:
    """Make the challenger the champion now (100 %) and move the MLflow aliases."""
    from rollout.orchestrator import already_promoted, registry_promote, resolve_uris

    def step(be: Backend) -> RolloutStatus:
        if registry_sync and not target.dry_run and not be.runs_champion:
            try:
                _, chall = resolve_uris("-", None)
            except UsageError:  # MLflow unreachable (or no challenger alias): the cluster step decides
                chall = {"uri": None}
            status = already_promoted(be, chall["uri"])
            if status is not None:
                typer.echo(f"{chall['uri']} already serves as the champion: moving the aliases only")
                return status
        return be.promote()

    sync = (lambda: registry_promote(None, typer.echo)) if registry_sync else None
    _manual(target, step, sync, "promoted", "promote")


@app.command()
@flag_group("target", TargetFlags)
def rollback(
    target: TargetFlags,
    reason: str = typer.Option("manual rollback", "--reason", "-r", help="why (kept on the MLflow version)"),
    registry_sync: bool = typer.Option(True, "--registry/--no-registry", help="tag the challenger rejected in MLflow"),
) -> None:
    """Send all traffic back to the champion; tag the challenger rejected with the reason."""
    from rollout.orchestrator import registry_reject

    sync = (lambda: registry_reject(None, reason, typer.echo)) if registry_sync else None
    _manual(target, lambda be: be.rollback(reason), sync, "rolled back", "rollback", ask_runner=reason)


@app.command()
@flag_group("live", LiveFlags)
@flag_group("canary", StepFlags)
@flag_group("gates", GateFlags)
@flag_group("target", TargetFlags)
@flag_group("quality", QualityFlags)
def run(
    target: TargetFlags,
    canary: StepFlags = StepFlags,
    prometheus_url: str = typer.Option(None, help="Prometheus to read gates from (local default: start one)"),
    gates: GateFlags = GateFlags,
    alpha: float = typer.Option(
        DEFAULT_ALPHA,
        help="significance level of the PSI and mean-shift tests, within (0, 0.5]: the largest chance that a "
        "challenger within those thresholds fails a step on one of them",
    ),
    shadow: float = typer.Option(
        0.0,
        help="local: the challenger also answers this share (0..1) of the champion's requests, never returned; "
        "the mean-shift gate then compares the two answers to the same rows",
    ),
    challenger_uri: str = typer.Option(None, help="bundle URI of the challenger (default: MLflow alias)"),
    champion_uri: str = typer.Option(None, help="local: bundle URI of the champion (default: MLflow alias)"),
    canary_name: str = typer.Option(None, help="standard: name of the canary predictor"),
    ready_timeout: float = typer.Option(
        600.0, help="standard: seconds the canary may take to turn Ready (else an automatic rollback)"
    ),
    traffic: float = typer.Option(
        0.0, help="local: also send this many synthetic requests/s (0 = rely on live traffic)"
    ),
    keep: bool = typer.Option(False, help="local: leave the deployment running afterwards"),
    registry_sync: bool = typer.Option(True, "--registry/--no-registry", help="move/tag MLflow versions at the end"),
    quality: QualityFlags = QualityFlags,
    live: LiveFlags = LiveFlags,
) -> None:
    """Walk the steps, judge each from Prometheus, then promote or roll back by itself.

    First, before anything starts, the offline quality gate: both versions must have the same
    feature schema, and the challenger's RMSE on the evaluation rows (the same rows for every
    version of a dataset) must not exceed the champion's by more than --quality-tolerance
    (--allow-worse overrides that, and the event log records it; figures are logged to MLflow).
    Every step (weights, PromQL, values, decision) goes to HOUSING_HOME/rollouts/*.jsonl.
    The PSI and mean-shift gates are statistical tests at level --alpha: a step fails only when the
    evidence says a threshold is exceeded; without enough evidence it waits (up to 3 intervals).
    With --live-gate every step is also judged on live accuracy: the challenger's RMSE on labelled
    payload rows (housing feedback) against the champion's (rollout/live_step.py).
    Exit code: 0 promoted, 3 rolled back, 4 refused by the quality gate, 6 not enough evidence
    (nothing changed), 2 bad input, 1 other failure.
    """

    def go() -> None:
        step_list = parse_steps(canary.steps)
        try:
            live_options = live.options()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        check_limits(
            {
                "--max-error-rate": (gates.max_error_rate, 0.0, 1.0, True),
                "--max-p95": (gates.max_p95, 0.0, math.inf, False),
                "--max-mean-shift": (gates.max_mean_shift, 0.0, math.inf, True),
                "--max-psi": (gates.max_psi, 0.0, math.inf, True),
                "--max-drift": (gates.max_drift, 0.0, math.inf, True),
                "--alpha": (alpha, 0.0, 0.5, False),
                "--shadow": (shadow, 0.0, 1.0, True),
            }
        )
        for label, value in (
            ("--interval", canary.interval),
            ("--min-requests", canary.min_requests),
            ("--max-failures", canary.max_failures),
        ):
            if value < (1 if label == "--max-failures" else 0):
                raise UsageError(f"{label} must be positive, got {value}")
        t = target
        if shadow > 0 and t.backend != "local":
            raise UsageError("--shadow needs the local router (--backend local); a cluster has no mirror yet")
        be = make_backend(t.backend, _name(t.name), t.namespace, t.dry_run, t.manifest, canary_name, t.route)
        if t.dry_run:
            if be.runs_champion:
                raise UsageError("--dry-run applies to the KServe backends")
            _, chall = resolve_for(be, None, challenger_uri)
            be.start(chall["uri"], step_list[0], digest=chall["digest"])
            for w in step_list[1:]:
                be.set_weight(w)
            be.promote()
            return
        options = RunOptions(
            steps=step_list,
            interval=canary.interval,
            min_requests=canary.min_requests,
            max_failures=canary.max_failures,
            thresholds=gates.thresholds(alpha),
            shadow=shadow,
            prometheus_url=prometheus_url,
            champion_uri=champion_uri,
            challenger_uri=challenger_uri,
            traffic=traffic,
            keep=keep,
            registry_sync=registry_sync,
            name=t.name,
            ready_timeout=ready_timeout,
            quality_tolerance=quality.tolerance,
            allow_worse=quality.allow_worse,
            quality_gate=not quality.skip,
            live_gate=live_options,
        )
        outcome = run_rollout(be, options, typer.echo, show)
        if outcome.registry_pending:
            typer.echo(
                f"registry step not done: {outcome.registry_pending}. The cluster is {outcome.decision}; "
                "re-run the same command once MLflow answers to finish it.",
                err=True,
            )
            raise typer.Exit(5)
        if outcome.decision == "inconclusive":
            raise typer.Exit(6)
        if outcome.decision != "promoted":
            raise typer.Exit(3)

    _run(go)


@app.command()
def shadow(
    name: str = NameOpt,
    fraction: float = typer.Option(1.0, help="share of champion requests mirrored to the challenger, 0..1"),
    duration: float = typer.Option(30.0, help="seconds to mirror before reporting"),
    challenger_uri: str = typer.Option(None, help="bundle URI of the challenger (default: MLflow alias)"),
    champion_uri: str = typer.Option(None, help="bundle URI of the champion (default: MLflow alias)"),
    traffic: float = typer.Option(0.0, help="also send this many synthetic requests/s"),
    keep: bool = typer.Option(False, help="leave the challenger attached (shadowing) afterwards"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Mirror live traffic to the challenger (answers never returned) and report the differences.

    Example: housing rollout shadow --fraction 0.5 --duration 60 --traffic 20
    """

    def go() -> None:
        if not 0 < fraction <= 1:
            raise UsageError(f"--fraction must be within (0, 1], got {fraction}")
        if duration <= 0:
            raise UsageError(f"--duration must be positive, got {duration}")
        be = make_backend("local", _name(name), "default")
        report = run_shadow(be, champion_uri, challenger_uri, fraction, duration, traffic, keep)
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        typer.echo(
            f"router {be.url}: mirrored {report['mirrored_requests']} requests "
            f"({report['compared_predictions']} predictions compared, "
            f"{report['challenger_errors']} challenger errors)"
        )
        for key in (
            "champion_mean",
            "challenger_mean",
            "mean_abs_diff",
            "max_abs_diff",
            "mean_rel_diff",
            "p95_rel_diff",
        ):
            value = report.get(key)
            typer.echo(f"  {key:<16} {value:.6g}" if isinstance(value, int | float) else f"  {key:<16} -")
        typer.echo(f"the champion keeps serving at {be.url}; stop it with `housing rollout stop`")

    _run(go)


@app.command()
def stop(name: str = NameOpt) -> None:
    """Local: stop the router and predictor processes of a deployment started by `start`/`shadow`."""

    def go() -> None:
        be = make_backend("local", _name(name), "default")
        be.down()
        typer.echo(f"stopped local deployment {_name(name)!r}")

    _run(go)


from rollout.live_accuracy import live_gate_command  # noqa: E402 - the live-accuracy gate (issue 25)

app.command("live-gate")(live_gate_command)
from rollout.auto_cli import register as _register_auto  # noqa: E402 - auto, resume, retry

_register_auto(app)


def main() -> None:  # pragma: no cover
    app(prog_name="housing rollout")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
