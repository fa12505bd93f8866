"""``housing rollout``: champion/challenger canaries with automatic, model-aware promotion.

Mounted by ``housing.cli`` as ``housing rollout``; also ``python -m rollout``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import typer

from housing.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, load_settings
from rollout.analysis import Analysis, AnalysisConfig, MetricNames, Thresholds, new_log, parse_steps
from rollout.backends import BACKENDS
from rollout.backends.base import RolloutError, RolloutStatus
from rollout.report import write_report

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


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


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

        return StandardBackend(name, namespace, dry_run=dry_run, manifest=obj, canary_name=canary_name)
    from rollout.backends.kserve_serverless import ServerlessBackend

    return ServerlessBackend(name, namespace, dry_run=dry_run, manifest=obj)


def resolve_uris(champion_uri: str | None, challenger_uri: str | None) -> tuple[dict, dict]:
    """Champion/challenger ``{uri, version}`` from the flags, else from the MLflow aliases."""
    settings = load_settings()
    roles: dict[str, Any] = {}
    if champion_uri is None or challenger_uri is None:
        from rollout import registry

        try:
            roles = registry.resolve(settings.model_name)
        except Exception as exc:  # noqa: BLE001 - any registry failure is the same message
            raise UsageError(f"cannot read the MLflow registry at {settings.tracking_uri}: {exc}") from exc

    def pick(uri: str | None, alias: str) -> dict:
        if uri is not None:
            return {"uri": uri, "version": None}
        info = roles.get(alias)
        if info is None or not info.bundle_uri:
            raise UsageError(
                f"model {settings.model_name!r} has no {alias!r} alias with a bundle_uri tag; train one "
                f"(`housing train`) or pass --{alias}-uri"
            )
        return {"uri": info.bundle_uri, "version": info.version}

    return pick(champion_uri, ALIAS_CHAMPION), pick(challenger_uri, ALIAS_CHALLENGER)


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


def _run(fn) -> None:  # noqa: ANN001
    try:
        fn()
    except UsageError as exc:
        fail(str(exc), 2)
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


def _name(name: str | None) -> str:
    return name or load_settings().model_name


@app.command()
def start(
    backend: str = BackendOpt,
    name: str = NameOpt,
    namespace: str = NamespaceOpt,
    percent: int = typer.Option(10, "--percent", "-p", help="challenger share of traffic, 0..100"),
    challenger_uri: str = typer.Option(None, help="bundle URI of the challenger (default: MLflow alias challenger)"),
    champion_uri: str = typer.Option(None, help="local: bundle URI of the champion (default: MLflow alias champion)"),
    canary_name: str = typer.Option(None, help="standard: name of the canary predictor (default from the URI)"),
    sticky: bool = typer.Option(False, help="local: route by a hash of x-request-id / the V2 body id"),
    port: int = typer.Option(None, help="local: router port (default: a free one)"),
    dry_run: bool = DryRunOpt,
    manifest: Path = ManifestOpt,
) -> None:
    """Deploy the challenger next to the champion with PERCENT % of the traffic.

    Example: housing rollout start --percent 10
    """

    def go() -> None:
        from rollout.backends.base import check_percent

        check_percent(percent)
        be = make_backend(backend, _name(name), namespace, dry_run, manifest, canary_name)
        if backend == "local":
            champ, chall = resolve_uris(champion_uri, challenger_uri)
            be.up(champ["uri"], port=port, sticky=sticky)
            show(be.start(chall["uri"], percent))
        else:
            _, chall = resolve_uris("-", challenger_uri)
            status = be.start(chall["uri"], percent)
            if not dry_run:
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
            be, home = make_backend(backend, _name(name), namespace), load_settings().home
            live(be.status, lambda: latest_log(home, _name(name)), every, count)

        return _run(go)
    _run(lambda: show(make_backend(backend, _name(name), namespace).status(), as_json))


@app.command()
def promote(
    backend: str = BackendOpt,
    name: str = NameOpt,
    namespace: str = NamespaceOpt,
    registry_sync: bool = typer.Option(True, "--registry/--no-registry", help="move the MLflow aliases"),
    dry_run: bool = DryRunOpt,
    manifest: Path = ManifestOpt,
) -> None:
    """Make the challenger the champion now (100 %) and move the MLflow aliases."""

    def go() -> None:
        be = make_backend(backend, _name(name), namespace, dry_run, manifest)
        status = be.promote()
        if dry_run:
            return
        if registry_sync:
            from rollout import registry

            moved = registry.promote(load_settings().model_name)
            typer.echo(f"registry: champion → version {moved['champion']}, previous → {moved['previous']}")
        show(status)

    _run(go)


@app.command()
def rollback(
    reason: str = typer.Option("manual rollback", "--reason", "-r", help="why (kept on the MLflow version)"),
    backend: str = BackendOpt,
    name: str = NameOpt,
    namespace: str = NamespaceOpt,
    registry_sync: bool = typer.Option(True, "--registry/--no-registry", help="tag the challenger rejected in MLflow"),
    dry_run: bool = DryRunOpt,
    manifest: Path = ManifestOpt,
) -> None:
    """Send all traffic back to the champion; tag the challenger rejected with the reason."""

    def go() -> None:
        be = make_backend(backend, _name(name), namespace, dry_run, manifest)
        status = be.rollback(reason)
        if dry_run:
            return
        if registry_sync:
            from rollout import registry

            version = registry.reject(load_settings().model_name, reason)
            typer.echo(f"registry: version {version} tagged rollout_status=rejected")
        show(status)

    _run(go)


@app.command()
def run(
    backend: str = BackendOpt,
    name: str = NameOpt,
    namespace: str = NamespaceOpt,
    steps: str = typer.Option("10,25,50,100", help="challenger percents, increasing, ending at 100"),
    interval: float = typer.Option(30.0, help="seconds per step"),
    min_requests: int = typer.Option(50, help="challenger requests needed per step"),
    max_failures: int = typer.Option(2, help="failed steps before an automatic rollback"),
    prometheus_url: str = typer.Option(None, help="Prometheus to read gates from (local default: start one)"),
    max_error_rate: float = typer.Option(0.01, help="gate: challenger 5xx share"),
    max_p95: float = typer.Option(0.5, help="gate: challenger p95 latency, seconds"),
    max_mean_shift: float = typer.Option(0.10, help="gate: relative shift of the mean prediction vs champion"),
    max_psi: float = typer.Option(0.25, help="gate: PSI of the prediction histogram vs champion"),
    max_drift: float = typer.Option(0.5, help="gate: challenger drift score (largest feature PSI)"),
    challenger_uri: str = typer.Option(None, help="bundle URI of the challenger (default: MLflow alias)"),
    champion_uri: str = typer.Option(None, help="local: bundle URI of the champion (default: MLflow alias)"),
    canary_name: str = typer.Option(None, help="standard: name of the canary predictor"),
    traffic: float = typer.Option(
        0.0, help="local: also send this many synthetic requests/s (0 = rely on live traffic)"
    ),
    keep: bool = typer.Option(False, help="local: leave the deployment running afterwards"),
    registry_sync: bool = typer.Option(True, "--registry/--no-registry", help="move/tag MLflow versions at the end"),
    dry_run: bool = DryRunOpt,
    manifest: Path = ManifestOpt,
) -> None:
    """Walk the steps, judge each from Prometheus, then promote or roll back by itself.

    Every step (weights, PromQL, values, decision) goes to HOUSING_HOME/rollouts/*.jsonl.
    Exit code: 0 promoted, 3 rolled back, 2 bad input, 1 other failure.
    """

    opts = dict(locals())

    def go() -> None:
        step_list = parse_steps(steps)
        for label, value in (
            ("--interval", interval),
            ("--min-requests", min_requests),
            ("--max-failures", max_failures),
        ):
            if value < (1 if label == "--max-failures" else 0):
                raise UsageError(f"{label} must be positive, got {value}")
        be = make_backend(backend, _name(name), namespace, dry_run, manifest, canary_name)
        if dry_run:
            if backend == "local":
                raise UsageError("--dry-run applies to the KServe backends")
            _, chall = resolve_uris("-", challenger_uri)
            be.start(chall["uri"], step_list[0])
            for w in step_list[1:]:
                be.set_weight(w)
            be.promote()
            return
        _run_live(be, backend, step_list, opts)

    _run(go)


def _run_live(be: Any, backend: str, step_list: list[int], opts: dict) -> None:
    settings = load_settings()
    cfg = AnalysisConfig(
        steps=step_list,
        interval=opts["interval"],
        min_requests=opts["min_requests"],
        max_failures=opts["max_failures"],
        thresholds=Thresholds(
            opts["max_error_rate"], opts["max_p95"], opts["max_mean_shift"], opts["max_psi"], opts["max_drift"]
        ),
        metrics=MetricNames() if backend == "local" else cluster_metrics(),
    )
    champ, chall = resolve_uris(opts["champion_uri"] if backend == "local" else "-", opts["challenger_uri"])
    prom_server = None
    traffic_gen = None
    from rollout.prom import Prometheus

    try:
        if backend == "local":
            be.up(champ["uri"])
            be.start(chall["uri"], 0)
            status = be.status()
            champion_version, challenger_version = status.champion_version, status.challenger_version
            if not opts["prometheus_url"]:
                from rollout.promserver import LocalPrometheus

                prom_server = LocalPrometheus(settings.home / "rollouts" / "prometheus", be.targets_path).start()
                typer.echo(f"prometheus  {prom_server.url} (scraping {be.targets_path})")
            if opts["traffic"] > 0:
                from rollout.traffic import TrafficGenerator, reference_of

                if "://" in champ["uri"]:
                    raise UsageError("--traffic needs a local champion bundle directory for its reference statistics")
                traffic_gen = TrafficGenerator(be.url, settings.model_name, reference_of(champ["uri"]), opts["traffic"])
                traffic_gen.__enter__()
            challenger_uri = None  # already started at 0 %
        else:
            # KServe: model_version labels are the bundle versions, i.e. the last path segment of the URI.
            current = be.status()
            champion_version = (current.champion or "").rstrip("/").rsplit("/", 1)[-1]
            challenger_version = chall["uri"].rstrip("/").rsplit("/", 1)[-1]
            challenger_uri = chall["uri"]
        url = opts["prometheus_url"] or (prom_server.url if prom_server else None)
        if not url:
            raise UsageError("--prometheus-url is required for the KServe backends")
        show(be.status())
        log = new_log(settings.home, _name(opts["name"]))
        typer.echo(f"event log   {log.path}")

        def on_promote() -> None:
            if opts["registry_sync"]:
                from rollout import registry

                moved = registry.promote(settings.model_name, chall["version"])
                typer.echo(f"registry: champion → version {moved['champion']}, previous → {moved['previous']}")

        def on_rollback(reason: str) -> None:
            if opts["registry_sync"]:
                from rollout import registry

                version = registry.reject(settings.model_name, reason, chall["version"])
                typer.echo(f"registry: version {version} tagged rollout_status=rejected")

        outcome = Analysis(
            be,
            Prometheus(url),
            cfg,
            champion_version,
            challenger_version,
            log,
            on_promote=on_promote,
            on_rollback=on_rollback,
            echo=typer.echo,
        ).run(challenger_uri)
        typer.echo(f"{outcome.decision}: {outcome.reason}")
        typer.echo(f"report      {write_report(log.path)[0]}")  # + a PNG, next to the event log
        if traffic_gen is not None:
            typer.echo(f"traffic: {dict(traffic_gen.codes)} by version {dict(traffic_gen.versions)}")
        if outcome.decision != "promoted":
            raise typer.Exit(3)
    finally:
        if traffic_gen is not None:
            traffic_gen.__exit__(None, None, None)
        if prom_server is not None:
            prom_server.stop()
        if backend == "local" and not opts["keep"]:
            be.down()


def cluster_metrics() -> MetricNames:
    """Gates in the cluster read the predictor's own series (there is no router there)."""
    return MetricNames(
        requests="housing_predictions_total",
        latency="housing_request_seconds",  # not exported per version yet: the latency gate reports "no data"
        errors="housing_request_errors_total",
        selector=os.environ.get("HOUSING_PROM_SELECTOR", ""),
    )


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
        settings = load_settings()
        be = make_backend("local", _name(name), "default")
        champ, chall = resolve_uris(champion_uri, challenger_uri)
        be.up(champ["uri"])
        be.start(chall["uri"], 0, shadow=fraction)
        import httpx

        httpx.post(f"{be.url}/router/shadow/reset")
        gen = None
        if traffic > 0:
            from rollout.traffic import TrafficGenerator, reference_of

            gen = TrafficGenerator(be.url, settings.model_name, reference_of(champ["uri"]), traffic).__enter__()
        try:
            time.sleep(duration)
        finally:
            if gen is not None:
                gen.__exit__(None, None, None)
        report = httpx.get(f"{be.url}/router/shadow").json()
        if not keep:
            be._router({"challenger": None, "weight": 0, "shadow": 0})
            state = be.load()
            from rollout.backends.local import stop_pid

            if state.get("challenger"):
                stop_pid(state["challenger"].get("pid"))
                state["challenger"] = None
                be.save(state)
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


def main() -> None:  # pragma: no cover
    app(prog_name="housing rollout")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
