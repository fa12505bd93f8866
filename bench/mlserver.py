"""The peer: Seldon MLServer 1.7 (mlserver-sklearn) serving the same bundle as a sklearn pipeline.

MLServer pins pandas < 3, so it lives in its own virtualenv (``MLSERVER_VENV``, default
``~/.cache/housing/mlserver-venv``), created on first use. The pipeline is pickled with joblib,
as mlserver-sklearn expects, and the repository is put on MLServer's PYTHONPATH so the pickle
resolves ``bench.naive`` and ``bundle.schema``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib

from bench.naive import naive_pipeline
from bench.peer_install import pip_install

REPO = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("MLSERVER_VENV", Path.home() / ".cache" / "housing" / "mlserver-venv"))
PACKAGES = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "pandas<3"]


def ensure_venv() -> Path:
    """Create MLServer's virtualenv (same scikit-learn and xgboost as ours) if missing."""
    binary = VENV / "bin" / "mlserver"
    if binary.exists():
        return binary
    import sklearn
    import xgboost

    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pins = [f"scikit-learn=={sklearn.__version__}", f"xgboost-cpu=={xgboost.__version__}"]
    pip_install(VENV, [*PACKAGES, *pins])
    return binary


def prepare_model_dir(bundle_dir: Path, workdir: Path, model_name: str, http_port: int, grpc_port: int) -> Path:
    """Write settings.json, model-settings.json and model.joblib for ``mlserver start``."""
    workdir.mkdir(parents=True, exist_ok=True)
    joblib.dump(naive_pipeline(bundle_dir), workdir / "model.joblib")
    (workdir / "settings.json").write_text(
        json.dumps(
            {
                "http_port": http_port,
                "grpc_port": grpc_port,
                "parallel_workers": 0,  # in-process, like our single worker (its pool also crashes here)
                "metrics_endpoint": None,
            }
        )
    )
    (workdir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": model_name,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
            }
        )
    )
    return workdir


def start(workdir: Path, log: Path) -> subprocess.Popen:
    """Start ``mlserver start workdir``; the caller waits for readiness and stops it."""
    binary = ensure_venv()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(binary), "start", str(workdir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,
        )
