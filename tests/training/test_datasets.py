from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.datasets import AMES_OUTLIER_AREA, BOSTON_COLUMNS, data_digest, load_dataset
from training.errors import TrainingError


def test_boston_is_renamed_to_the_classic_spelling() -> None:
    ds = load_dataset("boston")
    assert list(ds.frame.columns) == list(BOSTON_COLUMNS.values())
    assert ds.target == "MEDV" and not ds.log_target
    first = ds.frame.iloc[0]
    assert first["CRIM"] == pytest.approx(0.00632) and first["ZN"] == 18.0 and first["LSTAT"] == pytest.approx(4.98)
    assert len(ds.frame) == 506 and len(ds.digest) == 32  # 128 bits: MLflow's dataset digest holds 36 characters
    assert ds.source == "https://vincentarelbundock.github.io/Rdatasets/csv/MASS/Boston.csv"


def test_ames_drops_de_cock_outliers_and_restores_none_levels() -> None:
    ds = load_dataset("ames")
    assert ds.target == "Sale_Price" and ds.log_target and ds.time_column == "Year_Sold"
    assert (ds.frame["Gr_Liv_Area"] <= AMES_OUTLIER_AREA).all()
    assert len(ds.frame) == 2925  # 2930 minus the 5 houses over 4000 sq ft
    assert any("Gr_Liv_Area" in note for note in ds.notes)
    assert ds.frame["Mas_Vnr_Type"].isna().sum() == 0 and "None" in set(ds.frame["Mas_Vnr_Type"])
    assert "rownames" not in ds.frame.columns


def test_csv_and_parquet_with_target(tmp_path: Path, frame: pd.DataFrame, csv_path: Path) -> None:
    ds = load_dataset(str(csv_path), target="price")
    assert ds.target == "price" and set(ds.features) == {"area", "rooms", "hood", "style", "age"}
    pq = tmp_path / "houses.parquet"
    frame.to_parquet(pq)
    from_parquet = load_dataset(str(pq), target="price")
    assert len(from_parquet.frame) == len(ds.frame) == 240
    assert ds.source == csv_path.resolve().as_uri() and from_parquet.source == pq.resolve().as_uri()
    assert list(from_parquet.frame.columns) == list(ds.frame.columns)


def test_digest_changes_with_content(frame: pd.DataFrame) -> None:
    other = frame.copy()
    other.loc[0, "area"] += 1
    assert data_digest(frame) != data_digest(other)
    assert data_digest(frame) == data_digest(frame.copy())


@pytest.mark.parametrize(
    ("dataset", "target", "message"),
    [
        ("nope", None, "unknown dataset 'nope'"),
        ("missing.csv", "price", "dataset file not found"),
        ("houses.csv", None, "needs --target"),
        ("houses.csv", "cost", "target column 'cost' not found"),
        ("boston", "medv_typo", "target column 'medv_typo' not found"),
        ("houses.xlsx", "price", "unknown dataset"),
    ],
)
def test_errors_name_the_problem(csv_path: Path, dataset: str, target: str | None, message: str) -> None:
    path = csv_path.parent / dataset if dataset.endswith((".csv", ".xlsx")) else dataset
    with pytest.raises(TrainingError, match=message) as info:
        load_dataset(str(path), target=target)
    assert "\n" not in str(info.value)


def test_empty_and_all_nan_data(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TrainingError, match="empty"):
        load_dataset(str(empty), target="price")
    header = tmp_path / "header.csv"
    header.write_text("a,price\n")
    with pytest.raises(TrainingError, match="empty"):
        load_dataset(str(header), target="price")
    nan_target = tmp_path / "nan.csv"
    pd.DataFrame({"a": [1.0, 2.0], "price": [np.nan, np.nan]}).to_csv(nan_target, index=False)
    with pytest.raises(TrainingError, match="no rows with a value for target"):
        load_dataset(str(nan_target), target="price")
    nan_features = tmp_path / "nanf.csv"
    pd.DataFrame({"a": [np.nan, np.nan], "price": [1.0, 2.0]}).to_csv(nan_features, index=False)
    with pytest.raises(TrainingError, match="no usable feature columns"):
        load_dataset(str(nan_features), target="price")
    text_target = tmp_path / "text.csv"
    pd.DataFrame({"a": [1, 2], "price": ["cheap", "dear"]}).to_csv(text_target, index=False)
    with pytest.raises(TrainingError, match="not numeric"):
        load_dataset(str(text_target), target="price")
