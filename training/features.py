"""Feature preprocessing, fitted on the training split only and stored as a FeatureSchema.

* Numeric columns (ints, floats, booleans as 0/1) go into the model as they are. Missing values
  are filled with a statistic of the training split chosen by ``impute``: ``median`` (default),
  ``mean``, ``most_frequent`` or ``constant`` (0).
* Categorical columns (strings, pandas categoricals) are target-encoded with scikit-learn's
  :class:`~sklearn.preprocessing.TargetEncoder` on the (transformed) target. Missing values
  become the category ``"missing"`` (or the most frequent category with ``most_frequent``).
  The models are trained on the encoder's *cross-fitted* ``fit_transform`` output (no target
  leakage into the training rows); the schema stores the full-fit ``encodings_`` as the
  feature's ``categories`` table and ``target_mean_`` as ``unknown``, so
  ``FeatureSchema.encode_frame`` replays ``TargetEncoder.transform`` exactly, for holdout rows
  and at serving time alike.
* Cross-validation refits all of this inside each fold (``training.pipeline.make_folds``): the
  fold's models train on the fold's cross-fitted encoding and are scored on the validation part
  encoded through the fold's schema, exactly as holdout rows and requests are.
* Every feature records its fill value as ``default``; a feature that had missing values in
  the training split is optional (``required=False``), the others are required. Numeric
  features also record min/max and deciles (``quantiles``) for range checks and drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bundle.schema import CATEGORICAL, NUMERIC, Feature, FeatureSchema
from training.errors import TrainingError

IMPUTE_STRATEGIES = ("median", "mean", "most_frequent", "constant")
MISSING_CATEGORY = "missing"
DECILES = np.linspace(0.0, 1.0, 11)


@dataclass
class FittedFeatures:
    """The fitted schema, the training matrix and what produced it."""

    schema: FeatureSchema
    X_train: np.ndarray  # cross-fitted encoding of the training split (what models train on)
    encoder: Any  # the fitted TargetEncoder (None without categorical columns)
    categorical: list[str]
    fill: dict[str, Any]

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Impute and stringify like training did (for checks against the encoder)."""
        return prepare(frame, self.schema, self.fill)


def is_categorical(series: pd.Series) -> bool:
    """Strings and pandas categoricals are categorical; numbers and booleans are numeric."""
    return not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def _dtype_name(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int64"
    if pd.api.types.is_numeric_dtype(series):
        return "float64"
    return "string"


def _as_str(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), None).map(lambda v: v if v is None else str(v))


def _numeric_fill(values: np.ndarray, impute: str) -> float:
    finite = values[~np.isnan(values)]
    if impute == "constant" or finite.size == 0:
        return 0.0
    if impute == "mean":
        return float(finite.mean())
    if impute == "most_frequent":
        uniq, counts = np.unique(finite, return_counts=True)
        return float(uniq[np.argmax(counts)])
    return float(np.median(finite))


def _categorical_fill(values: pd.Series, impute: str) -> str:
    present = values.dropna()
    if impute == "most_frequent" and not present.empty:
        counts = present.value_counts()
        return str(sorted(counts[counts == counts.max()].index)[0])
    return MISSING_CATEGORY


def _cv_args(n_splits: int, seed: int) -> dict[str, Any]:
    """Shuffled K-fold cross-fitting, spelled the way the installed scikit-learn wants it."""
    import sklearn
    from sklearn.model_selection import KFold

    major, minor = (int(p) for p in sklearn.__version__.split(".")[:2])
    if (major, minor) >= (1, 9):  # shuffle/random_state deprecated in favour of a splitter
        return {"cv": KFold(n_splits=n_splits, shuffle=True, random_state=seed)}
    return {"cv": n_splits, "shuffle": True, "random_state": seed}


def prepare(frame: pd.DataFrame, schema: FeatureSchema, fill: dict[str, Any]) -> pd.DataFrame:
    """Fill missing values and turn categorical columns into strings, as training does."""
    out = {}
    for feat in schema.features:
        col = frame[feat.name]
        if feat.kind == NUMERIC:
            out[feat.name] = col.astype("float64").fillna(fill[feat.name])
        else:
            out[feat.name] = _as_str(col).fillna(fill[feat.name]).astype(object)
    return pd.DataFrame(out, index=frame.index)


def fit_features(
    train: pd.DataFrame, y: np.ndarray, impute: str = "median", seed: int = 42, cv: int = 5
) -> FittedFeatures:
    """Fit imputation, target encoding and ranges on the training split; see module docstring."""
    if impute not in IMPUTE_STRATEGIES:
        raise TrainingError(f"unknown impute strategy {impute!r}: expected one of {', '.join(IMPUTE_STRATEGIES)}")
    from sklearn.preprocessing import TargetEncoder

    features: list[Feature] = []
    fill: dict[str, Any] = {}
    for name in train.columns:
        col = train[name]
        missing = bool(col.isna().any())
        if is_categorical(col):
            value: Any = _categorical_fill(_as_str(col), impute)
            feat = Feature(name=name, kind=CATEGORICAL, dtype="string", required=not missing, default=value)
        else:
            raw = col.astype("float64").to_numpy()
            value = _numeric_fill(raw, impute)
            finite = raw[~np.isnan(raw)]
            feat = Feature(
                name=name,
                kind=NUMERIC,
                dtype=_dtype_name(col),
                required=not missing,
                default=value,
                min=float(finite.min()) if finite.size else None,
                max=float(finite.max()) if finite.size else None,
                quantiles=[float(q) for q in np.quantile(finite, DECILES)] if finite.size else [],
            )
        fill[name] = value
        features.append(feat)
    schema = FeatureSchema(features)
    prepared = prepare(train, schema, fill)
    X = np.empty((len(train), len(features)), dtype=np.float64)
    categorical = [f.name for f in features if f.kind == CATEGORICAL]
    for j, feat in enumerate(features):
        if feat.kind == NUMERIC:
            X[:, j] = prepared[feat.name].to_numpy(dtype=np.float64)
    encoder = None
    if categorical:
        n_splits = max(2, min(cv, len(train)))
        encoder = TargetEncoder(target_type="continuous", smooth="auto", **_cv_args(n_splits, seed))
        encoded = encoder.fit_transform(prepared[categorical].to_numpy(dtype=object), np.asarray(y, dtype=np.float64))
        for k, name in enumerate(categorical):
            feat = schema.by_name[name]
            feat.categories = {
                str(cat): float(code) for cat, code in zip(encoder.categories_[k], encoder.encodings_[k], strict=True)
            }
            feat.unknown = float(encoder.target_mean_)
            X[:, schema.index[name]] = encoded[:, k]
    return FittedFeatures(schema=schema, X_train=X, encoder=encoder, categorical=categorical, fill=fill)
