"""Evaluation rows are chosen by a hash of each row, so every version of a dataset gets the same ones."""

from __future__ import annotations

import pandas as pd

from training.api import TrainConfig
from training.datasets import Dataset, data_digest, validate
from training.pipeline import split_frame


def _split(frame: pd.DataFrame, **kw):  # noqa: ANN202
    ds = validate(Dataset("houses", frame.copy(), "price", log_target=False))
    return split_frame(ds, TrainConfig(dataset="houses", **kw))


def test_the_seed_does_not_move_the_evaluation_rows(frame: pd.DataFrame) -> None:
    _, a, info = _split(frame, seed=42)
    _, b, _ = _split(frame, seed=7)
    assert info["split"] == "hash" and data_digest(a) == data_digest(b)
    assert 0.1 < len(a) / len(frame) < 0.3
    _, c, _ = _split(frame, split="random", seed=7)
    assert data_digest(c) != data_digest(a)  # the seeded split is what used to move


def test_new_rows_do_not_move_the_old_ones(frame: pd.DataFrame) -> None:
    _, before, _ = _split(frame.iloc[:200])
    _, after, _ = _split(frame)
    old = after[after.index < 200]
    pd.testing.assert_frame_equal(old, before)
