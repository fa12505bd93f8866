"""MLflow: one run per training (params, metrics, plots, the bundle) and a registered version.

The new version is tagged with the bundle URI and digest (``housing.config.TAG_BUNDLE_URI``,
``TAG_BUNDLE_DIGEST``) and gets the alias ``challenger``; it also gets ``champion`` when the
registered model has no champion yet. Nothing else here ever moves ``champion``.

Connectivity is checked before any training (:meth:`Registry.check`), so an unreachable
tracking server fails the run before anything is uploaded. HTTP retries are kept short
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``MLFLOW_HTTP_REQUEST_TIMEOUT`` default to 2 and 20 s here
unless set) so a server that goes away mid-run fails in seconds, not minutes.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle.manifest import Manifest
from housing.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, TAG_BUNDLE_DIGEST, TAG_BUNDLE_URI
from training.errors import TrainingError

EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_EXPERIMENT = "housing"


@dataclass
class Registration:
    version: str
    run_id: str
    aliases: list[str] = field(default_factory=list)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)) and len(value) > 8:
        out[prefix] = f"[{len(value)} values]"
    else:
        out[prefix] = str(value)[:500]


class Registry:
    """The MLflow side of a training run."""

    def __init__(self, tracking_uri: str, home: Path) -> None:
        self.tracking_uri = tracking_uri
        self.home = Path(home)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

    @property
    def remote(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def check(self) -> None:
        """Fail with a TrainingError when the tracking server cannot be reached."""
        if self.remote:
            url = self.tracking_uri.rstrip("/") + "/health"
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - configured URL
                    if resp.status != 200:
                        raise TrainingError(
                            f"MLflow tracking server {self.tracking_uri} unhealthy (HTTP {resp.status})"
                        )
            except urllib.error.HTTPError as exc:
                raise TrainingError(f"MLflow tracking server {self.tracking_uri} unhealthy (HTTP {exc.code})") from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise TrainingError(f"MLflow tracking server {self.tracking_uri} unreachable: {reason}") from exc
        elif self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _experiment(self, client: Any) -> str:
        name = os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if not self.remote:  # embedded: keep artifacts next to the sqlite file, not in ./mlruns
            location = (self.home / "mlartifacts").resolve().as_uri()
        return client.create_experiment(name, artifact_location=location)

    def register(
        self,
        cfg: Any,
        manifest: Manifest,
        bundle_dir: Path,
        bundle_uri: str,
        digest: str,
        plots: list[Path],
        leaderboard: list[dict[str, Any]],
    ) -> Registration:
        """Log the run and register the version; undo what it can and raise on any failure."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException

        client = None
        run_id = None
        created_version = None
        try:
            client = self._client()
            exp_id = self._experiment(client)
            run = client.create_run(
                exp_id,
                run_name=manifest.model_version,
                tags={"housing.model_version": manifest.model_version, "housing.flavor": manifest.flavor},
            )
            run_id = run.info.run_id
            params: dict[str, str] = {}
            _flatten(
                "",
                {
                    "dataset": cfg.dataset,
                    "target": manifest.target["name"],
                    "target_transform": manifest.target["transform"],
                    "flavor": manifest.flavor,
                    "candidates": ",".join(cfg.candidates),
                    "split": cfg.split,
                    "test_size": cfg.test_size,
                    "seed": cfg.seed,
                    "cv_folds": manifest.metrics["cv"].get("folds", cfg.cv_folds),
                    "selection": manifest.params.get("selection", ""),
                    "impute": cfg.impute,
                    "optuna_trials": cfg.optuna_trials,
                    "fast": cfg.fast,
                    "data_digest": manifest.data_digest,
                    "bundle_uri": bundle_uri,
                    "bundle_digest": digest,
                    "model_version": manifest.model_version,
                    "model": manifest.params.get("model", {}),
                },
                params,
            )
            metrics = {f"cv_{k}": v for k, v in manifest.metrics["cv"].items() if isinstance(v, (int, float))}
            metrics.update({f"holdout_{k}": v for k, v in manifest.metrics["holdout"].items()})
            for row in leaderboard:
                metrics[f"cv_score_{row['candidate']}"] = row["cv"]["rmse"]  # model scale
            import math
            import time

            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(float(v))],
                params=[Param(k, v) for k, v in params.items()],
                tags=[RunTag("housing.bundle_uri", bundle_uri), RunTag("housing.bundle_digest", digest)],
            )
            for plot in plots:
                client.log_artifact(run_id, str(plot), "plots")
            client.log_artifacts(run_id, str(bundle_dir), "bundle")

            name = cfg.model_name
            try:
                client.get_registered_model(name)
            except MlflowException:
                try:
                    client.create_registered_model(
                        name, description="Housing-price models (bundles in bundle_uri tags)"
                    )
                except MlflowException as exc:  # created concurrently
                    if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                        raise
            source = f"{run.info.artifact_uri.rstrip('/')}/bundle"
            mv = client.create_model_version(
                name,
                source=source,
                run_id=run_id,
                tags={
                    TAG_BUNDLE_URI: bundle_uri,
                    TAG_BUNDLE_DIGEST: digest,
                    "flavor": manifest.flavor,
                    "bundle_version": manifest.model_version,
                },
                description=f"{manifest.flavor} on {cfg.dataset}; bundle {bundle_uri}",
            )
            created_version = mv.version
            aliases = [ALIAS_CHALLENGER]
            try:
                client.get_model_version_by_alias(name, ALIAS_CHAMPION)
            except MlflowException:
                aliases.append(ALIAS_CHAMPION)
            for alias in aliases:
                client.set_registered_model_alias(name, alias, mv.version)
            client.set_terminated(run_id, "FINISHED")
            return Registration(version=str(mv.version), run_id=run_id, aliases=aliases)
        except Exception as exc:  # noqa: BLE001 - undo, then one clear line
            if client is not None:
                if created_version is not None:
                    try:
                        client.delete_model_version(cfg.model_name, created_version)
                    except Exception:  # noqa: BLE001,S110
                        pass
                if run_id is not None:
                    try:
                        client.set_terminated(run_id, "FAILED")
                    except Exception:  # noqa: BLE001,S110
                        pass
            raise TrainingError(f"MLflow registration at {self.tracking_uri} failed: {_short(exc)}") from exc
