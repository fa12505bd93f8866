"""Library noise (MLflow's INFO lines and progress bars, library warnings) goes to a log file, not between our tables.

``housing -v …`` keeps it on stderr as the libraries print it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

#: Loggers of libraries the CLI drives, whose records are not our output.
LIBRARY_LOGGERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey", "optuna", "py.warnings")


def route_library_noise(home: Path) -> Path:
    """Send the libraries' log records and Python warnings to ``home/logs/libraries.log``; returns its path.

    MLflow configures its loggers when it is first imported, so it is imported here first and its
    handlers are replaced afterwards; its artifact progress bars and run links are switched off.
    """
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    # "🏃 View run … / 🧪 View experiment …": written to stdout (not logged) at the end of every run
    # against a tracking server, e.g. between `housing rollout`'s lines after its quality gate
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    if importlib.util.find_spec("mlflow") is not None:
        import mlflow  # noqa: F401  (configures its loggers on import; ours replace them below)
    path = home / "logs" / "libraries.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    logging.captureWarnings(True)
    return path
