"""MLflow alias moves for the champion/challenger lifecycle.

- promote: ``challenger`` → ``champion``; the old champion → ``previous``; the challenger alias is
  removed; the version is tagged ``rollout_status=promoted``.
- reject: ``champion`` is untouched; the challenger version is tagged ``rollout_status=rejected``
  and ``rollout_reason=<reason>``, and the ``challenger`` alias is removed so the rejected version
  is not picked up again by the next rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from housing.config import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    ALIAS_PREVIOUS,
    TAG_BUNDLE_DIGEST,
    TAG_BUNDLE_URI,
    load_settings,
)

TAG_STATUS = "rollout_status"
TAG_REASON = "rollout_reason"


@dataclass
class VersionInfo:
    version: str
    bundle_uri: str | None
    digest: str | None
    tags: dict[str, str]


def client(tracking_uri: str | None = None) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri or load_settings().tracking_uri)


def _by_alias(mlflow: Any, model: str, alias: str) -> VersionInfo | None:
    from mlflow.exceptions import MlflowException

    try:
        mv = mlflow.get_model_version_by_alias(model, alias)
    except MlflowException:
        return None
    tags = dict(mv.tags or {})
    return VersionInfo(str(mv.version), tags.get(TAG_BUNDLE_URI), tags.get(TAG_BUNDLE_DIGEST), tags)


def resolve(model: str, tracking_uri: str | None = None) -> dict[str, VersionInfo | None]:
    """The versions behind the champion, challenger and previous aliases (None when unset)."""
    mlflow = client(tracking_uri)
    return {alias: _by_alias(mlflow, model, alias) for alias in (ALIAS_CHAMPION, ALIAS_CHALLENGER, ALIAS_PREVIOUS)}


def _challenger_version(mlflow: Any, model: str, verb: str) -> str:
    """The version the ``challenger`` alias points at; LookupError naming ``verb`` when none."""
    challenger = _by_alias(mlflow, model, ALIAS_CHALLENGER)
    if challenger is None:
        raise LookupError(f"model {model!r} has no {ALIAS_CHALLENGER!r} alias to {verb}")
    return challenger.version


def promote(model: str, version: str | None = None, tracking_uri: str | None = None) -> dict[str, str | None]:
    """Move the aliases for a promotion; returns ``{"champion": v, "previous": old or None}``."""
    mlflow = client(tracking_uri)
    if version is None:
        version = _challenger_version(mlflow, model, "promote")
    old = _by_alias(mlflow, model, ALIAS_CHAMPION)
    if old is not None and old.version != version:
        mlflow.set_registered_model_alias(model, ALIAS_PREVIOUS, old.version)
    mlflow.set_registered_model_alias(model, ALIAS_CHAMPION, version)
    current = _by_alias(mlflow, model, ALIAS_CHALLENGER)
    if current is not None and current.version == version:
        mlflow.delete_registered_model_alias(model, ALIAS_CHALLENGER)
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
    current = _by_alias(mlflow, model, ALIAS_CHALLENGER)
    if current is not None and current.version == version:
        mlflow.delete_registered_model_alias(model, ALIAS_CHALLENGER)
    return version
