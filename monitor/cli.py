"""``housing feedback`` and ``housing quality``: ground truth in, live accuracy out."""

from __future__ import annotations

import datetime as dt
import json
import warnings

import typer

from monitor.store import UnreadableFile, default_uri

LogOpt = typer.Option(None, "--log", help="The payload log (directory or s3://bucket/prefix); default: "
                      "HOUSING_PAYLOAD_LOG_URI, else <HOUSING_HOME>/payloads.")  # fmt: skip


def _warn_skipped() -> None:
    def show(message, category, *_args, **_kw) -> None:  # noqa: ANN001
        typer.echo(f"warning: {message}", err=True)

    warnings.showwarning = show  # type: ignore[assignment]
    warnings.simplefilter("always", UnreadableFile)


def feedback(
    file: str = typer.Argument(..., help="CSV or Parquet of request_id, actual [, row] (a path or s3:// URI)."),
    log: str = LogOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Join ground truth to the payload log; the joined rows go to <log>/labelled/.

    Exit 2 when the file cannot be used (a missing column is named).
    """
    from monitor.feedback import FeedbackError, join_feedback

    _warn_skipped()
    try:
        res = join_feedback(file, log or default_uri())
    except FeedbackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2))
        return
    typer.echo(
        f"{res.labels} labels: {res.joined} joined, {res.unknown} unknown request ids, {res.duplicates} duplicates "
        f"(not joined), {res.not_answered} refused requests (no prediction)"
    )
    for version, where in res.written.items():
        typer.echo(f"  {version}: {where}")


def _since(days: float | None, since: str | None) -> dt.datetime | None:
    if since:
        try:
            when = dt.datetime.fromisoformat(since)
        except ValueError:
            raise typer.BadParameter(f"--since: not an ISO date/time: {since!r}") from None
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days) if days else None


def quality(
    log: str = LogOpt,
    days: float = typer.Option(7.0, "--days", help="Window: the last DAYS days (0 = everything)."),
    since: str = typer.Option(None, "--since", help="Window start (ISO date/time, UTC); overrides --days."),
    version: list[str] = typer.Option(None, "--version", help="Only these model versions (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of the table."),
    serve: int = typer.Option(0, "--serve", help="Serve the figures as Prometheus gauges on this port (blocks)."),
) -> None:
    """Live accuracy per model version: RMSE (95 % CI), MAE, MAPE, R² of the labelled requests."""
    if serve:
        import time

        from monitor.exporter import serve as start

        start(log or default_uri(), days, serve)
        typer.echo(f"live accuracy gauges on :{serve}/metrics (window: {days:g} days)")
        while True:
            time.sleep(3600)
    from monitor.quality import quality as compute
    from monitor.quality import table
    from monitor.store import Store

    _warn_skipped()
    rows = compute(Store(log or default_uri()), _since(days, since), None, version or None)
    if as_json:
        typer.echo(json.dumps([q.to_dict() for q in rows], indent=2, default=str))
    elif not rows:
        typer.echo("no labelled rows in the window (housing feedback FILE joins ground truth)")
    else:
        typer.echo("\n".join(table(rows)))


drift_app = typer.Typer(help="Drift of live traffic against a bundle's training reference.", no_args_is_help=True)


@drift_app.command("report")
def drift_report(
    bundle: str = typer.Argument(..., help="The served bundle (a directory or a URI the predictor can load)."),
    log: str = LogOpt,
    days: float = typer.Option(7.0, "--days", help="Window: the last DAYS days (0 = everything)."),
    since: str = typer.Option(None, "--since", help="Window start (ISO date/time, UTC); overrides --days."),
    out: str = typer.Option(".", "--out", help="Directory for drift-<version>.html and .png."),
    as_json: bool = typer.Option(False, "--json", help="Also print the PSI per feature as JSON."),
) -> None:
    """Write the drift report (HTML + PNG) of the bundle's version over the window."""
    from pathlib import Path

    from monitor.drift_report import build, write_report
    from monitor.store import Store

    _warn_skipped()
    path = Path(bundle)
    if not path.is_dir():
        from predictor.core.storage import StorageError, download

        try:
            path = download(bundle)[0]
        except StorageError as exc:
            typer.echo(f"error: {bundle}: {exc}", err=True)
            raise typer.Exit(2) from None
    report = build(Store(log or default_uri()), Path(path), _since(days, since), None)
    html_path, png_path = write_report(report, Path(out))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    typer.echo(f"{report.rows:,} rows of {report.model_version}: {html_path} {png_path}")
