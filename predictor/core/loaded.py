"""A verified bundle turned into something that predicts: schema, evaluator, transform."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bundle import ubjson
from bundle.manifest import REFERENCE_FILE, Manifest, read_verified
from bundle.model_files import load_forest, load_linear, load_xgboost
from bundle.schema import FeatureSchema
from predictor.core.fastpath import LinearModel, TreeEnsemble, compile_forest, compile_xgboost, compile_xgboost_model
from predictor.core.treeshap import TreeShap

TRANSFORMS = ("log", "none")
log = logging.getLogger("predictor")


@dataclass
class LoadedBundle:
    """Everything needed to serve one bundle."""

    directory: Path
    manifest: Manifest
    digest: str
    schema: FeatureSchema
    evaluator: TreeEnsemble | LinearModel
    reference: dict[str, Any] | None
    transform: str
    _booster: Any = None  # xgboost.Booster: agreement checks, or a legacy (non-UBJSON) model file
    explainer: TreeShap | None = None  # tree ensembles whose model file records node covers

    @property
    def booster(self) -> Any:
        """The XGBoost Booster, for checks against the library (imported lazily: serving never needs it)."""
        if self._booster is None and self.flavor == "xgboost":
            import xgboost

            booster = xgboost.Booster(model_file=str(self.directory / self.manifest.model_file))
            booster.set_param({"nthread": 1})
            self._booster = booster
        return self._booster

    @property
    def flavor(self) -> str:
        return self.manifest.flavor

    @property
    def n_features(self) -> int:
        return len(self.schema.features)

    def predict_model_scale(self, X: np.ndarray) -> np.ndarray:
        return self.evaluator.predict(X)

    def to_price(self, y: np.ndarray) -> np.ndarray:
        return np.exp(y) if self.transform == "log" else y

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Prices (the target transform undone) for an encoded (n, F) matrix."""
        if isinstance(self.evaluator, TreeEnsemble):  # the exponential in the same compiled pass
            return self.evaluator.predict(X, exp=self.transform == "log")
        y = self.evaluator.predict(X)
        return np.exp(y, out=y) if self.transform == "log" else y

    def contributions(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions (n, F) and bias (n,) on the model's scale; they sum to it.

        Tree ensembles: path-dependent TreeSHAP over the packed trees (``predictor/core/treeshap.py``),
        the numbers of XGBoost's ``pred_contribs`` and shap's TreeExplainer. Linear: ``coef × x``.
        A forest bundle written before node covers were recorded: path attribution from node means.
        """
        X = np.asarray(X, dtype=np.float64)
        if self.explainer is not None:
            return self.explainer.contributions(X)
        if self.flavor == "linear":
            model = self.evaluator
            assert isinstance(model, LinearModel)
            return X * model.coef, np.full(X.shape[0], model.intercept)
        if self.flavor != "random_forest":
            raise RuntimeError(f"{self.manifest.model_file}: no node covers recorded, so no TreeSHAP explanation")
        # forest without covers: Saabas path attribution from node means
        ens = self.evaluator
        assert isinstance(ens, TreeEnsemble)
        values, feats = ens.nodes["leaf"], ens.nodes["feat"]
        out = np.zeros(X.shape, dtype=np.float64)
        bias = np.zeros(X.shape[0], dtype=np.float64)
        for i, x in enumerate(X):
            for path in ens.leaf_paths(x):
                bias[i] += values[path[0]]
                for parent, child in zip(path[:-1], path[1:], strict=True):
                    out[i, feats[parent]] += values[child] - values[parent]
        return out * ens.scale, bias * ens.scale


def _explainer(evaluator: TreeEnsemble | LinearModel, model_file: str) -> TreeShap | None:
    if not isinstance(evaluator, TreeEnsemble):
        return None
    try:
        return TreeShap.from_ensemble(evaluator)
    except ValueError as exc:  # prediction does not need covers: serve, explain the old way (or refuse)
        log.warning("%s: no TreeSHAP explanations (%s)", model_file, exc)
        return None


def load_bundle(directory: Path | str, expected_digest: str | None = None) -> LoadedBundle:
    """Verify every digest (and the pinned bundle digest), then load the model files."""
    directory = Path(directory)
    verified = read_verified(directory, expected_digest)  # each file read once: parsed as it was hashed
    manifest, digest, contents = verified.manifest, verified.digest, verified.contents
    schema = FeatureSchema.from_dict(manifest.schema)
    transform = str((manifest.target or {}).get("transform", "none"))
    if transform not in TRANSFORMS:
        raise ValueError(f"target transform {transform!r} is not supported (expected one of {TRANSFORMS})")
    model_bytes = contents[manifest.model_file]
    booster = None
    if manifest.flavor == "xgboost":
        try:  # our UBJSON reader: no xgboost import at start-up
            evaluator: TreeEnsemble | LinearModel = compile_xgboost_model(load_xgboost(model_bytes))
        except (ubjson.UBJSONError, KeyError, TypeError, ValueError):
            import xgboost  # not UBJSON after all (e.g. legacy binary): let the library read it

            booster = xgboost.Booster()
            booster.load_model(bytearray(model_bytes))
            booster.set_param({"nthread": 1})
            evaluator = compile_xgboost(booster)
    elif manifest.flavor == "random_forest":
        evaluator = compile_forest(load_forest(model_bytes))
    else:
        evaluator = LinearModel.from_json(load_linear(model_bytes))
    n = len(schema.features)
    width = evaluator.n_features if isinstance(evaluator, TreeEnsemble) else len(evaluator.coef)
    if width != n:
        raise ValueError(f"{manifest.model_file}: model expects {width} features but the schema has {n}")
    reference = None
    if REFERENCE_FILE in contents:
        reference = json.loads(contents[REFERENCE_FILE])
    explainer = _explainer(evaluator, manifest.model_file)
    return LoadedBundle(directory, manifest, digest, schema, evaluator, reference, transform, booster, explainer)
