"""Bundles made by the real training code (small, fast configurations), shared per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.procs import train_bundle  # noqa: E402


@pytest.fixture(scope="session")
def bundle_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="session")
def boston_xgb(bundle_cache: Path) -> Path:
    return train_bundle(bundle_cache, "boston", "xgboost")


@pytest.fixture(scope="session")
def ames_xgb(bundle_cache: Path) -> Path:
    return train_bundle(bundle_cache, "ames", "xgboost")


@pytest.fixture(scope="session")
def boston_forest(bundle_cache: Path) -> Path:
    return train_bundle(bundle_cache, "boston", "random_forest")


@pytest.fixture(scope="session")
def ames_linear(bundle_cache: Path) -> Path:
    return train_bundle(bundle_cache, "ames", "linear")
