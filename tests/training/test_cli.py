from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from housing.cli import app

runner = CliRunner()


def test_help_teaches() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for text in (
        "--dataset",
        "--target",
        "--trials",
        "--split",
        "--bundle-root",
        "Examples",
        "housing train -d boston",
        "--model-name housing-boston",
        "One registered model name",
    ):
        assert text in result.output


def test_unknown_dataset_exits_2_with_one_line() -> None:
    result = runner.invoke(app, ["train", "--dataset", "nope", "--no-register"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: unknown dataset 'nope': expected one of ames, boston or a file path"]
    assert "Traceback" not in result.output


def test_missing_target_column_exits_2(csv_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "-d", str(csv_path), "-t", "cost", "--no-register", "--bundle-root", str(tmp_path / "b")]
    )
    assert result.exit_code == 2 and "target column 'cost' not found" in result.output


def test_json_summary(csv_path: Path, tmp_path: Path) -> None:
    args = ["train", "-d", str(csv_path), "-t", "price", "-c", "linear", "--fast", "--no-register", "--json"]
    result = runner.invoke(app, [*args, "--bundle-root", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])
    assert doc["flavor"] == "linear" and doc["bundle_uri"].startswith(str(tmp_path / "b"))
    assert doc["registered_version"] is None and doc["metrics"]["holdout"]["r2"] > 0.5


def test_tables(csv_path: Path, tmp_path: Path) -> None:
    args = ["train", "-d", str(csv_path), "-t", "price", "--fast", "--no-register", "--log-target"]
    result = runner.invoke(app, [*args, "--bundle-root", str(tmp_path / "b")], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for text in ("Candidates", "winner", "holdout", "log(price)", "bundle", str(tmp_path / "b"), "not registered"):
        assert text in result.output


def test_python_dash_m_training_help() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "training", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--dataset" in out.stdout


def test_python_dash_m_training_error_exit_code(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "training", "-d", "boston", "-c", "svm", "--no-register"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "error: unknown candidate 'svm': expected some of linear, random_forest, xgboost"


def test_model_name_from_environment(csv_path: Path, tmp_path: Path) -> None:
    args = ["train", "-d", str(csv_path), "-t", "price", "-c", "linear", "--fast", "--no-register", "--json"]
    env = {"HOUSING_MODEL_NAME": "from-env"}
    result = runner.invoke(app, [*args, "--bundle-root", str(tmp_path / "b")], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["model_name"] == "from-env"
