"""``python -m predictor``: serve a bundle with kserve.ModelServer (V1, V2 REST, V2 gRPC, /metrics).

Flags are KServe's own (``--http_port``, ``--grpc_port``, ``--workers``, …, see
``kserve.model_server.parser``) plus ``--model_dir``, ``--storage_uri``, ``--bundle_digest``
(or ``HOUSING_BUNDLE_DIGEST``), ``--max_batch_size`` and the guard's flags (``--api_keys_file``,
``--rate_limit``, ``--rate_burst``, ``--open_paths``, ``--max_body_bytes``; see
:mod:`predictor.guard.policy`). A bundle that fails verification, or a key file without a key, is never
served: the process logs the reason and exits with status 2 (in Kubernetes the pod never becomes
ready and its log says why).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from common.config import BUNDLE_DIGEST_ENV, DEFAULT_MODEL_NAME, PAYLOAD_LOG_ENV
from predictor.transport import deferred_imports

deferred_imports.install()  # before anything imports kserve (the serving image has no kubernetes package)

#: Seconds each server may take to drain on SIGTERM (KServe's own default grace is 30).
DEFAULT_DRAIN_SECONDS = 20

if TYPE_CHECKING:
    from kserve.protocol.dataplane import DataPlane

    from predictor.guard.policy import Guard, GuardConfig
    from predictor.observe.payload_log import PayloadConfig
    from predictor.observe.request_logs import RequestLogs
    from predictor.transport.model import HousingModel


def build_parser() -> argparse.ArgumentParser:
    from kserve import model_server

    parser = argparse.ArgumentParser(prog="python -m predictor", parents=[model_server.parser])
    parser.set_defaults(model_name=os.environ.get("HOUSING_MODEL_NAME") or DEFAULT_MODEL_NAME)
    parser.add_argument("--model_dir", default="/mnt/models", help="Local bundle directory (KServe mounts it here).")
    parser.add_argument(
        "--storage_uri",
        default=None,
        help="Bundle URI to download first: s3://…, file://…, a path, or models:/NAME@ALIAS (MLflow). "
        "Default: STORAGE_URI from the environment, used only when --model_dir holds no bundle "
        "(KServe's storage-initializer has normally filled it already).",
    )
    parser.add_argument(
        "--bundle_digest",
        default=os.environ.get(BUNDLE_DIGEST_ENV) or None,
        help="Expected sha256 of bundle.json; anything else is refused.",
    )
    parser.add_argument("--max_batch_size", type=int, default=int(os.environ.get("HOUSING_MAX_BATCH_SIZE", "10000")))
    parser.add_argument("--drift_window", type=int, default=2000, help="Rows kept for the drift PSI.")
    parser.add_argument(
        "--drain_seconds",
        type=int,
        default=int(os.environ.get("HOUSING_DRAIN_SECONDS") or DEFAULT_DRAIN_SECONDS),
        help="On SIGTERM, how long each server (REST, then gRPC) may take to finish the requests in flight; "
        "the model is unloaded only after both. The pod's terminationGracePeriodSeconds must cover "
        "preStop + 2 x this.",
    )
    parser.add_argument(
        "--metrics_port",
        type=int,
        default=int(os.environ.get("HOUSING_METRICS_PORT") or 0),
        help="Serve /metrics on this port only (the HTTP port then answers it with 404), so a route to the "
        "HTTP port never exposes the series; 0 (default): /metrics on the HTTP port.",
    )
    _add_guard_arguments(parser)
    _add_payload_arguments(parser)
    from predictor.observe import request_logs

    request_logs.add_arguments(parser)
    return parser


def _add_payload_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("payload log (off by default)")
    group.add_argument(
        "--payload_log_uri",
        default=env(PAYLOAD_LOG_ENV) or None,
        help="Write every answered request as Parquet rows under this directory or s3://bucket/prefix "
        "(asynchronously; never blocks a request). Default: HOUSING_PAYLOAD_LOG_URI, else off.",
    )
    group.add_argument(
        "--payload_log_sample",
        type=float,
        default=float(env("HOUSING_PAYLOAD_LOG_SAMPLE") or 1.0),
        help="Share of requests logged, 0..1 (default 1).",
    )
    group.add_argument(
        "--payload_log_drop",
        default=env("HOUSING_PAYLOAD_LOG_DROP") or "",
        help="Comma-separated feature names never written (privacy).",
    )
    group.add_argument("--payload_log_flush_seconds", type=float, default=10.0, help="Write at least this often.")
    group.add_argument("--payload_log_flush_rows", type=int, default=5000, help="… or when this many requests wait.")


def payload_config(args: argparse.Namespace) -> PayloadConfig | None:
    """The payload log's settings from the parsed flags; None when it is off."""
    from predictor.observe.payload_log import PayloadConfig

    if not args.payload_log_uri:
        return None
    return PayloadConfig(
        uri=args.payload_log_uri,
        sample=args.payload_log_sample,
        drop=tuple(n.strip() for n in args.payload_log_drop.split(",") if n.strip()),
        flush_seconds=args.payload_log_flush_seconds,
        flush_rows=args.payload_log_flush_rows,
        max_queue=max(50_000, args.payload_log_flush_rows),
    )


def _add_guard_arguments(parser: argparse.ArgumentParser) -> None:
    from predictor.guard.policy import (
        AUTH_FAILURE_BURST,
        AUTH_FAILURE_RATE,
        DEFAULT_BODY_TIMEOUT_SECONDS,
        DEFAULT_MAX_BODY_BYTES,
        DEFAULT_MAX_CONCURRENCY,
        DEFAULT_MAX_INFLIGHT_BODY_BYTES,
        DEFAULT_OPEN_PATHS,
    )

    env = os.environ.get
    group = parser.add_argument_group("guard (off by default)")
    group.add_argument(
        "--api_keys_file",
        default=env("HOUSING_API_KEYS_FILE") or None,
        help="File with one API key per line (re-read when it changes); requests then need X-API-Key or "
        "Authorization: Bearer. Default: HOUSING_API_KEYS_FILE, else no keys.",
    )
    group.add_argument(
        "--rate_limit",
        type=float,
        default=float(env("HOUSING_RATE_LIMIT") or 0),
        help="Requests per second per client (API key, else address); 0 = off. Over it: 429 / RESOURCE_EXHAUSTED.",
    )
    group.add_argument("--rate_burst", type=float, default=None, help="Bucket size (default: one second of rate).")
    group.add_argument(
        "--auth_failure_burst",
        type=float,
        default=AUTH_FAILURE_BURST,
        help="With API keys: failed authentications a client address may make at once; then "
        "--auth_failure_rate per second, beyond → 429 before the key is compared.",
    )
    group.add_argument("--auth_failure_rate", type=float, default=AUTH_FAILURE_RATE, help="See --auth_failure_burst.")
    group.add_argument(
        "--trusted_proxies",
        default=env("HOUSING_TRUSTED_PROXIES") or "",
        help="Comma-separated CIDRs of proxies (the gateway) whose X-Forwarded-For names the client for rate "
        "limits and failed-authentication limits; default none: the connection's peer is the client.",
    )
    group.add_argument(
        "--open_paths",
        default=",".join(DEFAULT_OPEN_PATHS),
        help="Comma-separated REST paths that need no key and are not rate limited (* = one path segment).",
    )
    group.add_argument(
        "--max_body_bytes",
        type=int,
        default=int(env("HOUSING_MAX_BODY_BYTES") or DEFAULT_MAX_BODY_BYTES),
        help="Larger request bodies are refused with 413 before they are read.",
    )
    group.add_argument(
        "--max_inflight_body_bytes",
        type=int,
        default=int(env("HOUSING_MAX_INFLIGHT_BODY_BYTES") or 0) or None,
        help="Request-body bytes being read, parsed or answered at once per process (REST and gRPC); a body "
        "that does not fit now → 503 / RESOURCE_EXHAUSTED with Retry-After. Parsed JSON takes up to ~31x its "
        f"size. Default: {DEFAULT_MAX_INFLIGHT_BODY_BYTES}, or --max_body_bytes when that is larger.",
    )
    group.add_argument(
        "--max_concurrency",
        type=int,
        default=int(env("HOUSING_MAX_CONCURRENCY") or DEFAULT_MAX_CONCURRENCY),
        help="REST requests being processed (bodies received; probes not counted) and gRPC RPCs in flight per "
        "process; over it 503 / RESOURCE_EXHAUSTED. uvicorn also caps connections at 16 times this.",
    )
    group.add_argument(
        "--max_queued_rpcs",
        type=int,
        default=int(env("HOUSING_MAX_QUEUED_RPCS")) if env("HOUSING_MAX_QUEUED_RPCS") else None,
        help="gRPC calls that may wait for a slot of --max_concurrency per process, served in turn; beyond → "
        "RESOURCE_EXHAUSTED naming both limits. 0: refuse at once over the cap. Default: 16 times "
        "--max_concurrency (1,024).",
    )
    group.add_argument(
        "--body_timeout_seconds",
        type=float,
        default=float(env("HOUSING_BODY_TIMEOUT_SECONDS") or DEFAULT_BODY_TIMEOUT_SECONDS),
        help="A request body must arrive within this many seconds; else 408 (a slow sender holds no slot).",
    )


def guard_config(args: argparse.Namespace) -> GuardConfig:
    """The guard's settings from the parsed flags."""
    from predictor.guard.policy import DEFAULT_MAX_INFLIGHT_BODY_BYTES, GuardConfig

    return GuardConfig(
        api_keys_file=args.api_keys_file,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        open_paths=tuple(p.strip() for p in args.open_paths.split(",") if p.strip()),
        trusted_proxies=tuple(c.strip() for c in args.trusted_proxies.split(",") if c.strip()),
        auth_failure_burst=args.auth_failure_burst,
        auth_failure_rate=args.auth_failure_rate,
        max_body_bytes=args.max_body_bytes,
        max_inflight_body_bytes=args.max_inflight_body_bytes
        or max(DEFAULT_MAX_INFLIGHT_BODY_BYTES, args.max_body_bytes),
        max_concurrency=args.max_concurrency,
        max_queued_rpcs=args.max_queued_rpcs,
        body_timeout_seconds=args.body_timeout_seconds,
    )


def _workers(argv: list[str] | None) -> int:
    """``--workers`` alone, read before anything imports prometheus_client (KServe does)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--workers", type=int, default=1)
    try:
        return pre.parse_known_args(argv)[0].workers
    except SystemExit:  # a bad value: the full parser says so
        return 1


def main(argv: list[str] | None = None) -> int:
    from predictor.observe import multiproc
    from predictor.transport.deferred_imports import defer_pydantic_v1

    defer_pydantic_v1()  # FastAPI asks of every route whether its types are pydantic v1 models
    multiproc.prepare(_workers(argv))  # several processes: one /metrics summed over all of them
    # start-up allocates ~10^5 objects that live as long as the process, and little garbage: no
    # collections until it serves (a tenth of the start's CPU time), and later ones skip them
    gc.disable()
    try:
        return _serve(build_parser().parse_args(argv))
    finally:
        gc.enable()


def _serve(args: argparse.Namespace) -> int:
    from bundle.manifest import MANIFEST, BundleError
    from predictor.core.storage import StorageError, download
    from predictor.transport.model import HousingModel

    log = logging.getLogger("predictor")
    model_dir, expected = args.model_dir, args.bundle_digest
    storage_uri = args.storage_uri
    if not storage_uri and not (Path(model_dir) / MANIFEST).is_file():
        storage_uri = os.environ.get("STORAGE_URI") or None
    try:
        from predictor.guard.auth import AuthConfigError
        from predictor.guard.policy import Guard

        guard = Guard(guard_config(args))
        if guard.buckets is not None and args.workers > 1:
            raise ValueError(
                "--rate_limit needs --workers 1: each REST worker would keep its own token buckets, "
                "so a client could get up to --workers times the rate (scale with replicas instead)"
            )
        if storage_uri:
            path, registry_digest = download(storage_uri)
            model_dir = str(path)
            expected = expected or registry_digest
            gc.collect()  # boto3 / MLflow leave garbage behind
        payload = payload_config(args)
        model = HousingModel(args.model_name, model_dir, expected, args.max_batch_size, args.drift_window, payload)
        model.load()
        if args.metrics_port:
            if args.metrics_port in (args.http_port, args.grpc_port) or not 0 < args.metrics_port < 65536:
                raise ValueError(f"--metrics_port {args.metrics_port}: must be a free port of its own")
            from predictor.observe.metrics_port import serve

            serve(args.metrics_port)
            log.info("metrics: /metrics on port %d only", args.metrics_port)
    except (AuthConfigError, BundleError, StorageError, ValueError, OSError) as exc:
        msg = f"predictor: refusing to serve: {exc}"
        log.error(msg)
        print(msg, file=sys.stderr, flush=True)
        return 2
    from predictor.observe import request_logs
    from predictor.transport.shutdown import DrainingModelServer

    logs = request_logs.from_args(args)
    server = DrainingModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        grace_period=args.drain_seconds,
        enable_latency_logging=logs.trace and args.enable_latency_logging,
        # KServe's own defaults come from its import-time parse of sys.argv, which reads --access_log
        # as an abbreviation of --access_log_format: this parser's value, where it is exact
        access_log_format=args.access_log_format,
    )
    from predictor.transport import kserve_patches
    from predictor.transport.v1_rest import ServingDataPlane

    # binary V2 bodies are checked before they are decoded, and :explain echoes no request header, in
    # every server ModelServer.start builds (REST workers too: KServe pickles the data plane into them)
    kserve_patches.use_dataplane(server, ServingDataPlane(server.registered_models))
    from predictor.transport.workers import share_kserve_logging

    share_kserve_logging()
    request_logs.apply(logs)
    log.info("per-request logs: %s", logs.describe())
    _install_guard(model, guard, server.dataplane, logs, metrics_here=not args.metrics_port)
    gc.freeze()
    gc.enable()
    server.start([model])
    return 0


def _install_guard(
    model: HousingModel, guard: Guard, dataplane: DataPlane, logs: RequestLogs, metrics_here: bool = True
) -> None:
    """The REST middleware, handlers and V2 JSON infer route (in every REST worker too), and KServe's gRPC
    server with our interceptors; ``logs``: the per-request lines written; ``metrics_here`` False: the HTTP
    port's ``/metrics`` answers 404."""
    import functools

    from kserve import model_server

    from predictor.guard.policy import CONNECTIONS_PER_SLOT
    from predictor.transport import kserve_patches
    from predictor.transport.grpc_server import CallGuard, GuardedGRPCServer
    from predictor.transport.workers import (
        RESTWorkers,
        WorkerSetup,
        counters,
        install_rest,
        request_counter,
        rest_server,
    )

    install_rest(model_server.app, model, guard, dataplane, logs)  # the app of a single-process REST server
    if not metrics_here:  # ahead of KServe's /metrics route, added when the server starts: the first match wins
        from predictor.observe.metrics_port import not_here

        model_server.app.add_api_route("/metrics", not_here, methods=["GET"])
    # ModelServer.start builds its servers from these module-level names; with --workers > 1 each
    # spawned REST worker imports a fresh app, so the setup is repeated there
    limit = guard.config.max_concurrency * CONNECTIONS_PER_SLOT  # a backstop: the guard caps requests
    setup = WorkerSetup(model.name, guard.config, metrics_here, logs)
    kserve_patches.replace_servers(
        rest_workers=functools.partial(RESTWorkers, setup=setup, limit_concurrency=limit),
        rest_server=functools.partial(rest_server, limit_concurrency=limit),
        grpc_server=functools.partial(
            GuardedGRPCServer,
            calls=CallGuard(
                guard,
                count_error=counters(model)[0],
                count_request=request_counter(model),
                refused=model.log_refused,
                access_log=logs.access,  # KServe's access line: one INFO line per RPC
            ),
        ),
    )
    if guard.active:
        log = logging.getLogger("predictor")
        log.info(
            "guard: api keys %s, rate limit %s, open paths %s",
            f"on ({len(guard.keys)} keys)" if guard.keys is not None else "off",
            f"{guard.config.rate_limit:g}/s per client" if guard.buckets is not None else "off",
            ",".join(guard.config.open_paths),
        )


if __name__ == "__main__":
    sys.exit(main())
