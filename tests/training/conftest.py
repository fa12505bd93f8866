"""Small synthetic data for fast training tests (no network, seconds per run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.uniform(50, 250, n)
    rooms = rng.integers(1, 7, n)
    hood = rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1])
    style = rng.choice(["flat", "house", None], n, p=[0.5, 0.4, 0.1])
    age = rng.uniform(0, 80, n)
    age[rng.random(n) < 0.1] = np.nan
    bonus = pd.Series(hood).map({"north": 1.3, "south": 1.0, "east": 0.9, "west": 0.8}).to_numpy()
    price = 1000 * area * bonus * (1 + 0.05 * rooms) * np.exp(rng.normal(0, 0.05, n)) - 50 * np.nan_to_num(age)
    return pd.DataFrame(
        {"area": area, "rooms": rooms, "hood": hood, "style": style, "age": age, "price": np.maximum(price, 1000)}
    )


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def csv_path(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "houses.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def housing_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Embedded mode in a temp dir: no S3, MLflow in a temp sqlite file."""
    for var in (
        "MLFLOW_TRACKING_URI",
        "AWS_ENDPOINT_URL",
        "MLFLOW_S3_ENDPOINT_URL",
        "S3_ENDPOINT",
        "HOUSING_BUNDLE_ROOT",
    ):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("HOUSING_HOME", str(home))
    return home
