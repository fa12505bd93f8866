"""One rollout run from start to finish, whatever the backend: what ``housing rollout run`` and
``housing rollout shadow`` do once their flags are parsed.

:func:`run_rollout` resolves the champion and challenger (flags, else the MLflow aliases), refuses
the pair before anything starts when their feature schemas differ or the challenger scores worse
than the champion on the evaluation rows beyond a tolerance (:func:`quality_gate`, overridable with
``allow_worse``, which the event log records), lets the backend prepare them
(:meth:`~rollout.backends.base.Backend.prepare`), starts what the run needs on this machine — a
throwaway Prometheus when the backend runs its own processes and no ``prometheus_url`` is given,
a synthetic traffic generator — inside one :class:`~contextlib.ExitStack`, walks the steps with
:class:`~rollout.analysis.Analysis`, moves the MLflow aliases at the end, and stops everything it
started, in reverse order, however the run ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bundle import registry
from bundle.manifest import BundleError
from housing.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, load_settings
from predictor.series import PREDICTIONS_TOTAL, REQUEST_DURATION, REQUEST_ERRORS_TOTAL
from rollout.analysis import Analysis, Outcome, Verdict
from rollout.analysis_config import AnalysisConfig, MetricNames, Thresholds
from rollout.backends.base import Backend, Prepared, RolloutError
from rollout.event_log import EventLog, new_log
from rollout.quality_gate import DEFAULT_TOLERANCE, REFUSED, SchemaMismatch
from rollout.report import write_report

Echo = Callable[[str], Any]


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


class GateRefused(Exception):
    """The offline quality gate or the schema check refused the challenger: one line, exit code 4."""


@dataclass
class RunOptions:
    """Everything ``housing rollout run`` was asked for, parsed."""

    steps: list[int]
    interval: float = 30.0
    min_requests: int = 50
    max_failures: int = 2
    thresholds: Thresholds | None = None
    prometheus_url: str | None = None
    champion_uri: str | None = None
    challenger_uri: str | None = None
    traffic: float = 0.0  # synthetic requests/s through the backend's router (0: live traffic only)
    keep: bool = False  # leave what the backend started running afterwards
    registry_sync: bool = True  # move/tag the MLflow versions at the end
    name: str | None = None  # the deployment's name in the event log's file name
    ready_timeout: float = 600.0  # seconds a deployed challenger may take to report Ready
    quality_tolerance: float = DEFAULT_TOLERANCE  # challenger RMSE may exceed the champion's by this share
    allow_worse: bool = False  # canary a challenger the quality gate finds worse (recorded in the event log)
    quality_gate: bool = True  # False only for callers that compare versions themselves (tests of the run loop)


def resolve_uris(champion_uri: str | None, challenger_uri: str | None) -> tuple[dict, dict]:
    """Champion/challenger ``{uri, version}`` from the flags, else from the MLflow aliases."""
    settings = load_settings()
    roles: dict[str, Any] = {}
    if champion_uri is None or challenger_uri is None:
        try:
            roles = registry.resolve(settings.model_name)
        except Exception as exc:  # noqa: BLE001 - any registry failure is the same message
            raise UsageError(f"cannot read the MLflow registry at {settings.tracking_uri}: {exc}") from exc

    def pick(uri: str | None, alias: str) -> dict:
        if uri is not None:
            return {"uri": uri, "version": None, "digest": None}
        info = roles.get(alias)
        if info is None or not info.bundle_uri:
            raise UsageError(
                f"model {settings.model_name!r} has no {alias!r} alias with a bundle_uri tag; train one "
                f"(`housing train`) or pass --{alias}-uri"
            )
        return {"uri": info.bundle_uri, "version": info.version, "digest": info.digest}

    return pick(champion_uri, ALIAS_CHAMPION), pick(challenger_uri, ALIAS_CHALLENGER)


def resolve_for(backend: Backend, champion_uri: str | None, challenger_uri: str | None) -> tuple[dict, dict]:
    """:func:`resolve_uris`, asking for the champion only when the backend runs it itself."""
    champ, chall = resolve_uris(champion_uri if backend.runs_champion else "-", challenger_uri)
    return (champ if backend.runs_champion else {"uri": None, "version": None, "digest": None}), chall


def _local_copy(role: dict, stack: ExitStack) -> tuple[str, str | None]:
    """A local directory holding the bundle of ``role`` (downloaded when remote; removed afterwards)."""
    import shutil

    from predictor.storage import StorageError, download

    try:
        path, digest = download(role["uri"])
    except StorageError as exc:
        raise UsageError(f"quality gate: cannot fetch {role['uri']}: {exc}") from exc
    if str(path) != str(role["uri"]).removeprefix("file://"):
        stack.callback(shutil.rmtree, path, True)
    return str(path), digest or role.get("digest")


def quality_gate(
    champ: dict, chall: dict, tolerance: float, allow_worse: bool, echo: Echo, log: EventLog | None = None
) -> dict[str, Any]:
    """Compare the pair before a canary: schema (always refused when different), then quality.

    ``champ``/``chall`` are ``{uri, version, digest}``; a missing champion URI is read from the
    MLflow alias. Raises :class:`GateRefused` with the figures; returns the gate's record otherwise.
    """
    from rollout.quality_gate import SKIPPED, check

    if champ.get("uri") is None:
        try:
            champ = resolve_uris(None, "-")[0]
        except UsageError as exc:
            record = {"decision": SKIPPED, "reason": f"no champion bundle to compare with ({exc})"}
            if log is not None:
                log.write("quality_gate", **record)
            echo(f"quality gate: {SKIPPED}: {record['reason']}")
            return record
    with ExitStack() as stack:
        champ_dir, champ_digest = _local_copy(champ, stack)
        chall_dir, chall_digest = _local_copy(chall, stack)
        try:
            result = check(champ_dir, chall_dir, champ_digest, chall_digest, tolerance, allow_worse)
        except BundleError as exc:  # a bundle that fails verification never reaches a canary
            reason = f"a bundle fails verification: {exc}"
            if log is not None:
                log.write("quality_gate", decision=REFUSED, reason=reason)
            raise GateRefused(f"quality gate: {reason}") from None
        except SchemaMismatch as exc:
            if log is not None:
                log.write("quality_gate", decision=REFUSED, reason=str(exc), schema=False)
            raise GateRefused(str(exc)) from None
    record = {**result.to_dict(), "allow_worse": allow_worse}
    record.update(champion_version=champ.get("version"), challenger_version=chall.get("version"))
    if log is not None:
        log.write("quality_gate", **record)
    echo(f"quality gate: {result.decision}: {result.reason}")
    if result.decision != SKIPPED:
        try:
            model = load_settings().model_name
            run_id = registry.log_quality_gate(model, champ.get("version"), chall.get("version"), record)
            echo(f"quality gate: logged to MLflow run {run_id}")
        except Exception as exc:  # noqa: BLE001 - the figures are in the event log either way
            echo(f"quality gate: not logged to MLflow ({' '.join(str(exc).split())[:200]})")
    if result.refused:
        raise GateRefused(f"{result.reason}; pass --allow-worse to canary it anyway")
    return record


def cluster_metrics() -> MetricNames:
    """Gates in the cluster read the predictor's own series (there is no router there)."""
    return MetricNames(
        requests=PREDICTIONS_TOTAL,
        latency=REQUEST_DURATION,  # ours: KServe's request_predict_seconds has no model_version label
        errors=REQUEST_ERRORS_TOTAL,
        selector=os.environ.get("HOUSING_PROM_SELECTOR", ""),
    )


def _local_prometheus(stack: ExitStack, prepared: Prepared, echo: Echo) -> str:
    from rollout.promserver import LocalPrometheus

    if prepared.targets_file is None:
        raise UsageError("--prometheus-url is required for the KServe backends")
    workdir = load_settings().home / "rollouts" / "prometheus"
    server = stack.enter_context(LocalPrometheus(workdir, prepared.targets_file))
    echo(f"prometheus  {server.url} (scraping {prepared.targets_file})")
    return server.url


def _traffic(stack: ExitStack, prepared: Prepared, champion_uri: str | None, rps: float) -> Any:
    from rollout.traffic import TrafficGenerator, reference_of

    if prepared.router_url is None:
        raise UsageError("--traffic needs a backend with a local router (--backend local)")
    if champion_uri is None or "://" in champion_uri:
        raise UsageError("--traffic needs a local champion bundle directory for its reference statistics")
    model = load_settings().model_name
    return stack.enter_context(TrafficGenerator(prepared.router_url, model, reference_of(champion_uri), rps))


def _take_lease(stack: ExitStack, backend: Backend, options: RunOptions, echo: Echo) -> tuple[Any, Any]:
    """Hold the InferenceService's rollout Lease for the run (cluster backends; None for local), and
    what the Lease said before (an earlier run's progress), or None."""
    make = getattr(backend, "lease", None)
    if make is None or getattr(backend, "dry_run", False):
        return None, None
    lease = make(max(60, int(options.interval * 3)))
    before = lease.acquire()
    if before is not None and before.holder:  # a run that died without releasing: say where it stopped
        echo(f"lease       taken over from an expired run ({before.describe()})")
    echo(f"lease       {lease.namespace}/{lease.name} held by {lease.holder}")
    lease.keep_renewed()
    stack.callback(lambda: _release(lease))
    return lease, before


def resume_steps(backend: Backend, challenger_uri: str | None, steps: list[int], before: Any) -> list[int] | None:
    """The steps left when ``challenger_uri`` already runs as the canary (a run stopped without
    finishing: killed, or its machine gone), else None.

    The walk goes on from the weight the stopped run was at — read from its Lease's progress, and
    that step judged again from its start — or from the first step when that weight is unknown or
    was for another challenger. Its canary is adopted as it is: no pod restarts.
    """
    if backend.runs_champion or not challenger_uri:
        return None
    if backend.status().challenger != challenger_uri:
        return None
    progress = getattr(before, "progress", None) or {}
    weight = str(progress.get("weight", ""))
    if progress.get("challenger-uri") == challenger_uri and weight.isdigit():
        left = [s for s in steps if s >= int(weight)]
        return left or [steps[-1]]
    return list(steps)


def _release(lease: Any) -> None:
    try:
        lease.release()
    except RolloutError:
        pass  # it expires on its own


def registry_promote(version: str | None, echo: Echo) -> str | None:
    """Move the aliases after a promotion; the reason when MLflow could not be reached (else None)."""
    settings = load_settings()
    try:
        moved = registry.promote(settings.model_name, version)
    except Exception as exc:  # noqa: BLE001 - MLflow unreachable or refusing: the cluster change stands
        return f"MLflow at {settings.tracking_uri} did not take the alias move ({registry.short_error(exc)})"
    echo(f"registry: champion → version {moved['champion']}, previous → {moved['previous']}")
    return None


def registry_reject(version: str | None, reason: str, echo: Echo) -> str | None:
    """Tag the challenger rejected after a rollback; the reason when MLflow could not be reached."""
    settings = load_settings()
    try:
        tagged = registry.reject(settings.model_name, reason, version)
    except Exception as exc:  # noqa: BLE001
        return f"MLflow at {settings.tracking_uri} did not take the rejection ({registry.short_error(exc)})"
    echo(f"registry: version {tagged} tagged rollout_status=rejected")
    return None


def already_promoted(backend: Backend, challenger_uri: str | None) -> Any:
    """The backend's status when ``challenger_uri`` already serves as the champion with no canary left
    (a promotion whose registry step did not finish), else None."""
    if backend.runs_champion or not challenger_uri:
        return None
    status = backend.status()
    if status.challenger is None and status.champion == challenger_uri:
        return status
    return None


def run_rollout(backend: Backend, options: RunOptions, echo: Echo, show: Callable[[Any], Any]) -> Outcome:
    """Walk ``options.steps`` on ``backend``, judge every step from Prometheus, promote or roll back."""
    from rollout.prom import Prometheus

    settings = load_settings()
    config = AnalysisConfig(
        steps=options.steps,
        interval=options.interval,
        min_requests=options.min_requests,
        max_failures=options.max_failures,
        ready_timeout=options.ready_timeout,
        thresholds=options.thresholds or Thresholds(),
        metrics=MetricNames() if backend.runs_champion else cluster_metrics(),
    )
    champ, chall = resolve_for(backend, options.champion_uri, options.challenger_uri)
    log = new_log(settings.home, options.name or settings.model_name)
    echo(f"event log   {log.path}")
    with ExitStack() as stack:
        lease, before = _take_lease(stack, backend, options, echo)
        done = already_promoted(backend, chall["uri"])
        resumed = resume_steps(backend, chall["uri"], config.steps, before) if done is None else None
        if resumed is not None:  # the canary passed (or skipped) the gate when the stopped run started it
            config.steps = resumed
            if before is not None and before.acquired is not None:
                config.elapsed_before = max(0.0, (datetime.now(UTC) - before.acquired).total_seconds())
            log.write("resume", challenger_uri=chall["uri"], steps=resumed)
            echo(f"resuming    {chall['uri']} already runs as the canary: steps {','.join(map(str, resumed))}")
        elif done is None and options.quality_gate:  # before anything starts: a refused pair never takes traffic
            quality_gate(champ, chall, options.quality_tolerance, options.allow_worse, echo, log)
        elif done is None:
            log.write("quality_gate", decision="skipped", reason="--skip-quality-gate")
            echo("quality gate: skipped (--skip-quality-gate)")
        if done is not None:  # finish an earlier run's promotion instead of starting a new canary
            echo(f"{chall['uri']} already serves as the champion: finishing the registry step of that promotion")
            pending = registry_promote(chall["version"], echo) if options.registry_sync else None
            log.write("reconcile", challenger_uri=chall["uri"], registry_pending=pending)
            return Outcome(Verdict.PROMOTED, "reconciled an earlier promotion", 0, [], done, str(log.path), pending)
        if not options.keep:
            stack.callback(backend.close)
        prepared = backend.prepare(champ["uri"], chall["uri"])
        if resumed is not None:
            prepared = replace(prepared, challenger_uri=None)  # it runs already: adopt, do not start it
        url = options.prometheus_url or _local_prometheus(stack, prepared, echo)
        generator = None
        if options.traffic > 0 and prepared.router_url:  # synthetic traffic enters through our own router
            generator = _traffic(stack, prepared, champ["uri"], options.traffic)
        show(backend.status())

        pending: list[str] = []

        def on_promote() -> None:
            if options.registry_sync and (why := registry_promote(chall["version"], echo)):
                pending.append(why)

        def on_rollback(reason: str) -> None:
            if options.registry_sync and (why := registry_reject(chall["version"], reason, echo)):
                pending.append(why)

        def on_step(progress: dict[str, Any]) -> None:
            if lease is not None:
                try:
                    who = {"challenger": chall["version"] or chall["uri"], "challenger-uri": chall["uri"]}
                    lease.renew(**who, **progress)
                except RolloutError as exc:
                    echo(f"  lease: {exc}")

        outcome = Analysis(
            backend,
            Prometheus(url),
            config,
            prepared.champion_version or "",
            prepared.challenger_version or "",
            log,
            on_promote=on_promote,
            on_rollback=on_rollback,
            echo=echo,
            on_step=on_step,
        ).run(prepared.challenger_uri)
        outcome.registry_pending = pending[0] if pending else None
        if lease is not None:
            lease.progress.update({"outcome": str(outcome.decision), "event-log": str(log.path)})
        echo(f"{outcome.decision}: {outcome.reason}")
        echo(f"report      {write_report(log.path)[0]}")  # + a PNG, next to the event log
        if generator is not None:
            echo(f"traffic: {dict(generator.codes)} by version {dict(generator.versions)}")
        return outcome


def run_shadow(
    backend: Any,
    champion_uri: str | None,
    challenger_uri: str | None,
    fraction: float,
    duration: float,
    traffic: float = 0.0,
    keep: bool = False,
) -> dict[str, Any]:
    """Mirror ``fraction`` of the champion's requests to the challenger for ``duration`` seconds.

    ``backend`` is a :class:`~rollout.backends.local.LocalBackend` (only the local router
    mirrors). Returns the router's shadow report; the champion keeps serving afterwards, the
    challenger is detached unless ``keep``.
    """
    import httpx

    champ, chall = resolve_uris(champion_uri, challenger_uri)
    backend.up(champ["uri"])
    backend.start(chall["uri"], 0, shadow=fraction)
    httpx.post(f"{backend.url}/router/shadow/reset")
    with ExitStack() as stack:
        if traffic > 0:
            prepared = Prepared(None, None, None, router_url=backend.url)
            _traffic(stack, prepared, champ["uri"], traffic)
        time.sleep(duration)
    report = httpx.get(f"{backend.url}/router/shadow").json()
    if not keep:
        backend.detach_challenger()
    return report
