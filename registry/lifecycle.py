"""The lifecycle of a registered bundle in MLflow: registered (training), promoted or rejected (rollouts).

A registered version points at its bundle through the tags ``bundle_uri`` and ``bundle_digest``
(:data:`common.config.TAG_BUNDLE_URI`, :data:`~common.config.TAG_BUNDLE_DIGEST`). The
aliases carry the champion/challenger lifecycle:

- register (training): a run with params, metrics, plots, its datasets (``mlflow.data``: the
  whole dataset and the evaluation rows, each with name, digest, source and schema) and the bundle
  logged as an MLflow ``pyfunc`` model (:func:`registry.pyfunc.save_pyfunc`: built from
  :mod:`registry.pyfunc_model`, signature from the feature schema, an input example from the
  evaluation rows, pinned requirements of the serving code); then a version of that model tagged
  with the bundle URI and digest, alias ``challenger``, and ``champion`` only when the model has none. Nothing else here
  moves ``champion`` except promote.
- resolve: the versions behind every alias (rollouts); what the predictor asks,
  ``models:/NAME@ALIAS`` → bundle URI + digest, is :mod:`registry.resolve`.
- promote: ``challenger`` → ``champion``; the old champion → ``previous``; the challenger alias is
  removed; the version is tagged ``rollout_status=promoted``.
- reject: ``champion`` is untouched; the challenger version is tagged ``rollout_status=rejected``
  and ``rollout_reason=<reason>``, and the ``challenger`` alias is removed so the rejected version
  is not picked up again by the next rollout.

MLflow is imported only inside the functions, so importing this module costs nothing. HTTP
retries are kept short (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``MLFLOW_HTTP_REQUEST_TIMEOUT`` default
to 2 and 20 s for training unless set) so a server that goes away mid-run fails in seconds.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle.manifest import Manifest
from common.config import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    ALIAS_PREVIOUS,
    TAG_BUNDLE_DIGEST,
    TAG_BUNDLE_URI,
    load_settings,
)
from common.urls import redact
from registry.pyfunc import save_pyfunc
from registry.resolve import RegistryError, VersionInfo, client, short_error, version_info

TAG_STATUS = "rollout_status"
TAG_REASON = "rollout_reason"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_EXPERIMENT = "housing"
#: Where the MLflow model sits in a run's artifacts; the registered version's source.
MODEL_ARTIFACT_PATH = "model"


@dataclass
class Registration:
    """What :meth:`Registry.register` created."""

    version: str
    run_id: str
    aliases: list[str] = field(default_factory=list)


@dataclass
class LoggedData:
    """The data a training run logs with ``mlflow.data``: the dataset and its evaluation rows."""

    name: str
    source: str
    frame: Any  # pandas DataFrame: features + target
    target: str
    digest: str  # the bundle's data digest (also the MLflow dataset digest)
    evaluation: Any  # pandas DataFrame: the evaluation rows (features + target)
    evaluation_digest: str
    example: list[dict[str, Any]]  # a few raw evaluation rows without the target: the input example


def _by_alias(mlflow: Any, model: str, alias: str) -> VersionInfo | None:
    from mlflow.exceptions import MlflowException

    try:
        mv = mlflow.get_model_version_by_alias(model, alias)
    except MlflowException:
        return None
    return version_info(mv)


# -- resolve ---------------------------------------------------------------------------------
def resolve(model: str, tracking_uri: str | None = None) -> dict[str, VersionInfo | None]:
    """The versions behind the champion, challenger and previous aliases (None when unset)."""
    mlflow = client(tracking_uri)
    return {alias: _by_alias(mlflow, model, alias) for alias in (ALIAS_CHAMPION, ALIAS_CHALLENGER, ALIAS_PREVIOUS)}


def champion(model: str, tracking_uri: str | None = None) -> VersionInfo | None:
    """The version behind ``champion`` (None when the model or the alias does not exist yet)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client(tracking_uri).get_model_version_by_alias(model, ALIAS_CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise RegistryError(f"cannot read the champion of {model!r} from MLflow ({short_error(exc)})") from exc
    except Exception as exc:  # noqa: BLE001 - connection errors
        raise RegistryError(f"cannot read the champion of {model!r} from MLflow ({short_error(exc)})") from exc
    return version_info(mv)


def referenced_bundle_uris(tracking_uri: str | None = None) -> set[str]:
    """Every ``bundle_uri`` a registered version of any model points at (for pruning)."""
    mlflow = client(tracking_uri)
    uris: set[str] = set()
    token = None
    while True:
        page = mlflow.search_model_versions(max_results=200, page_token=token)
        uris.update(mv.tags.get(TAG_BUNDLE_URI) for mv in page if (mv.tags or {}).get(TAG_BUNDLE_URI))
        token = page.token
        if not token:
            return uris


# -- promote / reject ------------------------------------------------------------------------
def _challenger_version(mlflow: Any, model: str, verb: str) -> str:
    """The version the ``challenger`` alias points at; LookupError naming ``verb`` when none."""
    challenger = _by_alias(mlflow, model, ALIAS_CHALLENGER)
    if challenger is None:
        raise LookupError(f"model {model!r} has no {ALIAS_CHALLENGER!r} alias to {verb}")
    return challenger.version


def _drop_challenger_alias(mlflow: Any, model: str, version: str) -> None:
    current = _by_alias(mlflow, model, ALIAS_CHALLENGER)
    if current is not None and current.version == version:
        mlflow.delete_registered_model_alias(model, ALIAS_CHALLENGER)


def promote(model: str, version: str | None = None, tracking_uri: str | None = None) -> dict[str, str | None]:
    """Move the aliases for a promotion; returns ``{"champion": v, "previous": old or None}``."""
    mlflow = client(tracking_uri)
    if version is None:
        version = _challenger_version(mlflow, model, "promote")
    old = _by_alias(mlflow, model, ALIAS_CHAMPION)
    if old is not None and old.version != version:
        mlflow.set_registered_model_alias(model, ALIAS_PREVIOUS, old.version)
    mlflow.set_registered_model_alias(model, ALIAS_CHAMPION, version)
    _drop_challenger_alias(mlflow, model, version)
    mlflow.set_model_version_tag(model, version, TAG_STATUS, "promoted")
    return {"champion": version, "previous": old.version if old and old.version != version else None}


def reject(model: str, reason: str, version: str | None = None, tracking_uri: str | None = None) -> str:
    """Tag the challenger rejected with ``reason`` (champion untouched); returns its version."""
    mlflow = client(tracking_uri)
    if version is None:
        version = _challenger_version(mlflow, model, "reject")
    champion = _by_alias(mlflow, model, ALIAS_CHAMPION)
    if champion is not None and champion.version == version:
        raise ValueError(f"version {version} is the champion; refusing to reject it")
    mlflow.set_model_version_tag(model, version, TAG_STATUS, "rejected")
    mlflow.set_model_version_tag(model, version, TAG_REASON, reason[:5000])
    _drop_challenger_alias(mlflow, model, version)
    return version


# -- quality gate -----------------------------------------------------------------------------
TAG_QUALITY_GATE = "quality_gate"


def log_quality_gate(
    model: str,
    champion_version: str | None,
    challenger_version: str | None,
    result: dict[str, Any],
    tracking_uri: str | None = None,
) -> str:
    """Log an offline quality gate as an MLflow run (both versions' figures); tag the challenger version.

    Returns the run id.
    """
    from mlflow.entities import Metric, Param, RunTag

    settings = load_settings()
    uri = tracking_uri or settings.tracking_uri
    mlflow = client(uri)
    exp_id = experiment_id(mlflow, uri, settings.home)
    run = mlflow.create_run(exp_id, run_name=f"quality gate {model} v{champion_version} → v{challenger_version}")
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"{role}_{k}", float(v), now, 0)
        for role in ("champion", "challenger")
        for k, v in (result.get(role) or {}).items()
        if math.isfinite(float(v))
    ]
    params = {
        "model": model,
        "champion_version": champion_version,
        "challenger_version": challenger_version,
        "tolerance": result.get("tolerance"),
        "rows": result.get("rows"),
        "rows_digest": result.get("rows_digest"),
        "same_rows": result.get("same_rows"),
    }
    mlflow.log_batch(
        run.info.run_id,
        metrics=metrics,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[
            RunTag(TAG_QUALITY_GATE, str(result.get("decision"))),
            RunTag("reason", str(result.get("reason"))[:5000]),
        ],
    )
    mlflow.set_terminated(run.info.run_id, "FINISHED")
    if challenger_version:
        mlflow.set_model_version_tag(model, challenger_version, TAG_QUALITY_GATE, str(result.get("decision")))
    return run.info.run_id


# -- register --------------------------------------------------------------------------------
def flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    """Nested params → ``a.b.c`` keys with short string values (long lists summarised)."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)) and len(value) > 8:
        out[prefix] = f"[{len(value)} values]"
    else:
        out[prefix] = str(value)[:500]


def _dataset_inputs(data: LoggedData) -> list[Any]:
    """``mlflow.data`` inputs: the dataset (context training) and the evaluation rows (context evaluation)."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    try:
        source: Any = resolve_dataset_source(data.source)
    except Exception:  # noqa: BLE001 - a source MLflow has no resolver for is still recorded
        source = CodeDatasetSource({"source": data.source})
    out = []
    for name, frame, digest, context in (
        (data.name, data.frame, data.digest, "training"),
        (f"{data.name}-evaluation", data.evaluation, data.evaluation_digest, "evaluation"),
    ):
        dataset = mlflow.data.from_pandas(frame, source=source, targets=data.target, name=name, digest=digest)
        out.append(DatasetInput(dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return out


def experiment_id(mlflow: Any, tracking_uri: str, home: Path) -> str:
    """The experiment runs go to (``MLFLOW_EXPERIMENT_NAME`` or ``housing``), created when missing."""
    name = os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not tracking_uri.startswith(("http://", "https://")):  # embedded: artifacts next to the sqlite file
        location = (Path(home) / "mlartifacts").resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


class Registry:
    """The MLflow side of a training run: connectivity check, then run + registered version."""

    def __init__(self, tracking_uri: str, home: Path) -> None:
        self.tracking_uri = tracking_uri
        self.home = Path(home)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

    @property
    def remote(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def check(self) -> None:
        """Raise :class:`RegistryError` when the tracking server cannot be reached."""
        if self.remote:
            url = self.tracking_uri.rstrip("/") + "/health"
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - configured URL
                    if resp.status != 200:
                        raise RegistryError(
                            f"MLflow tracking server {redact(self.tracking_uri)} unhealthy (HTTP {resp.status})"
                        )
            except urllib.error.HTTPError as exc:
                raise RegistryError(
                    f"MLflow tracking server {redact(self.tracking_uri)} unhealthy (HTTP {exc.code})"
                ) from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise RegistryError(
                    f"MLflow tracking server {redact(self.tracking_uri)} unreachable: {reason}"
                ) from exc
        elif self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)

    def register(
        self,
        model_name: str,
        manifest: Manifest,
        bundle_dir: Path,
        bundle_uri: str,
        digest: str,
        plots: list[Path],
        params: dict[str, Any],
        metrics: dict[str, float],
        description: str,
        data: LoggedData | None = None,
    ) -> Registration:
        """Log the run and register the version; undo what it can and raise RegistryError on any failure."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException

        mlflow = None
        run_id = None
        created_version = None
        try:
            mlflow = client(self.tracking_uri)
            exp_id = experiment_id(mlflow, self.tracking_uri, self.home)
            run = mlflow.create_run(
                exp_id,
                run_name=manifest.model_version,
                tags={"housing.model_version": manifest.model_version, "housing.flavor": manifest.flavor},
            )
            run_id = run.info.run_id
            flat: dict[str, str] = {}
            flatten("", params, flat)
            now = int(time.time() * 1000)
            mlflow.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(float(v))],
                params=[Param(k, v) for k, v in flat.items()],
                tags=[RunTag("housing.bundle_uri", bundle_uri), RunTag("housing.bundle_digest", digest)],
            )
            if data is not None:
                mlflow.log_inputs(run_id, datasets=_dataset_inputs(data))
            for plot in plots:
                mlflow.log_artifact(run_id, str(plot), "plots")
            with tempfile.TemporaryDirectory(prefix="housing-pyfunc-") as tmp:
                model_dir = Path(tmp) / MODEL_ARTIFACT_PATH
                save_pyfunc(model_dir, manifest, bundle_dir, digest, data.example if data else [])
                mlflow.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)

            try:
                mlflow.get_registered_model(model_name)
            except MlflowException:
                try:
                    mlflow.create_registered_model(
                        model_name,
                        description="Housing-price models: MLflow pyfunc models of bundles (bundle_uri tags)",
                    )
                except MlflowException as exc:  # created concurrently
                    if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                        raise
            source = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT_PATH}"
            mv = mlflow.create_model_version(
                model_name,
                source=source,
                run_id=run_id,
                tags={
                    TAG_BUNDLE_URI: bundle_uri,
                    TAG_BUNDLE_DIGEST: digest,
                    "flavor": manifest.flavor,
                    "bundle_version": manifest.model_version,
                },
                description=description,
            )
            created_version = mv.version
            aliases = [ALIAS_CHALLENGER]
            if _by_alias(mlflow, model_name, ALIAS_CHAMPION) is None:
                aliases.append(ALIAS_CHAMPION)
            for alias in aliases:
                mlflow.set_registered_model_alias(model_name, alias, mv.version)
            mlflow.set_terminated(run_id, "FINISHED")
            return Registration(version=str(mv.version), run_id=run_id, aliases=aliases)
        except Exception as exc:  # noqa: BLE001 - undo, then one clear line
            if mlflow is not None:
                if created_version is not None:
                    try:
                        mlflow.delete_model_version(model_name, created_version)
                    except Exception:  # noqa: BLE001,S110
                        pass
                if run_id is not None:
                    try:
                        mlflow.set_terminated(run_id, "FAILED")
                    except Exception:  # noqa: BLE001,S110
                        pass
            raise RegistryError(
                f"MLflow registration at {redact(self.tracking_uri)} failed: {short_error(exc)}"
            ) from exc
