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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bundle.manifest import BundleError, bundle_digest
from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, load_settings
from common.series import REQUEST_DURATION, REQUESTS_TOTAL
from common.urls import redact
from registry import lifecycle as registry
from rollout.analysis import Analysis, Outcome, Verdict
from rollout.analysis_config import AnalysisConfig, GatewaySeries, MetricNames, Thresholds
from rollout.backends.base import Backend, GatewayRouted, HoldsLease, Mirrors, Prepared
from rollout.errors import GateRefused, RolloutError, SchemaMismatch, UsageError
from rollout.event_log import EventLog, new_log
from rollout.gateway_series import service_regex
from rollout.live_step import LiveGateOptions, live_gates
from rollout.quality_gate import DEFAULT_TOLERANCE, REFUSED
from rollout.report import write_report

if TYPE_CHECKING:
    from rollout.backends.local import LocalBackend
    from rollout.lease import LeaseState, RolloutLease

Echo = Callable[[str], Any]


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
    shadow: float = 0.0  # local: share of the champion's requests the challenger also answers (paired gates)
    live_gate: LiveGateOptions | None = None  # --live-gate: every step also judged on live accuracy (rollout.live_step)


def resolve_uris(champion_uri: str | None, challenger_uri: str | None) -> tuple[dict, dict]:
    """Champion/challenger ``{uri, version}`` from the flags, else from the MLflow aliases."""
    settings = load_settings()
    roles: dict[str, Any] = {}
    if champion_uri is None or challenger_uri is None:
        try:
            roles = registry.resolve(settings.model_name)
        except Exception as exc:  # noqa: BLE001 - any registry failure is the same message
            raise UsageError(f"cannot read the MLflow registry at {redact(settings.tracking_uri)}: {exc}") from exc

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

    from predictor.core.storage import StorageError, download

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
            judged = chall_digest or bundle_digest(Path(chall_dir))  # verified by check() just now
        except BundleError as exc:  # a bundle that fails verification never reaches a canary
            reason = f"a bundle fails verification: {exc}"
            if log is not None:
                log.write("quality_gate", decision=REFUSED, reason=reason)
            raise GateRefused(f"quality gate: {reason}") from None
        except SchemaMismatch as exc:
            if log is not None:
                log.write("quality_gate", decision=REFUSED, reason=str(exc), schema=False)
            raise GateRefused(str(exc)) from None
    record = {**result.to_dict(), "allow_worse": allow_worse, "challenger_digest": judged}
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
    if not chall.get("digest"):
        echo(f"quality gate: the canary is pinned to the bundle it judged (sha256 {judged[:12]}…)")
    return record


def pinned(chall: dict, gate: dict) -> dict:
    """The challenger pinned to the digest of the bundle the quality gate judged, when the registry
    gave none (``--challenger-uri``): what was judged is what serves; a bundle replaced in the
    bucket afterwards is refused by the predictor's digest check."""
    if chall.get("digest") or not gate.get("challenger_digest"):
        return chall
    return {**chall, "digest": gate["challenger_digest"]}


def cluster_metrics(backend: Backend | None = None, challenger_uri: str | None = None) -> MetricNames:
    """Gates in the cluster read the predictor's own series (every inference request by status
    code), and behind a gateway route also the gateway's series of the Services behind it."""
    names = MetricNames(
        requests=REQUESTS_TOTAL,
        latency=REQUEST_DURATION,  # ours: KServe's request_predict_seconds has no model_version label
        selector=os.environ.get("HOUSING_PROM_SELECTOR", ""),
    )
    if isinstance(backend, GatewayRouted) and (services := backend.gateway_services(challenger_uri)):
        regexes = {role: service_regex(backend.namespace, svc) for role, svc in services.items()}
        names.gateway = GatewaySeries(services=regexes)
    return names


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


def _take_lease(
    stack: ExitStack, backend: Backend, options: RunOptions, echo: Echo
) -> tuple[RolloutLease | None, LeaseState | None]:
    """Hold the InferenceService's rollout Lease for the run (cluster backends; None for local), and
    what the Lease said before (an earlier run's progress), or None."""
    if not isinstance(backend, HoldsLease) or backend.dry_run:
        return None, None
    lease = backend.lease(max(60, int(options.interval * 3)))
    before = lease.acquire()
    if before is not None and before.holder:  # a run that died without releasing: say where it stopped
        echo(f"lease       taken over from an expired run ({before.describe()})")
    echo(f"lease       {lease.namespace}/{lease.name} held by {lease.holder}")
    lease.keep_renewed()
    stack.callback(lambda: _release(lease))
    return lease, before


def resume_steps(
    backend: Backend, challenger_uri: str | None, steps: list[int], before: LeaseState | None
) -> list[int] | None:
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
    progress = before.progress if before is not None else {}
    weight = str(progress.get("weight", ""))
    if progress.get("challenger-uri") == challenger_uri and weight.isdigit():
        left = [s for s in steps if s >= int(weight)]
        return left or [steps[-1]]
    return list(steps)


def _release(lease: RolloutLease) -> None:
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
        return f"MLflow at {redact(settings.tracking_uri)} did not take the alias move ({registry.short_error(exc)})"
    echo(f"registry: champion → version {moved['champion']}, previous → {moved['previous']}")
    return None


def registry_reject(version: str | None, reason: str, echo: Echo) -> str | None:
    """Tag the challenger rejected after a rollback; the reason when MLflow could not be reached."""
    settings = load_settings()
    try:
        tagged = registry.reject(settings.model_name, reason, version)
    except Exception as exc:  # noqa: BLE001
        return f"MLflow at {redact(settings.tracking_uri)} did not take the rejection ({registry.short_error(exc)})"
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


@dataclass
class _RunHooks:
    """What a run does as the analysis moves: the registry after a promotion or a rollback (a reason
    it could not be moved kept in ``pending``), and each step's progress into the Lease and the hook."""

    chall: dict[str, Any]
    options: RunOptions
    echo: Echo
    lease: RolloutLease | None = None
    step_hook: Callable[[dict[str, Any]], Any] | None = None
    pending: list[str] = field(default_factory=list)

    def on_promote(self) -> None:
        if self.options.registry_sync and (why := registry_promote(self.chall["version"], self.echo)):
            self.pending.append(why)

    def on_rollback(self, reason: str) -> None:
        if self.options.registry_sync and (why := registry_reject(self.chall["version"], reason, self.echo)):
            self.pending.append(why)

    def on_step(self, progress: dict[str, Any]) -> None:
        if self.lease is not None:
            try:
                who = {"challenger": self.chall["version"] or self.chall["uri"], "challenger-uri": self.chall["uri"]}
                self.lease.renew(**who, **progress)
            except RolloutError as exc:
                self.echo(f"  lease: {exc}")
        if self.step_hook is not None:
            self.step_hook(progress)


def _analysis_config(options: RunOptions) -> AnalysisConfig:
    return AnalysisConfig(
        steps=options.steps,
        interval=options.interval,
        min_requests=options.min_requests,
        max_failures=options.max_failures,
        ready_timeout=options.ready_timeout,
        thresholds=options.thresholds or Thresholds(),
    )


def _resume_or_gate(
    backend: Backend,
    options: RunOptions,
    config: AnalysisConfig,
    uris: tuple[dict[str, Any], dict[str, Any]],
    before: LeaseState | None,
    log: EventLog,
    echo: Echo,
) -> tuple[list[int] | None, dict[str, Any]]:
    """Before a new canary: the steps left when the challenger already runs as the canary (set on
    ``config``), else the offline quality gate (or its skip recorded); the resumed steps (or None)
    and the challenger, pinned to the digest of the bundle the gate judged (:func:`pinned`)."""
    champ, chall = uris
    resumed = resume_steps(backend, chall["uri"], config.steps, before)
    if resumed is not None:  # the canary passed (or skipped) the gate when the stopped run started it
        config.steps = resumed
        if before is not None and before.acquired is not None:
            config.elapsed_before = max(0.0, (datetime.now(UTC) - before.acquired).total_seconds())
        log.write("resume", challenger_uri=chall["uri"], steps=resumed)
        echo(f"resuming    {chall['uri']} already runs as the canary: steps {','.join(map(str, resumed))}")
    elif options.quality_gate:  # before anything starts: a refused pair never takes traffic
        chall = pinned(chall, quality_gate(champ, chall, options.quality_tolerance, options.allow_worse, echo, log))
    else:
        log.write("quality_gate", decision="skipped", reason="--skip-quality-gate")
        echo("quality gate: skipped (--skip-quality-gate)")
    return resumed, chall


def _say_outcome(outcome: Outcome, log: EventLog, lease: RolloutLease | None, generator: Any, echo: Echo) -> None:
    if lease is not None:
        lease.progress.update({"outcome": str(outcome.decision), "event-log": str(log.path)})
    echo(f"{outcome.decision}: {outcome.reason}")
    if outcome.decision == Verdict.INCONCLUSIVE:
        echo(
            "nothing was promoted or rolled back and the registry is unchanged: run again with more "
            "traffic or a longer --interval (rollout/README.md: choosing --min-requests and intervals)"
        )
    echo(f"report      {write_report(log.path)[0]}")  # + a PNG, next to the event log
    if generator is not None:
        echo(f"traffic: {dict(generator.codes)} by version {dict(generator.versions)}")


def run_rollout(
    backend: Backend,
    options: RunOptions,
    echo: Echo,
    show: Callable[[Any], Any],
    *,
    log: EventLog | None = None,
    step_hook: Callable[[dict[str, Any]], Any] | None = None,
) -> Outcome:
    """Walk ``options.steps`` on ``backend``, judge every step from Prometheus, promote or roll back.

    ``log``: the event log to write (default: a new file under HOUSING_HOME/rollouts); ``step_hook``:
    called with each step's progress once its weight is set, while the Lease is held (the rollout
    runner pauses there).
    """
    from rollout.prom import Prometheus

    settings = load_settings()
    if options.shadow > 0 and not isinstance(backend, Mirrors):
        raise UsageError("--shadow needs a backend with a local router (--backend local)")
    config = _analysis_config(options)
    champ, chall = resolve_for(backend, options.champion_uri, options.challenger_uri)
    config.metrics = MetricNames() if backend.runs_champion else cluster_metrics(backend, chall["uri"])
    log = log or new_log(settings.home, options.name or settings.model_name)
    echo(f"event log   {log.path}")
    with ExitStack() as stack:
        lease, before = _take_lease(stack, backend, options, echo)
        done = already_promoted(backend, chall["uri"])
        if done is not None:  # finish an earlier run's promotion instead of starting a new canary
            echo(f"{chall['uri']} already serves as the champion: finishing the registry step of that promotion")
            pending = registry_promote(chall["version"], echo) if options.registry_sync else None
            log.write("reconcile", challenger_uri=chall["uri"], registry_pending=pending)
            return Outcome(Verdict.PROMOTED, "reconciled an earlier promotion", 0, [], done, str(log.path), pending)
        resumed, chall = _resume_or_gate(backend, options, config, (champ, chall), before, log, echo)
        if not options.keep:
            stack.callback(backend.close)
        prepared = backend.prepare(champ["uri"], chall["uri"])
        if resumed is not None:
            prepared = replace(prepared, challenger_uri=None)  # it runs already: adopt, do not start it
        if options.shadow > 0:  # the paired comparison: the challenger also answers the champion's requests
            backend.set_shadow(options.shadow)
        url = options.prometheus_url or _local_prometheus(stack, prepared, echo)
        generator = None
        if options.traffic > 0 and prepared.router_url:  # synthetic traffic enters through our own router
            generator = _traffic(stack, prepared, champ["uri"], options.traffic)
        show(backend.status())
        hooks = _RunHooks(chall, options, echo, lease, step_hook)
        versions = prepared.champion_version or "", prepared.challenger_version or ""
        outcome = Analysis(
            backend,
            Prometheus(url),
            config,
            *versions,
            log,
            on_promote=hooks.on_promote,
            on_rollback=hooks.on_rollback,
            echo=echo,
            on_step=hooks.on_step,
            extra_gates=live_gates(options.live_gate, *versions, log, echo),
        ).run(prepared.challenger_uri, chall["digest"])
        outcome.registry_pending = hooks.pending[0] if hooks.pending else None
        _say_outcome(outcome, log, lease, generator, echo)
        return outcome


def run_shadow(
    backend: LocalBackend,
    champion_uri: str | None,
    challenger_uri: str | None,
    fraction: float,
    duration: float,
    traffic: float = 0.0,
    keep: bool = False,
) -> dict[str, Any]:
    """Mirror ``fraction`` of the champion's requests to the challenger for ``duration`` seconds.

    Only the local router mirrors. Returns the router's shadow report; the champion keeps serving afterwards, the
    challenger is detached unless ``keep``.
    """
    import httpx

    champ, chall = resolve_uris(champion_uri, challenger_uri)
    backend.up(champ["uri"])
    backend.start(chall["uri"], 0, shadow=fraction)
    httpx.post(f"{backend.url}/router/shadow/reset", json={})
    with ExitStack() as stack:
        if traffic > 0:
            prepared = Prepared(None, None, None, router_url=backend.url)
            _traffic(stack, prepared, champ["uri"], traffic)
        time.sleep(duration)
    report = httpx.get(f"{backend.url}/router/shadow").json()
    if not keep:
        backend.detach_challenger()
    return report
