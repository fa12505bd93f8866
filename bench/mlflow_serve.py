"""The peer: MLflow's scoring server (``mlflow models serve``) on the bundle's MLflow pyfunc model.

Training registers every version as the pyfunc model :func:`registry.pyfunc.save_pyfunc` writes
(``registry/pyfunc_model.py`` with the bundle as its artifact); the benchmark writes that same model
to a local directory and serves it with ``--env-manager local`` (our venv: the pyfunc imports
``predictor``), one uvicorn worker like ours. Requests are MLflow's ``dataframe_split`` JSON of
raw rows; the pyfunc encodes them with the bundle's schema, so this peer does the same work as ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def model_dir(bundle_dir: Path, dest: Path, example: list[dict[str, Any]]) -> Path:
    """Write the bundle's pyfunc model (as training would log it) to ``dest``."""
    from bundle.manifest import bundle_digest, load_manifest
    from registry.pyfunc import save_pyfunc

    save_pyfunc(dest, load_manifest(bundle_dir), bundle_dir, bundle_digest(bundle_dir), example)
    return dest


def body(rows: list[dict[str, Any]]) -> bytes:
    """An ``/invocations`` body: ``dataframe_split`` with one column per feature."""
    columns = list(rows[0])
    return json.dumps(
        {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}}
    ).encode()


def start(model: Path, port: int, log: Path) -> subprocess.Popen:
    """``mlflow models serve -m model --env-manager local`` on ``port`` (one worker)."""
    bin_dir = Path(sys.executable).parent  # mlflow runs `uvicorn` from PATH, as in an activated venv
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    args = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local"]
    args += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
