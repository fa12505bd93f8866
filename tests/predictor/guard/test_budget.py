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


def test_rest_and_grpc_refuse_overload_alike_each_within_the_one_limit():
    """REST's 503 and gRPC's RESOURCE_EXHAUSTED give the same reason: the limit and how to raise it."""
    refused = []
    guard = Guard(GuardConfig(max_concurrency=2), on_refused=lambda p, r: refused.append((p, r)))
    assert guard.start_request("v1") is None and guard.start_request("v2") is None
    assert guard.start_rpc() is None and guard.start_rpc() is None  # REST's slots are not gRPC's, as before
    rest, rpc = guard.start_request("v1"), guard.start_rpc()
    assert rest is not None and rpc is not None
    assert rest == rpc and rest.status == 503 and rest.headers == {"retry-after": "1"}
    assert "busy: 2 requests in progress" in rest.message and "--max_concurrency" in rest.message
    assert refused == [("v1", OVERLOADED), ("grpc", OVERLOADED)]
    guard.rpcs.release(1)
    assert guard.start_rpc() is None


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
