"""predictor.guard.budget and Guard.admit: request-body bytes in flight, refused when they would not fit."""

from __future__ import annotations

import pytest

from predictor.guard.budget import InflightBytes
from predictor.guard.policy import OVERLOADED, Guard, GuardConfig


def test_charges_up_to_the_limit_and_gives_back():
    budget = InflightBytes(100)
    assert budget.try_acquire(60) and budget.try_acquire(40)
    assert not budget.try_acquire(1) and budget.used == 100  # a refusal charges nothing
    budget.release(60)
    assert budget.try_acquire(50) and budget.used == 90


def test_admit_refuses_with_503_retry_after_and_counts():
    refused = []
    guard = Guard(GuardConfig(max_body_bytes=10, max_inflight_body_bytes=15), on_refused=lambda p, r: refused.append(r))
    assert guard.admit("v1", 10) is None
    refusal = guard.admit("v2", 10)
    assert refusal is not None and refusal.status == 503 and refusal.headers == {"retry-after": "1"}
    assert "--max_inflight_body_bytes" in refusal.message and refused == [OVERLOADED]
    guard.inflight.release(10)
    assert guard.admit("v2", 10) is None


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"max_body_bytes": 20, "max_inflight_body_bytes": 10}, "--max_inflight_body_bytes"),
        ({"max_concurrency": 0}, "--max_concurrency"),
    ],
)
def test_settings_that_cannot_work_are_refused(settings, flag):
    with pytest.raises(ValueError, match=flag):
        GuardConfig(**settings).validate()
