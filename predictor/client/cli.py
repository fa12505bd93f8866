"""``housing serve`` and ``housing predict`` (mounted by ``housing/cli.py``).

``housing serve`` with no source serves the embedded default's champion
(``models:/<model>@champion`` in the MLflow registry that ``load_settings()`` points at).
``housing predict`` sends one V1 or V2 request from a JSON file, inline JSON or stdin and
prints the answer.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from common.config import (
    ALIAS_CHAMPION,
    API_KEY_ENV,
    API_KEY_HEADER,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    load_settings,
)


def serve_argv(
    storage_uri: str | None,
    model_dir: str | None,
    model_name: str | None,
    http_port: int,
    grpc_port: int,
    bundle_digest: str | None,
    max_batch_size: int,
    workers: int,
) -> list[str]:
    """The ``python -m predictor`` arguments for ``housing serve``."""
    settings = load_settings()
    name = model_name or settings.model_name
    argv = ["--model_name", name, "--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    argv += ["--max_batch_size", str(max_batch_size), "--workers", str(workers)]
    if model_dir:
        argv += ["--model_dir", model_dir]
    else:
        argv += ["--storage_uri", storage_uri or f"models:/{settings.model_name}@{ALIAS_CHAMPION}"]
    if bundle_digest:
        argv += ["--bundle_digest", bundle_digest]
    return argv


def serve(
    storage_uri: str | None = typer.Option(
        None, "--storage-uri", "-s", help="s3://…, file://…, a path, or models:/NAME@ALIAS. Default: the champion."
    ),
    model_dir: str | None = typer.Option(None, "--model-dir", help="A local bundle directory (instead of a URI)."),
    model_name: str | None = typer.Option(None, "--model-name", help="Name on the endpoints (default: housing)."),
    http_port: int = typer.Option(DEFAULT_HTTP_PORT, "--http-port"),
    grpc_port: int = typer.Option(DEFAULT_GRPC_PORT, "--grpc-port"),
    bundle_digest: str | None = typer.Option(None, "--bundle-digest", help="Refuse any other bundle.json sha256."),
    max_batch_size: int = typer.Option(10_000, "--max-batch-size"),
    workers: int = typer.Option(1, "--workers"),
) -> None:
    """Serve a model bundle with KServe's ModelServer (V1, V2 REST, V2 gRPC, /metrics)."""
    argv = serve_argv(storage_uri, model_dir, model_name, http_port, grpc_port, bundle_digest, max_batch_size, workers)
    typer.echo(f"python -m predictor {' '.join(argv)}", err=True)
    # KServe parses sys.argv when kserve.model_server is imported: give it a clean process
    os.execv(sys.executable, [sys.executable, "-m", "predictor", *argv])


def _load_payload(data: str) -> Any:
    if data == "-":
        text = sys.stdin.read()
    elif data.lstrip().startswith(("{", "[")):
        text = data
    else:
        path = Path(data)
        if not path.is_file():
            raise typer.BadParameter(f"{data}: neither inline JSON nor a file")
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}") from None


def to_v2(payload: Any) -> dict[str, Any]:
    """V1-style instances (objects) → V2 columnar tensors; V2 bodies pass through."""
    if isinstance(payload, dict) and "inputs" in payload:
        return payload
    instances = payload.get("instances", [payload]) if isinstance(payload, dict) else payload
    if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
        raise typer.BadParameter("V2 conversion needs {feature: value} objects (or send a V2 body with 'inputs')")
    from predictor.client.v2_request import v2_body

    return v2_body(instances)


def endpoint(url: str, protocol: str, model_name: str, explain: bool) -> str:
    url = url.rstrip("/")
    if "/v1/" in url or "/v2/" in url:
        return url
    if protocol == "v2":
        return f"{url}/v2/models/{model_name}/infer"
    return f"{url}/v1/models/{model_name}:{'explain' if explain else 'predict'}"


def predict(
    data: str = typer.Argument(..., help="JSON: inline, a file path, or - for stdin."),
    url: str = typer.Option(
        f"http://127.0.0.1:{DEFAULT_HTTP_PORT}", "--url", "-u", help="Server (or full endpoint) URL."
    ),
    protocol: str = typer.Option("v1", "--protocol", "-p", help="v1 or v2."),
    model_name: str | None = typer.Option(None, "--model-name"),
    explain: bool = typer.Option(False, "--explain", help="V1 :explain instead of :predict."),
    timeout: float = typer.Option(30.0, "--timeout"),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar=API_KEY_ENV, show_envvar=True, help="Sent as X-API-Key (never printed)."
    ),
) -> None:
    """Send a V1 or V2 prediction request and print the answer."""
    import httpx

    if protocol not in ("v1", "v2"):
        raise typer.BadParameter("--protocol must be v1 or v2")
    payload = _load_payload(data)
    if protocol == "v2":
        payload = to_v2(payload)
    target = endpoint(url, protocol, model_name or load_settings().model_name, explain)
    try:
        headers = {API_KEY_HEADER: api_key} if api_key else {}
        response = httpx.post(target, json=payload, timeout=timeout, headers=headers)
    except httpx.HTTPError as exc:
        typer.echo(f"error: {target}: {exc}", err=True)
        raise typer.Exit(2) from None
    flagged = response.headers.get("x-housing-out-of-range")
    if flagged:
        typer.echo(f"warning: out of the training range: {flagged}", err=True)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    typer.echo(json.dumps(body, indent=2) if not isinstance(body, str) else body)
    if response.status_code >= 400:
        raise typer.Exit(1)
