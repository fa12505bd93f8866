"""``housing bench --mode train-scale``: the resampled tables keep ames' columns and ranges, the bounds skip
what the size before projects past them, and one real small run yields a row of the table."""

from __future__ import annotations

import pandas as pd
import pytest

from bench import train_scale
from bench.train_scale import Cell, markdown, measure, synthetic_ames, train_once
from training.datasets import load_dataset


def test_synthetic_ames_keeps_columns_types_and_ranges() -> None:
    ames = load_dataset("ames").frame
    table = synthetic_ames(5_000, seed=1)
    assert len(table) == 5_000 and list(table.columns) == list(ames.columns)
    for col in ames.columns:
        assert table[col].dtype == ames[col].dtype, col
        if pd.api.types.is_numeric_dtype(ames[col]) and col != "Sale_Price":
            assert table[col].min() >= ames[col].min() and table[col].max() <= ames[col].max(), col
        else:
            assert set(table[col].dropna()) <= set(ames[col].dropna()) or col == "Sale_Price", col
    # jittered, not copied: far fewer exact duplicate rows than a plain bootstrap of 2.9k rows
    assert table.duplicated().sum() < 50
    assert table["Sale_Price"].min() > 0


def test_measure_skips_what_the_size_before_projects_past_the_budget(tmp_path, monkeypatch) -> None:
    calls: list[tuple[int, str]] = []

    def fake_train(table, candidate, workdir, timeout):  # the projection logic only; real runs below
        rows = len(pd.read_parquet(table, columns=["Sale_Price"]))
        calls.append((rows, candidate))
        wall = {"linear": 1.0, "xgboost": 40.0}[candidate] * rows / 1_000
        return Cell(rows, candidate, "ok", wall + 5, wall, wall, 100.0, 0.1)  # 5 s that do not grow

    monkeypatch.setattr(train_scale, "train_once", fake_train)
    cells = measure((1_000, 2_000, 4_000), ("linear", "xgboost"), 100.0, tmp_path)
    assert calls == [(1_000, "linear"), (1_000, "xgboost"), (2_000, "linear"), (2_000, "xgboost"), (4_000, "linear")]
    skipped = cells[-1]
    assert (skipped.rows, skipped.candidate, skipped.status) == (4_000, "xgboost", "skipped")
    assert "projected 165 s" in skipped.note
    assert any("skipped: projected" in line for line in markdown(cells, 100.0))


@pytest.mark.integration
def test_one_real_training_run_measures_time_and_memory(tmp_path) -> None:
    table = tmp_path / "t.parquet"
    synthetic_ames(1_000).to_parquet(table)
    cell = train_once(table, "linear", tmp_path, timeout=600)
    print(cell)
    assert cell.status == "ok", cell.note
    assert cell.wall_s >= cell.train_s >= cell.cv_s > 0 and cell.peak_rss_mb > 50
    assert 0 < cell.cv_rmse < 1  # log scale
