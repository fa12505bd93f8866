"""``python -m predictor``: serve a bundle with kserve.ModelServer (V1, V2 REST, V2 gRPC, /metrics).

Flags are KServe's own (``--http_port``, ``--grpc_port``, ``--workers``, …, see
``kserve.model_server.parser``) plus ``--model_dir``, ``--storage_uri``, ``--bundle_digest``
(or ``HOUSING_BUNDLE_DIGEST``) and ``--max_batch_size``. A bundle that fails verification is
never served: the process logs the reason and exits with status 2 (in Kubernetes the pod never
becomes ready and its log says why).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from housing.config import DEFAULT_MODEL_NAME


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kserve import ModelServer

    from bundle.manifest import MANIFEST, BundleError
    from predictor.model import HousingModel
    from predictor.storage import StorageError, download

    log = logging.getLogger("predictor")
    model_dir, expected = args.model_dir, args.bundle_digest
    storage_uri = args.storage_uri
    if not storage_uri and not (Path(model_dir) / MANIFEST).is_file():
        storage_uri = os.environ.get("STORAGE_URI") or None
    try:
        if storage_uri:
            path, registry_digest = download(storage_uri)
            model_dir = str(path)
            expected = expected or registry_digest
        model = HousingModel(args.model_name, model_dir, expected, args.max_batch_size, args.drift_window)
        model.load()
    except (BundleError, StorageError, ValueError, OSError) as exc:
        msg = f"predictor: refusing to serve: {exc}"
        log.error(msg)
        print(msg, file=sys.stderr, flush=True)
        return 2
    server = ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers)
    _install_validation_handler(model)
    server.start([model])
    return 0


def _install_validation_handler(model) -> None:  # noqa: ANN001
    """Map FastAPI's request-validation errors (malformed V2 JSON) to 400 like InvalidInput; count them."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve import model_server

    async def handler(_request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
        if model.metrics is not None:
            model.metrics.error("v2", "RequestValidationError")
        return JSONResponse(status_code=400, content={"error": "; ".join(parts) or "invalid request"})

    model_server.app.add_exception_handler(RequestValidationError, handler)


if __name__ == "__main__":
    sys.exit(main())
