"""The distribution gates' tests: calibrated at small counts, unbiased across bucket sets, safe on empty input."""

from __future__ import annotations

import numpy as np
import pytest

from bundle.reference import PSI_EPS
from bundle.reference import psi as population_stability
from rollout.evidence import (
    EXCEEDS,
    NOT_ENOUGH,
    WITHIN,
    bucket_moments,
    common_buckets,
    mean_shift_test,
    paired_shift_test,
    psi_test,
)
from rollout.histograms import bucket_probabilities, rebin

DECILES = np.linspace(0, 1, 11)


def old_psi(champion: dict[str, float], challenger: dict[str, float], debias: bool = True) -> float:
    """The PSI gate before issue 28: the challenger rebinned on all the champion's bounds, PSI of the
    shares (empty buckets at 1e-4), minus (k − 1)(1/n₁ + 1/n₂); compared with the threshold as it was."""
    challenger = rebin(challenger, sorted(float(k) for k in champion))
    base, new = dict(bucket_probabilities(champion)), dict(bucket_probabilities(challenger))
    b, n = [base.get(u, 0.0) for u in sorted(base)], [new.get(u, 0.0) for u in sorted(base)]
    value = population_stability(b, n, PSI_EPS)
    if debias:
        occupied = sum((x > 0) or (y > 0) for x, y in zip(b, n, strict=True))
        value -= (occupied - 1) * (1 / max(champion.values()) + 1 / max(challenger.values()))
    return max(value, 0.0)


def histogram(values: np.ndarray, bounds: np.ndarray) -> dict[str, float]:
    counts = np.searchsorted(np.sort(values), bounds, side="right")
    return {repr(float(b)): float(c) for b, c in zip(bounds, counts, strict=True)} | {"+Inf": float(values.size)}


def prices(rng: np.random.Generator, n: int, sd: float = 0.4) -> np.ndarray:
    return np.exp(rng.normal(12.0, sd, n))


def two_bound_sets(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two predictors' buckets: the deciles (min … max) of two seeds' training predictions."""
    train = prices(rng, 2000)
    return np.quantile(train, DECILES), np.quantile(train * np.exp(rng.normal(0, 0.05, 2000)), DECILES)


def test_psi_of_an_equal_challenger_at_the_issue_counts_is_noise_not_evidence():
    """Issue 28: 79 challenger requests against 906 for the champion gave psi 0.35 > 0.25 and a rollback."""
    rng = np.random.default_rng(28)
    old_over, verdicts, no_change_rejected = 0, [], 0
    for _ in range(300):
        a_bounds, b_bounds = two_bound_sets(rng)
        # the demo's synthetic rows spread less (log-sd 0.18) than the training prices the buckets come from
        champion, challenger = histogram(prices(rng, 906, 0.18), a_bounds), histogram(prices(rng, 79, 0.18), b_bounds)
        old_over += old_psi(champion, challenger) > 0.25  # the gate as it was (debiased)
        result = psi_test(champion, challenger, 0.25, alpha=0.05)
        verdicts.append(result.verdict)
        no_change_rejected += psi_test(champion, challenger, 0.0, alpha=0.05).verdict == EXCEEDS
    print(f"old PSI > 0.25: {old_over}/300; verdicts {sorted((v, verdicts.count(v)) for v in set(verdicts))}")
    assert old_over >= 1  # the old gate failed equal challengers on noise (seeded: 3 of 300)
    assert verdicts.count(EXCEEDS) == 0
    assert verdicts.count(WITHIN) > 200  # and the test still decides most of them at these counts
    # the χ² null distribution is calibrated: "no change at all" is rejected about α of the time
    assert 0.01 <= no_change_rejected / 300 <= 0.10


def test_psi_detects_a_real_change_and_its_interval_covers_it():
    rng = np.random.default_rng(1)
    a_bounds, _ = two_bound_sets(rng)
    champion = histogram(prices(rng, 5000), a_bounds)
    moved = histogram(prices(rng, 2000) * 1.6, a_bounds * 1.6)  # a much pricier model
    result = psi_test(champion, moved, 0.25)
    assert result.verdict == EXCEEDS and result.low > 0.25 and result.p_value < 0.05
    assert result.counts["challenger"] == pytest.approx(2000) and result.counts["buckets"] >= 4
    same = psi_test(champion, histogram(prices(rng, 2000), a_bounds), 0.25)
    assert same.verdict == WITHIN and same.low == 0.0 and same.high < 0.05


def test_rebinning_between_two_bundles_deciles_is_unbiased():
    """The same values on two seeds' bucket bounds: interpolating inside the skewed tail buckets
    (90 % → the training maximum) moved mass into +Inf; common_buckets pools those tails."""
    rng = np.random.default_rng(5)
    old, new = [], []
    for _ in range(20):
        a_bounds, b_bounds = two_bound_sets(rng)
        values = prices(rng, 100_000)
        champion, challenger = histogram(values, a_bounds), histogram(values, b_bounds)
        old.append(old_psi(champion, challenger, debias=False))
        a, b = common_buckets(champion, challenger)
        assert sum(a) == pytest.approx(sum(b)) == pytest.approx(100_000)
        pa, pb = np.array(a) / sum(a), np.array(b) / sum(b)
        new.append(float(np.sum((pb - pa) * np.log(np.clip(pb, 1e-9, None) / np.clip(pa, 1e-9, None)))))
    print(f"rebin bias: old mean {np.mean(old):.4f} max {np.max(old):.4f}; new mean {np.mean(new):.6f}")
    assert np.mean(old) > 0.003  # the bias the old rebinning had
    assert np.mean(new) < 0.0005 and np.max(new) < 0.002


@pytest.mark.parametrize(
    "champion, challenger, means",
    [
        ({}, {"10": 5, "+Inf": 10}, False),
        (None, None, False),
        ({"+Inf": 500}, {"+Inf": 500}, False),  # one bucket
        ({"10": 0, "20": 0, "+Inf": 0}, {"10": 0, "20": 0, "+Inf": 0}, False),  # no counts
        ({"10": 3, "+Inf": 8}, {"10": 1, "+Inf": 9}, False),  # a handful
        ({"10": 0, "20": 500, "+Inf": 500}, {"10": 0, "20": 500, "+Inf": 500}, True),  # one occupied bucket
    ],
)
def test_no_histogram_or_one_bucket_is_not_enough_evidence(champion, challenger, means):
    result = psi_test(champion, challenger, 0.25)
    assert result.verdict == NOT_ENOUGH and result.note
    # the means of one occupied bucket still compare (within its width); nothing at all does not
    shift = mean_shift_test(bucket_moments(champion), bucket_moments(challenger), 0.1)
    assert shift.verdict == (WITHIN if means else NOT_ENOUGH)


def test_bucket_moments_with_the_exact_mean_place_the_long_tail():
    rng = np.random.default_rng(3)
    bounds, _ = two_bound_sets(rng)
    values = prices(rng, 5000)
    n, mean, var = bucket_moments(histogram(values, bounds), float(values.mean()))
    assert n == 5000 and mean == pytest.approx(values.mean())
    assert values.var() <= var <= 1.3 * values.var()  # a little wider: conservative
    assert bucket_moments(histogram(values, bounds))[2] > 1.5 * values.var()  # midpoints alone: far too wide


def test_mean_shift_at_the_threshold_fails_at_most_alpha():
    rng = np.random.default_rng(7)
    threshold, fails = 0.05, 0
    for _ in range(400):
        a, b = prices(rng, 900, 0.18), prices(rng, 400, 0.18) * 1.05
        fails += mean_shift_test((a.size, a.mean(), a.var()), (b.size, b.mean(), b.var()), threshold).verdict == EXCEEDS
    assert fails / 400 <= 0.08  # α = 0.05 at the boundary, plus simulation noise


def test_paired_shift():
    rng = np.random.default_rng(11)
    r = rng.normal(0.05, 0.045, 200)
    result = paired_shift_test(r.size, r.sum(), r @ r, 0.03)
    assert result.verdict == EXCEEDS and result.comparison == "paired"
    assert result.low < 0.05 < result.high and result.p_value < 0.01
    same = rng.normal(0.0, 0.045, 200)
    assert paired_shift_test(200, same.sum(), same @ same, 0.03).verdict == WITHIN
    assert paired_shift_test(200, 0.0, 0.0, 0.03).verdict == WITHIN  # the same model: identical answers
    assert paired_shift_test(5, 0.25, 0.02, 0.03).verdict == NOT_ENOUGH
    assert paired_shift_test(None, None, None, 0.03).verdict == NOT_ENOUGH
