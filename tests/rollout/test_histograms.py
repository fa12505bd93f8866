"""Histogram statistics: shares, means from buckets, rebinning."""

from __future__ import annotations

import pytest

from rollout.histograms import bucket_mean, bucket_probabilities, rebin


def test_bucket_probabilities():
    assert bucket_probabilities({"10": 10, "20": 60, "+Inf": 100}) == [(10.0, 0.1), (20.0, 0.5), (float("inf"), 0.4)]
    assert bucket_probabilities({}) == []


def test_bucket_mean_estimates_without_sum():
    assert bucket_mean({"10": 50, "20": 100, "+Inf": 100}) == pytest.approx(12.5)  # 0.5·10 + 0.5·15
    assert bucket_mean({"-1": 0, "1": 10, "+Inf": 10}) == pytest.approx(0.0)
    assert bucket_mean({}) is None


def test_rebin_interpolates_inside_buckets():
    # uniform(0, 100) on buckets of 20: re-expressed on buckets of 10, exactly
    a = {str(b): b * 10 for b in (20, 40, 60, 80, 100)} | {"+Inf": 1000}
    out = rebin(a, [10.0, 30.0, 50.0, float("inf")])
    assert out == {"10.0": pytest.approx(100), "30.0": pytest.approx(300), "50.0": pytest.approx(500), "+Inf": 1000}
