"""``housing bundles``: housekeeping of the bundle store (``prune``)."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from common.config import load_settings
from training.errors import TrainingError
from training.prune import DEFAULT_GRACE_HOURS, delete, find_orphans, stamp

EXIT_ERROR = 2

app = typer.Typer(
    name="bundles",
    help="The bundle store (HOUSING_BUNDLE_ROOT: s3://bucket, s3://bucket/prefix or a directory).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.command()
def prune(
    root: Annotated[
        str | None,
        typer.Option(
            help="Where to look (default: HOUSING_BUNDLE_ROOT, else s3://models with S3, or ./.housing/bundles)."
        ),
    ] = None,
    grace_hours: Annotated[
        float, typer.Option(help="Never touch a bundle younger than this (a training run may be uploading it).")
    ] = DEFAULT_GRACE_HOURS,
    yes: Annotated[bool, typer.Option("--yes", help="Delete them (default: a dry run that only lists).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List bundles that no registered MLflow version references; delete them with --yes.

    Looks at <root>/<model>/<version> folders (where training writes), reads every version of
    every registered model from MLflow (MLFLOW_TRACKING_URI) and lists the folders none of
    them points at (bundle_uri tag), including partial uploads without bundle.json. A folder
    younger than --grace-hours is listed as kept and never deleted.

    Examples:

      housing bundles prune                       # dry run: what would go

      housing bundles prune --yes                 # delete the orphans older than 24 h

      housing bundles prune --root s3://models --grace-hours 2 --yes

    Exit status 0; 2 when S3 or MLflow cannot be read (nothing is deleted then).
    """
    from registry.lifecycle import referenced_bundle_uris

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # a server that is down fails in seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    settings = load_settings()
    where = root or settings.bundle_root
    if grace_hours < 0:
        typer.echo(f"error: --grace-hours must be 0 or more, got {grace_hours}", err=True)
        raise typer.Exit(EXIT_ERROR)
    try:
        try:
            referenced = referenced_bundle_uris(settings.tracking_uri)
        except Exception as exc:  # noqa: BLE001 - never delete when the registry cannot be read
            reason = " ".join(str(exc).split())[:300]
            raise TrainingError(f"cannot read the MLflow registry at {settings.tracking_uri}: {reason}") from exc
        orphans = find_orphans(where, referenced)
        rows = []
        for c in orphans:
            action = "kept (younger than the grace period)" if c.age_hours < grace_hours else "would delete"
            if yes and c.age_hours >= grace_hours:
                delete(c)
                action = "deleted"
            rows.append({"uri": c.uri, "age_hours": round(c.age_hours, 3), "files": c.files, "complete": c.complete})
            rows[-1]["action"] = action
    except TrainingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        typer.echo(json.dumps({"root": where, "referenced": len(referenced), "unreferenced": rows}))
        return
    typer.echo(f"{where}: {len(rows)} bundle(s) no registered version references ({len(referenced)} referenced)")
    for row in rows:
        partial = "" if row["complete"] else ", partial: no bundle.json"
        typer.echo(f"  {row['uri']}  age {stamp(row['age_hours'])}, {row['files']} files{partial}  → {row['action']}")
    if rows and not yes and any(r["action"] == "would delete" for r in rows):
        typer.echo("dry run: nothing deleted; pass --yes to delete")
