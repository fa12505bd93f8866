"""A registered champion and challenger, as training leaves them, for the rollout tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, TAG_BUNDLE_URI


def register_pair(tracking: str, model: str, champion: Path, challenger: Path) -> Any:
    """Register ``model`` in the MLflow at ``tracking`` with version 1 = ``champion`` (alias champion)
    and version 2 = ``challenger`` (alias challenger), each tagged with its bundle URI; the client."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    client.create_registered_model(model)
    for uri in (champion, challenger):
        client.create_model_version(model, source=str(uri), tags={TAG_BUNDLE_URI: str(uri)})
    client.set_registered_model_alias(model, ALIAS_CHAMPION, "1")
    client.set_registered_model_alias(model, ALIAS_CHALLENGER, "2")
    return client
