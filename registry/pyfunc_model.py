"""The MLflow ``pyfunc`` model of a bundle — an MLflow "model from code" file, never imported by serving.

Training logs every registered version as an MLflow model built from this file
(:func:`registry.pyfunc.save_pyfunc`) with the bundle as its one artifact, so
``mlflow.pyfunc.load_model("models:/NAME@champion")`` and ``mlflow models serve`` work. Loading
goes through the predictor's own reader, :func:`predictor.core.loaded.load_bundle`: every digest is
verified (the bundle digest pinned in the model config) before a byte of the model is read.
Predicting applies the bundle's coercion contract row by row (:mod:`bundle.schema`), so a value
the predictor refuses is refused here with the same message, and the answers are the predictor's.

The KServe predictor does not use this module: it reads the bundle itself.
"""

from __future__ import annotations

import math
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from predictor.core.loaded import LoadedBundle, load_bundle
from registry.pyfunc import PYFUNC_BUNDLE_ARTIFACT, PYFUNC_DIGEST_CONFIG


def _value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


class BundleModel(PythonModel):
    """Prices for raw feature rows, from a verified bundle."""

    bundle: LoadedBundle

    def load_context(self, context: Any) -> None:
        digest = (context.model_config or {}).get(PYFUNC_DIGEST_CONFIG)
        self.bundle = load_bundle(context.artifacts[PYFUNC_BUNDLE_ARTIFACT], expected_digest=digest)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        schema = self.bundle.schema
        X = np.empty((len(frame), len(schema.features)), dtype=np.float64)
        for i, row in enumerate(frame.to_dict("records")):
            schema.encode_mapping({k: _value(v) for k, v in row.items()}, X[i])
        return pd.DataFrame({self.bundle.manifest.target["name"]: self.bundle.predict(X)})


mlflow.models.set_model(BundleModel())
