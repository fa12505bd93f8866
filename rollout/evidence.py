"""The distribution gates as statistical tests with a stated error rate (pure).

A gate's threshold ``τ`` (``--max-psi``, ``--max-mean-shift``) is the effect size that matters;
the test decides whether the evidence at the observed counts says the effect exceeds it. With
the significance level ``α`` (``--alpha``, default 0.05) each test gives a (1 − 2α) interval
``[low, high]`` of the effect from its sampling distribution and one of three verdicts:

- ``exceeds`` when ``low > τ``: the one-sided test of "effect ≤ τ" rejects at level α, so a
  challenger whose true effect is within τ fails a step with probability at most α;
- ``within`` when ``high ≤ τ``: the evidence says the effect is within τ (a challenger whose true
  effect exceeds τ passes with probability at most α);
- ``not enough evidence`` otherwise, and whenever the counts cannot carry the test (no counts,
  one bucket, fewer than :data:`MIN_SAMPLES` values): the step waits for more traffic and is
  never failed for it.

The tests:

- **PSI** (:func:`psi_test`). Both histograms are put on common buckets (:func:`common_buckets`),
  adjacent buckets are pooled until each expects at least :data:`MIN_EXPECTED` values of the
  smaller sample (Cochran's rule for χ² tests), and PSI — the symmetric (Jeffreys) KL divergence
  of the two shares — is judged with its large-sample distribution: for two samples of sizes
  ``n₁``, ``n₂`` over ``k`` buckets, ``n_eff · PSI`` with ``n_eff = n₁n₂/(n₁+n₂)`` is ≈ χ² with
  ``k − 1`` degrees of freedom when nothing changed (B. Yurdakul, *Statistical properties of
  population stability index*, PhD thesis, Western Michigan University, 2018), and ≈ noncentral χ²
  with noncentrality ``n_eff · PSI_true`` when it did (the usual local-alternative result for
  χ²-type divergence statistics). The interval inverts that noncentral χ² in its noncentrality;
  the point estimate subtracts the no-change expectation ``(k − 1)/n_eff``.
- **Mean shift, two samples** (:func:`mean_shift_test`): the relative difference of the means,
  ``(m₂ − m₁)/m₁``, with a normal (Welch) interval; each side's variance is estimated from its
  histogram (bucket midpoints plus Sheppard's within-bucket ``width²/12``).
- **Mean shift, paired** (:func:`paired_shift_test`): when the challenger also answered the
  champion's requests (the local router's shadow), the per-row relative differences
  ``(b − a)/|a|`` of the two answers to the same rows, with a Student-t interval of their mean.
  It carries no sampling noise from different inputs, so it decides the mean-shift gate whenever
  it has :data:`MIN_SAMPLES` pairs; the result says which comparison decided.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy import optimize, stats

from rollout.analysis_config import DEFAULT_ALPHA
from rollout.histograms import rebin

WITHIN = "within"
EXCEEDS = "exceeds"
NOT_ENOUGH = "not enough evidence"

#: Cochran's rule: every pooled bucket expects at least this many values of the smaller sample.
MIN_EXPECTED = 5.0
#: Fewest values (per side, or pairs) a test is run on; fewer is "not enough evidence".
MIN_SAMPLES = 20


@dataclass
class Evidence:
    """One test's result: the estimate, its interval, the p-value of "effect ≤ threshold", the counts."""

    verdict: str  # within | exceeds | not enough evidence
    estimate: float | None
    low: float | None
    high: float | None
    p_value: float | None  # of H0 "effect ≤ threshold"; small: the evidence says it is exceeded
    counts: dict[str, float] = field(default_factory=dict)
    comparison: str = "marginal"  # marginal (two histograms) | paired (the same rows)
    method: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict_of(low: float, high: float, threshold: float) -> str:
    """``exceeds`` / ``within`` / ``not enough evidence`` for an interval of a non-negative effect."""
    if low > threshold:
        return EXCEEDS
    if high <= threshold:
        return WITHIN
    return NOT_ENOUGH


def signed_verdict(low: float, high: float, threshold: float) -> str:
    """The same for a signed effect judged by its size (``|δ| ≤ threshold``)."""
    if low > threshold or high < -threshold:
        return EXCEEDS
    if -threshold <= low and high <= threshold:
        return WITHIN
    return NOT_ENOUGH


def not_enough(note: str, counts: dict[str, float] | None = None, **kw: Any) -> Evidence:
    return Evidence(NOT_ENOUGH, None, None, None, None, counts or {}, note=note, **kw)


# -- histograms --------------------------------------------------------------------------------


def _finite_bounds(cumulative: dict[str, float]) -> list[float]:
    return sorted(b for b in (float(k) for k in cumulative) if math.isfinite(b))


def _counts(cumulative: dict[str, float], bounds: list[float]) -> list[float]:
    """Per-bucket counts over ``bounds`` + ``+Inf`` from a cumulative histogram with those bounds."""
    by_bound = {float(k): float(v) for k, v in cumulative.items()}
    out, previous = [], 0.0
    for b in [*bounds, math.inf]:
        c = by_bound.get(b, previous)
        out.append(max(c - previous, 0.0))
        previous = max(c, previous)
    return out


def common_buckets(champion: dict[str, float], challenger: dict[str, float]) -> tuple[list[float], list[float]]:
    """Per-bucket counts of both histograms over common buckets.

    Each predictor takes its buckets from its own bundle's training deciles (min, 10 %, …, 90 %,
    max), so the bounds differ and the challenger is re-expressed on the champion's
    (:func:`~rollout.histograms.rebin`, linear inside a bucket). That is exact enough inside the
    decile buckets, but not in the outermost finite buckets (10 % → min, 90 % → the training
    maximum): they are wide and skewed, and linear interpolation there moved up to 1.5 % of the mass
    of two identical distributions into ``+Inf`` (a PSI of 0.009 on average, up to 0.042, between
    two seeds' bounds on the same 100 000 values). Only the champion's bounds inside the
    challenger's interior buckets are used, so those tails are pooled (bias 0.00004;
    ``tests/rollout/test_evidence.py`` measures both).
    """
    a_bounds, b_bounds = _finite_bounds(champion), _finite_bounds(challenger)
    if a_bounds == b_bounds:
        return _counts(champion, a_bounds), _counts(challenger, a_bounds)
    if len(b_bounds) >= 4:
        bounds = [u for u in a_bounds if b_bounds[1] <= u <= b_bounds[-2]]
    else:
        bounds = a_bounds
    if len(bounds) < 2:  # hardly overlapping ranges: a gross change, judged on every bucket
        bounds = a_bounds
    common = [*bounds, math.inf]
    champion_common = rebin(champion, common)  # exact: a subset of its own bounds
    challenger_common = rebin(challenger, common)
    return _counts(champion_common, bounds), _counts(challenger_common, bounds)


def pooled(a: list[float], b: list[float], min_expected: float = MIN_EXPECTED) -> tuple[list[float], list[float]]:
    """Merge adjacent buckets until each expects ``min_expected`` values of the smaller sample."""
    n_a, n_b = sum(a), sum(b)
    total, small = n_a + n_b, min(n_a, n_b)
    out_a: list[float] = []
    out_b: list[float] = []
    acc_a = acc_b = 0.0
    for x, y in zip(a, b, strict=True):
        acc_a, acc_b = acc_a + x, acc_b + y
        if total > 0 and (acc_a + acc_b) / total * small >= min_expected:
            out_a.append(acc_a)
            out_b.append(acc_b)
            acc_a = acc_b = 0.0
    if acc_a or acc_b:
        if out_a:
            out_a[-1] += acc_a
            out_b[-1] += acc_b
        else:
            out_a, out_b = [acc_a], [acc_b]
    return out_a, out_b


def _noncentrality(statistic: float, df: int, target: float, upper: bool) -> float:
    """The noncentrality λ at which ``statistic`` sits at quantile ``target`` (``cdf`` if ``upper``
    else ``sf``) of a noncentral χ²(df, λ); both are monotone in λ."""

    def f(lam: float) -> float:
        dist = stats.ncx2(df, lam) if lam > 0 else stats.chi2(df)
        return (dist.cdf(statistic) if upper else dist.sf(statistic)) - target

    hi = max(10.0, 2.0 * statistic + 10.0)
    while f(hi) * f(0.0) > 0 and hi < 1e9:
        hi *= 2
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-6))


def psi_test(
    champion: dict[str, float] | None,
    challenger: dict[str, float] | None,
    threshold: float,
    alpha: float = DEFAULT_ALPHA,
) -> Evidence:
    """PSI of two cumulative ``{le: count}`` histograms, judged against ``threshold`` (module doc)."""
    if not champion or not challenger:
        return not_enough("no prediction histogram", method="psi χ²")
    a, b = common_buckets(champion, challenger)
    n_a, n_b = sum(a), sum(b)
    counts = {"champion": round(n_a, 1), "challenger": round(n_b, 1)}
    if min(n_a, n_b) < MIN_SAMPLES:
        return not_enough(f"only {min(n_a, n_b):.0f} predictions < {MIN_SAMPLES}", counts, method="psi χ²")
    a, b = pooled(a, b)
    k = len(a)
    counts["buckets"] = k
    if k < 2:
        return not_enough("one bucket after pooling", counts, method="psi χ²")
    pa = [(x + 0.5) / (n_a + 0.5 * k) for x in a]  # half a count per bucket: no log(0)
    pb = [(y + 0.5) / (n_b + 0.5 * k) for y in b]
    raw = sum((q - p) * math.log(q / p) for p, q in zip(pa, pb, strict=True))
    n_eff = n_a * n_b / (n_a + n_b)
    df, statistic = k - 1, n_eff * raw
    counts["n_eff"] = round(n_eff, 1)
    null = stats.chi2(df)
    p_value = float((stats.ncx2(df, n_eff * threshold) if threshold > 0 else null).sf(statistic))
    low = 0.0 if null.sf(statistic) >= alpha else _noncentrality(statistic, df, alpha, upper=False) / n_eff
    high = 0.0 if null.cdf(statistic) <= alpha else _noncentrality(statistic, df, alpha, upper=True) / n_eff
    estimate = max(raw - df / n_eff, 0.0)
    return Evidence(
        verdict_of(low, high, threshold),
        estimate,
        low,
        high,
        p_value,
        counts,
        method=f"n_eff·PSI ~ noncentral χ²({df})",
        note=f"raw {raw:.4f}, p(no change) {float(null.sf(statistic)):.3g}",
    )


# -- mean shift --------------------------------------------------------------------------------


def bucket_moments(cumulative: dict[str, float] | None, mean: float | None = None) -> tuple[float, float, float] | None:
    """(count, mean, variance) of a cumulative histogram.

    Each bucket is represented by its midpoint with Sheppard's within-bucket ``width²/12``; the
    lowest bucket sits at its bound. The top of a price distribution is a long tail in one wide
    bucket (90 % → the training maximum, and ``+Inf``): with the exact ``mean`` (Prometheus'
    ``_sum``/``_count``) its centre is what the sum leaves after the other buckets, and its spread
    that of a uniform from its lower bound around that centre; without it, the midpoint."""
    if not cumulative:
        return None
    bounds = _finite_bounds(cumulative)
    counts = _counts(cumulative, bounds)
    n = sum(counts)
    if n <= 0 or not bounds:
        return None
    counts[-2:] = [counts[-2] + counts[-1]] if len(counts) >= 2 else counts  # +Inf joins the top finite bucket
    points, spreads = [bounds[0]], [0.0]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        points.append((lo + hi) / 2)
        spreads.append((hi - lo) ** 2 / 12)
    top = len(counts) - 1
    if mean is not None and top > 0 and counts[top] > 0:
        rest = sum(c * x for c, x in zip(counts[:top], points[:top], strict=True))
        centre = max((mean * n - rest) / counts[top], bounds[top - 1])
        points[top], spreads[top] = centre, (centre - bounds[top - 1]) ** 2 / 3
    centre_all = sum(c * x for c, x in zip(counts, points, strict=True)) / n
    var = sum(c * ((x - centre_all) ** 2 + w) for c, x, w in zip(counts, points, spreads, strict=True)) / n
    return n, centre_all, var


def mean_shift_test(
    champion: tuple[float, float, float] | None,
    challenger: tuple[float, float, float] | None,
    threshold: float,
    alpha: float = DEFAULT_ALPHA,
) -> Evidence:
    """The relative shift of the challenger's mean, ``(m₂ − m₁)/|m₁|``, from (count, mean, variance) of each."""
    if champion is None or challenger is None:
        return not_enough("no predictions", method="welch")
    (n1, m1, v1), (n2, m2, v2) = champion, challenger
    counts = {"champion": round(n1, 1), "challenger": round(n2, 1)}
    if min(n1, n2) < MIN_SAMPLES:
        return not_enough(f"only {min(n1, n2):.0f} predictions < {MIN_SAMPLES}", counts, method="welch")
    if abs(m1) < 1e-12:
        return not_enough("the champion's mean is 0", counts, method="welch")
    shift = (m2 - m1) / abs(m1)
    se = math.sqrt(v2 / n2 + (m2 / m1) ** 2 * v1 / n1) / abs(m1)
    z = float(stats.norm.ppf(1 - alpha))
    low, high = shift - z * se, shift + z * se
    p_value = float(stats.norm.sf((abs(shift) - threshold) / se)) if se > 0 else float(abs(shift) <= threshold)
    return Evidence(signed_verdict(low, high, threshold), shift, low, high, p_value, counts, method="welch (normal)")


def paired_shift_test(
    pairs: float | None, total: float | None, squares: float | None, threshold: float, alpha: float = DEFAULT_ALPHA
) -> Evidence:
    """The mean relative difference of the two answers to the same rows, from ``n``, ``Σr`` and ``Σr²``."""
    counts = {"pairs": round(pairs or 0.0, 1)}
    if not pairs or pairs < MIN_SAMPLES or total is None or squares is None:
        return not_enough(f"only {pairs or 0:.0f} paired answers < {MIN_SAMPLES}", counts, comparison="paired")
    mean = total / pairs
    var = max(squares / pairs - mean * mean, 0.0) * pairs / (pairs - 1)
    se = math.sqrt(var / pairs)
    t = float(stats.t.ppf(1 - alpha, pairs - 1))
    low, high = mean - t * se, mean + t * se
    p_value = float(stats.t.sf((abs(mean) - threshold) / se, pairs - 1)) if se > 0 else float(abs(mean) <= threshold)
    return Evidence(
        signed_verdict(low, high, threshold),
        mean,
        low,
        high,
        p_value,
        counts,
        comparison="paired",
        method="paired t",
    )
