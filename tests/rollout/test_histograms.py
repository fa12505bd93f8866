"""Histogram statistics: PSI, mean shift, means from buckets."""

from __future__ import annotations

import pytest

from rollout.histograms import bucket_mean, mean_shift, psi


def test_psi_and_mean_shift():
    same = {"10": 10, "20": 60, "30": 90, "+Inf": 100}
    assert psi(same, same) == pytest.approx(0.0)
    shifted = {"10": 0, "20": 5, "30": 20, "+Inf": 100}
    assert psi(same, shifted) > 1.0
    assert psi({}, same) is None
    assert mean_shift(100.0, 110.0) == pytest.approx(0.1)
    assert mean_shift(None, 1.0) is None


def test_bucket_mean_estimates_without_sum():
    assert bucket_mean({"10": 50, "20": 100, "+Inf": 100}) == pytest.approx(12.5)  # 0.5·10 + 0.5·15
    assert bucket_mean({"-1": 0, "1": 10, "+Inf": 10}) == pytest.approx(0.0)
    assert bucket_mean({}) is None


def test_psi_across_different_bucket_bounds():
    # the same uniform(0, 100) distribution, histogrammed on two different bucket sets
    a = {str(b): b * 10 for b in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)} | {"+Inf": 1000}
    b = {str(b): b * 10 for b in (15, 35, 55, 75, 95, 100)} | {"+Inf": 1000}
    assert psi(a, b, debias=False) == pytest.approx(0.0, abs=0.01)
    shifted = {str(x): max(0, (x - 30) * 10 / 0.7) if x > 30 else 0 for x in (15, 35, 55, 75, 95, 100)} | {"+Inf": 1000}
    assert psi(a, shifted) > 0.5
