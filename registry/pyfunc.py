"""The MLflow ``pyfunc`` model of a bundle: its signature, its pinned requirements, and writing it.

The model itself is the "model from code" file :mod:`registry.pyfunc_model` (logged as code, run by
MLflow, never imported here), with the bundle as its one artifact.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bundle.manifest import Manifest

#: The "model from code" file of the pyfunc model (the predictor's loader; logged as code, not imported).
PYFUNC_CODE = Path(__file__).resolve().with_name("pyfunc_model.py")
#: The pyfunc's artifact key and model-config key (:mod:`registry.pyfunc_model` reads them here).
PYFUNC_BUNDLE_ARTIFACT = "bundle"
PYFUNC_DIGEST_CONFIG = "bundle_digest"
#: What the serving code needs from PyPI (pinned to the versions training ran with).
SERVING_REQUIREMENTS = ("mlflow", "numpy", "pandas")
#: MLflow column types of the schema's dtypes: each column keeps the type it had in the training data,
#: so ``boolean`` (JSON true/false) only for a column that was boolean there.
SIGNATURE_TYPES = {"float64": "double", "int64": "long", "bool": "boolean", "string": "string"}


def signature(manifest: Manifest) -> Any:
    """The MLflow signature of a bundle: one column per feature with its type, the predicted target out.

    A feature the bundle marks optional (it had missing values in training) is an optional column.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [
        ColSpec(SIGNATURE_TYPES[f["dtype"]], f["name"], required=bool(f.get("required", True)))
        for f in manifest.schema["features"]
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", manifest.target["name"])]))


def serving_requirements() -> list[str]:
    """``name==version`` of each package the pyfunc's serving code imports from PyPI."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in SERVING_REQUIREMENTS]


def save_pyfunc(path: Path, manifest: Manifest, bundle_dir: Path, digest: str, example: list[dict[str, Any]]) -> None:
    """Write the MLflow ``pyfunc`` model of a bundle to ``path`` (see :mod:`registry.pyfunc_model`)."""
    import shutil

    import mlflow.pyfunc
    import pandas as pd

    features = [f["name"] for f in manifest.schema["features"]]
    with tempfile.TemporaryDirectory(prefix="housing-pyfunc-") as tmp:
        staged = Path(tmp) / PYFUNC_BUNDLE_ARTIFACT  # MLflow names the artifact's folder after its source
        shutil.copytree(bundle_dir, staged)
        mlflow.pyfunc.save_model(
            str(path),
            python_model=str(PYFUNC_CODE),
            artifacts={PYFUNC_BUNDLE_ARTIFACT: str(staged)},
            model_config={PYFUNC_DIGEST_CONFIG: digest},
            signature=signature(manifest),
            input_example=pd.DataFrame(example, columns=features) if example else None,
            pip_requirements=serving_requirements(),
            metadata={
                "bundle_digest": digest,
                "bundle_version": manifest.model_version,
                "flavor": manifest.flavor,
                "booleans": "a numeric column accepts true/false only when it is boolean in the signature "
                "(it was boolean in the training data)",
            },
        )
