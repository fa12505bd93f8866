"""Settings shared by every part of housing: names, ports, locations, environment.

This module is the one place where defaults live (model name, ports, bucket, the embedded
home directory). Everything else imports from here; nothing copies a literal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Registered model name and the KServe model name used by default.
DEFAULT_MODEL_NAME = "housing"
#: KServe ModelServer defaults (the same numbers KServe uses).
DEFAULT_HTTP_PORT = 8080
DEFAULT_GRPC_PORT = 8081
#: The chart's port for the predictor's /metrics (``--metrics_port``): apart from the HTTP port a
#: gateway route reaches, so the series are never served to clients; scrapers use this one.
METRICS_PORT = 8082
#: Bucket that holds bundles when S3 is in use.
DEFAULT_BUCKET = "models"
#: The payload log's location (the predictor's --payload_log_uri default; what housing feedback/quality read).
PAYLOAD_LOG_ENV = "HOUSING_PAYLOAD_LOG_URI"

#: The demo's canary (``housing rollout run`` flags), chosen from the power curve in
#: rollout/README.md; ``python -m rollout.power`` simulates these very settings.
DEMO_CANARY: dict[str, Any] = {
    "steps": "10,50,100",
    "interval": 8.0,
    "min_requests": 20,
    "traffic": 40.0,
    "shadow": 1.0,
    "max_mean_shift": 0.03,
}
#: MLflow aliases used for the champion/challenger lifecycle.
ALIAS_CHAMPION = "champion"
ALIAS_CHALLENGER = "challenger"
ALIAS_PREVIOUS = "previous"
#: Model-version tags written at registration.
TAG_BUNDLE_URI = "bundle_uri"
TAG_BUNDLE_DIGEST = "bundle_digest"
#: The predictor's environment variable pinning bundle.json's sha256 (its --bundle_digest default):
#: the chart and the KServe rollout backends set it to the registered digest.
BUNDLE_DIGEST_ENV = "HOUSING_BUNDLE_DIGEST"
#: The request header carrying an API key (``Authorization: Bearer`` works too), and the
#: environment variable clients (``housing predict``, rollout traffic) read their key from.
API_KEY_HEADER = "X-API-Key"
API_KEY_ENV = "HOUSING_API_KEY"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration: environment first, embedded defaults otherwise."""

    home: Path
    tracking_uri: str
    bundle_root: str
    s3_endpoint: str | None
    model_name: str

    @property
    def embedded(self) -> bool:
        """True when neither a tracking server nor S3 is configured."""
        return self.tracking_uri.startswith("sqlite:") and not self.bundle_root.startswith("s3://")


def s3_endpoint_from_env() -> str | None:
    """The S3 endpoint URL from AWS_ENDPOINT_URL, MLFLOW_S3_ENDPOINT_URL or S3_ENDPOINT."""
    for var in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "S3_ENDPOINT"):
        value = os.environ.get(var)
        if value:
            if var == "S3_ENDPOINT" and "://" not in value:
                use_https = os.environ.get("S3_USE_HTTPS", "0") in ("1", "true")
                value = ("https://" if use_https else "http://") + value
            return value
    return None


def s3_client(connect_timeout: float, read_timeout: float) -> Any:
    """A boto3 S3 client for the configured endpoint (:func:`s3_endpoint_from_env`): path-style addressing,
    SigV4, two attempts, these timeouts. A fresh session each time: boto3's default session caches the first
    credentials it saw."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
    )
    return boto3.session.Session().client("s3", endpoint_url=s3_endpoint_from_env(), config=config)


def load_settings() -> Settings:
    """Read the environment into :class:`Settings`.

    HOUSING_HOME (default ``./.housing``) holds the embedded MLflow sqlite database and
    local bundles. HOUSING_BUNDLE_ROOT overrides where bundles go (a directory or an
    ``s3://bucket[/prefix]``); with an S3 endpoint set it defaults to ``s3://models``.
    """
    home = Path(os.environ.get("HOUSING_HOME", ".housing")).resolve()
    endpoint = s3_endpoint_from_env()
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    default_root = f"s3://{DEFAULT_BUCKET}" if endpoint else str(home / "bundles")
    root = os.environ.get("HOUSING_BUNDLE_ROOT") or default_root
    name = os.environ.get("HOUSING_MODEL_NAME") or DEFAULT_MODEL_NAME
    return Settings(home=home, tracking_uri=tracking, bundle_root=root, s3_endpoint=endpoint, model_name=name)
