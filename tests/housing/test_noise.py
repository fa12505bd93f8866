"""Library noise (MLflow's INFO lines, progress bars, warnings) stays out of the CLI's output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOISE = ("Downloading artifacts", "UserWarning", "INFO mlflow", "Creating initial MLflow database")


@pytest.mark.integration
def test_train_prints_our_tables_and_logs_the_libraries(tmp_path: Path) -> None:
    """Embedded train + register (MLflow on sqlite): stderr is ours; MLflow's lines are in the log file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "HOUSING_"))}
    env.update(HOUSING_HOME=str(tmp_path / "home"), COLUMNS="160")
    args = [sys.executable, "-m", "housing", "train", "-d", "boston", "--fast", "-c", "linear", "--no-progress"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "version 1 (aliases: challenger, champion)" in done.stdout
    assert [n for n in NOISE if n in done.stdout + done.stderr] == [], done.stderr
    log = (tmp_path / "home" / "logs" / "libraries.log").read_text()
    assert "mlflow" in log and "UserWarning" in log, log[-2000:]


def test_mlflow_run_links_are_not_printed_between_our_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow writes "🏃 View run … at: URL" to stdout (not a log record) when a run against a tracking
    server ends: `housing rollout` printed it after its quality gate."""
    from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT

    from housing.noise import route_library_noise

    monkeypatch.delenv(MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.name, raising=False)  # restored afterwards
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    assert not MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get()
    import logging

    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in ("mlflow",)}
    try:
        route_library_noise(tmp_path)
        assert MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get() is True
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate
