"""predictor.guard.ratelimit: token buckets with a fake clock."""

from __future__ import annotations

import pytest

from predictor.guard.ratelimit import TokenBuckets, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_rate():
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token back in 1/rate s
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_clients_have_their_own_buckets():
    buckets = TokenBuckets(rate=1, burst=1, clock=Clock())
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0


def test_refill_is_capped_at_burst():
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=2, clock=clock)
    buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") for _ in range(3)][:2] == [0.0, 0.0]
    assert buckets.take("a") > 0


def test_table_of_clients_is_bounded():
    buckets = TokenBuckets(rate=1, burst=1, max_clients=3, clock=Clock())
    for c in "abcdef":
        buckets.take(c)
    assert len(buckets) == 3
    assert buckets.take("a") == 0.0  # forgotten: a full bucket again


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"rate": 0}, "rate"), ({"rate": 1, "burst": 0.5}, "burst"), ({"rate": 1, "max_clients": 0}, "max_clients")],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TokenBuckets(**kwargs)


def test_retry_after_is_whole_seconds_at_least_one():
    assert retry_after(0.01) == "1"
    assert retry_after(1.2) == "2"


def test_wait_looks_without_taking():
    now = [0.0]
    buckets = TokenBuckets(rate=1, burst=1, clock=lambda: now[0])
    assert buckets.wait("a") == 0.0 and buckets.wait("a") == 0.0
    assert buckets.take("a") == 0.0
    assert buckets.wait("a") == pytest.approx(1.0)
    now[0] = 1.0
    assert buckets.wait("a") == 0.0
