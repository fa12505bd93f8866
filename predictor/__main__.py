"""``python -m predictor``: serve a bundle with kserve.ModelServer (V1, V2 REST, V2 gRPC, /metrics).

Flags are KServe's own (``--http_port``, ``--grpc_port``, ``--workers``, …, see
``kserve.model_server.parser``) plus ``--model_dir``, ``--storage_uri``, ``--bundle_digest``
(or ``HOUSING_BUNDLE_DIGEST``), ``--max_batch_size`` and the guard's flags (``--api_keys_file``,
``--rate_limit``, ``--rate_burst``, ``--open_paths``, ``--max_body_bytes``; see
:mod:`predictor.guard`). A bundle that fails verification, or a key file without a key, is never
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

from housing.config import DEFAULT_MODEL_NAME
from predictor.kserve_import import without_kubernetes_client

# before anything imports kserve: the serving image has no kubernetes package
without_kubernetes_client()

if TYPE_CHECKING:
    from kserve.protocol.dataplane import DataPlane

    from predictor.guard import Guard, GuardConfig
    from predictor.model import HousingModel


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
        default=os.environ.get("HOUSING_BUNDLE_DIGEST"),
        help="Expected sha256 of bundle.json; anything else is refused.",
    )
    parser.add_argument("--max_batch_size", type=int, default=int(os.environ.get("HOUSING_MAX_BATCH_SIZE", "10000")))
    parser.add_argument("--drift_window", type=int, default=2000, help="Rows kept for the drift PSI.")
    _add_guard_arguments(parser)
    return parser


def _add_guard_arguments(parser: argparse.ArgumentParser) -> None:
    from predictor.guard import DEFAULT_MAX_BODY_BYTES, DEFAULT_OPEN_PATHS

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


def guard_config(args: argparse.Namespace) -> GuardConfig:
    """The guard's settings from the parsed flags."""
    from predictor.guard import GuardConfig

    return GuardConfig(
        api_keys_file=args.api_keys_file,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        open_paths=tuple(p.strip() for p in args.open_paths.split(",") if p.strip()),
        max_body_bytes=args.max_body_bytes,
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
    from predictor import multiproc
    from predictor.deferred_imports import defer_pydantic_v1

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
    from kserve.model_server import ModelServer

    from bundle.manifest import MANIFEST, BundleError
    from predictor.model import HousingModel
    from predictor.storage import StorageError, download

    log = logging.getLogger("predictor")
    model_dir, expected = args.model_dir, args.bundle_digest
    storage_uri = args.storage_uri
    if not storage_uri and not (Path(model_dir) / MANIFEST).is_file():
        storage_uri = os.environ.get("STORAGE_URI") or None
    try:
        from predictor.auth import AuthConfigError
        from predictor.guard import Guard

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
        model = HousingModel(args.model_name, model_dir, expected, args.max_batch_size, args.drift_window)
        model.load()
    except (AuthConfigError, BundleError, StorageError, ValueError, OSError) as exc:
        msg = f"predictor: refusing to serve: {exc}"
        log.error(msg)
        print(msg, file=sys.stderr, flush=True)
        return 2
    server = ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers)
    from predictor.v2_binary import CheckedDataPlane

    # binary V2 bodies are checked before they are decoded, in every server ModelServer.start
    # builds (REST workers too: KServe pickles the data plane into them)
    server.dataplane = CheckedDataPlane(server.registered_models)
    from predictor.workers import share_kserve_logging

    share_kserve_logging()
    _install_guard(model, guard, server.dataplane)
    gc.freeze()
    gc.enable()
    server.start([model])
    return 0


def _install_guard(model: HousingModel, guard: Guard, dataplane: DataPlane) -> None:
    """The REST middleware, handlers and V2 JSON infer route (in every REST worker too), and KServe's gRPC
    server with our interceptors."""
    import functools

    from kserve import model_server

    from predictor.grpc_server import GuardedGRPCServer
    from predictor.workers import RESTWorkers, WorkerSetup, counters, install_rest, rest_server

    install_rest(model_server.app, model, guard, dataplane)  # the app of a single-process REST server
    # ModelServer.start builds its servers from these module-level names; with --workers > 1 each
    # spawned REST worker imports a fresh app, so the setup is repeated there
    model_server.RESTServerMultiProcess = functools.partial(RESTWorkers, setup=WorkerSetup(model.name, guard.config))
    model_server.RESTServer = rest_server
    model_server.GRPCServer = functools.partial(GuardedGRPCServer, guard=guard, count_error=counters(model)[0])
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
