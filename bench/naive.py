"""The naive reference: a scikit-learn Pipeline over a pandas DataFrame, built from a bundle.

This is how a model is usually served (and what MLServer's sklearn runtime does): decode the
request into a DataFrame, run the preprocessing step, call the estimator, undo the target
transform. It serves the same bundle as our predictor, so the comparison is like for like.
Only numpy/scikit-learn/xgboost and ``bundle.schema`` are imported, so MLServer's own
virtualenv can unpickle it with the repository on PYTHONPATH.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from bundle.manifest import MANIFEST, MODEL_FILES
from bundle.model_files import load_linear
from bundle.schema import FeatureSchema


class TargetInverse(BaseEstimator, RegressorMixin):
    """Wraps a fitted pipeline and undoes the bundle's target transform (log → exp)."""

    def __init__(self, pipeline: Pipeline, transform: str = "none") -> None:
        self.pipeline = pipeline
        self.transform = transform

    def fit(self, X, y=None):  # noqa: ANN001, ANN201, N803 - sklearn API; already fitted
        """No-op: the wrapped pipeline comes fitted from the bundle."""
        return self

    def predict(self, X):  # noqa: ANN001, ANN201, N803 - sklearn API
        """Predictions in price units."""
        y = self.pipeline.predict(X)
        return np.exp(y) if self.transform == "log" else y


def naive_pipeline(bundle_dir: Path) -> TargetInverse:
    """A sklearn Pipeline (schema preprocessing + the bundle's model) over pandas input."""
    manifest = json.loads((Path(bundle_dir) / MANIFEST).read_text())
    schema = FeatureSchema.from_dict(manifest["schema"])
    flavor = manifest["flavor"]
    if flavor == "xgboost":
        import xgboost as xgb

        model = xgb.XGBRegressor()
        model.load_model(str(Path(bundle_dir) / MODEL_FILES["xgboost"]))
    elif flavor == "linear":
        from sklearn.linear_model import LinearRegression

        params = load_linear(Path(bundle_dir) / MODEL_FILES["linear"])
        model = LinearRegression()
        model.coef_ = np.asarray(params["coef"], dtype=np.float64)
        model.intercept_ = float(params["intercept"])
        model.n_features_in_ = len(model.coef_)
    else:
        raise ValueError(f"flavor {flavor!r}: the naive reference supports xgboost and linear bundles")
    pipeline = Pipeline([("encode", FunctionTransformer(schema.encode_frame)), ("model", model)])
    return TargetInverse(pipeline, manifest["target"].get("transform", "none"))
