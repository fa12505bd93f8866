"""The peers a KServe user would pick instead of a custom predictor: KServe's xgbserver and sklearnserver.

Both come from the ``python/`` tree of the KServe Go module at :data:`KSERVE_VERSION` (the tree
``scripts/tools/kserve.sh`` already fetches from the Go module proxy; ``go mod download`` reuses
its cache) and live in their own virtualenv, ``$HOUSING_CACHE_DIR/kserve-runtimes-<version>-venv``
(default ``~/.cache/housing``), built on first use so they never touch our venv. The runtimes pin
older scikit-learn/xgboost than ours; they are installed without their pins and with *our*
versions, since a joblib pickle only loads in the scikit-learn that wrote it and the booster must
be the same one. Nothing of the repository is put on their PYTHONPATH: they get plain files
(``model.ubj``, ``model.joblib``) and already-encoded numeric rows.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.peer_install import REPO, pip_install_command

KSERVE_VERSION = "v0.20.0"
MODULE = "github.com/kserve/kserve"
CACHE = Path(os.environ.get("HOUSING_CACHE_DIR", Path.home() / ".cache" / "housing"))
VENV = Path(os.environ.get("KSERVE_RUNTIMES_VENV", CACHE / f"kserve-runtimes-{KSERVE_VERSION}-venv"))
STAMP = ".housing-stamp.json"
#: Directories of the module's ``python/`` tree installed, in order (the runtimes without their pins).
SOURCES = ("kserve", "storage")
RUNTIMES = ("xgbserver", "sklearnserver")
#: Packages installed at our versions instead of the runtimes' pins.
PINNED = ("scikit-learn", "xgboost-cpu", "joblib")


class PeerUnavailable(RuntimeError):
    """A peer's virtualenv cannot be built here (no Go toolchain, no network, a failed install)."""


def _pins() -> dict[str, str]:
    """Our scikit-learn, xgboost and joblib: the peer must load the very same model files."""
    import joblib
    import sklearn
    import xgboost

    return {
        "kserve": KSERVE_VERSION,
        "scikit-learn": sklearn.__version__,
        "xgboost-cpu": xgboost.__version__,
        "joblib": joblib.__version__,
        "python": sys.version.split()[0],
    }


def module_tree(version: str = KSERVE_VERSION) -> Path:
    """The read-only KServe module tree in Go's module cache (downloaded from the proxy if missing)."""
    if shutil.which("go") is None:
        raise PeerUnavailable("the Go toolchain is needed to fetch the KServe module (go not found)")
    env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=mod"}
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{version}"], capture_output=True, text=True, env=env, timeout=900
    )
    try:
        directory = Path(json.loads(out.stdout)["Dir"])
    except (json.JSONDecodeError, KeyError):
        raise PeerUnavailable(
            f"go mod download {MODULE}@{version} failed: {(out.stderr or out.stdout)[-500:]}"
        ) from None
    if not (directory / "python" / "xgbserver").is_dir():
        raise PeerUnavailable(f"{directory} has no python/xgbserver")
    return directory


def venv_python() -> Path | None:
    """The peer venv's python when it is complete and matches our pins, else None (no build)."""
    python = VENV / "bin" / "python"
    try:
        stamp = json.loads((VENV / STAMP).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return python if python.exists() and stamp == _pins() else None


def ensure_venv() -> Path:
    """Build the peer venv if it is missing or stale; returns its python. Raises :class:`PeerUnavailable`.

    Two processes (test runs side by side) build it one after the other under a lock file: the build
    starts by removing the directory, which broke the other's half-built venv.
    """
    python = venv_python()
    if python is not None:
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f"{VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = venv_python()  # built by whoever held the lock before us
        return python if python is not None else _build_venv()


def _build_venv() -> Path:
    pins = _pins()
    tree = module_tree() / "python"
    began = time.perf_counter()
    shutil.rmtree(VENV, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="housing-kserve-src-") as tmp:
        # the module cache is read-only and setuptools writes egg-info next to the sources
        for name in (*SOURCES, *RUNTIMES):
            shutil.copytree(tree / name, Path(tmp) / name, ignore=shutil.ignore_patterns("test", "tests", "docs"))
        steps = [
            [sys.executable, "-m", "venv", str(VENV)],
            pip_install_command(VENV, [*(str(Path(tmp) / s) for s in SOURCES), *(f"{p}=={pins[p]}" for p in PINNED)]),
            pip_install_command(VENV, ["--no-deps", *(str(Path(tmp) / r) for r in RUNTIMES)]),
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, cwd=REPO)
            if done.returncode != 0:
                shutil.rmtree(VENV, ignore_errors=True)
                raise PeerUnavailable(f"building {VENV} failed at `{' '.join(step[:6])} …`: {done.stderr[-800:]}")
    (VENV / STAMP).write_text(json.dumps(pins))
    size = sum(f.stat().st_size for f in VENV.rglob("*") if f.is_file() and not f.is_symlink())
    (VENV / ".housing-build.json").write_text(
        json.dumps({"seconds": round(time.perf_counter() - began, 1), "bytes": size})
    )
    return VENV / "bin" / "python"


def build_info() -> dict[str, Any]:
    """How long the venv took to build and how big it is (written by :func:`ensure_venv`)."""
    try:
        return json.loads((VENV / ".housing-build.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def xgboost_model_dir(bundle_dir: Path, dest: Path) -> Path:
    """xgbserver's model dir: the bundle's own booster file (native UBJSON), nothing else."""
    from bundle.manifest import MODEL_FILES, load_manifest

    manifest = load_manifest(bundle_dir)
    if manifest.flavor != "xgboost":
        raise ValueError(f"{bundle_dir}: xgbserver serves an xgboost bundle, not {manifest.flavor}")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle_dir / MODEL_FILES["xgboost"], dest / "model.ubj")
    return dest


def sklearn_model_dir(estimator: Any, dest: Path) -> Path:
    """sklearnserver's model dir: the fitted scikit-learn estimator pickled as ``model.joblib``."""
    import joblib

    dest.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, dest / "model.joblib")
    return dest


def start(
    runtime: str, model_dir: Path, model_name: str, http_port: int, grpc_port: int, log: Path
) -> subprocess.Popen:
    """Start ``python -m <runtime>`` from the peer venv (settings as ours: one worker, no latency logs)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: one of {', '.join(RUNTIMES)}, got {runtime!r}")
    python = ensure_venv()
    args = [str(python), "-m", runtime, "--model_dir", str(model_dir), "--model_name", model_name]
    args += ["--http_port", str(http_port), "--grpc_port", str(grpc_port), "--enable_latency_logging", "false"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of ours on its path
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
