"""The node tests' request rows: :func:`testkit.holdout.sample_records` draws what they drew inline."""

from __future__ import annotations

from testkit.holdout import holdout, records, sample_records


def test_sample_records_are_the_seeded_holdout_rows_every_time() -> None:
    frame, features = holdout("ames")
    rows = sample_records("ames", 4, 7)
    assert rows == records(frame[features].sample(4, random_state=7))
    assert rows == sample_records("ames", 4, 7)
    assert len(rows) == 4 and all(set(row) == set(features) for row in rows)
