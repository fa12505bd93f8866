"""Statistics on Prometheus histograms (cumulative ``{le: count}``): shares, means, rebinning (pure).

The distribution gates' tests on them (PSI, mean shift) are in :mod:`rollout.evidence`."""

from __future__ import annotations

import math


def bucket_probabilities(cumulative: dict[str, float]) -> list[tuple[float, float]]:
    """Cumulative ``{le: count}`` → ``[(upper bound, probability)]`` per bucket."""
    items = sorted(((float(le), c) for le, c in cumulative.items()), key=lambda t: t[0])
    total = items[-1][1] if items else 0.0
    out, previous = [], 0.0
    for upper, count in items:
        out.append((upper, max(count - previous, 0.0) / total if total > 0 else 0.0))
        previous = count
    return out


def bucket_mean(cumulative: dict[str, float]) -> float | None:
    """Mean estimated from a cumulative histogram (bucket midpoints; the +Inf bucket at its lower
    bound). Used when a histogram's ``_sum`` is not exported — prometheus_client omits ``_sum``
    whenever the lowest bucket bound is negative."""
    probs = bucket_probabilities(cumulative)
    if not probs or sum(p for _, p in probs) == 0:
        return None
    finite = [u for u, _ in probs if math.isfinite(u)]
    if not finite:
        return None
    total, lower = 0.0, None
    for upper, p in probs:
        if not math.isfinite(upper):
            mid = finite[-1]
        elif lower is None:
            mid = upper
        else:
            mid = (lower + upper) / 2
        total += p * mid
        lower = upper if math.isfinite(upper) else lower
    return total


def rebin(cumulative: dict[str, float], bounds: list[float]) -> dict[str, float]:
    """A cumulative histogram re-expressed on other bucket ``bounds`` (``le`` values).

    Each predictor takes its histogram buckets from its own bundle's reference deciles, so the
    champion's and the challenger's ``le`` differ; the CDF is interpolated linearly inside
    buckets (as ``histogram_quantile`` does), with the first bucket assumed as wide as the second.
    """
    pts = sorted((float(le), c) for le, c in cumulative.items())
    finite = [(b, c) for b, c in pts if math.isfinite(b)]
    total = pts[-1][1] if pts else 0.0
    if len(finite) >= 2:
        finite.insert(0, (finite[0][0] - (finite[1][0] - finite[0][0]), 0.0))
    elif len(finite) == 1:
        finite.insert(0, (finite[0][0] - 1.0, 0.0))

    def cdf(x: float) -> float:
        if not math.isfinite(x):
            return total
        if not finite or x <= finite[0][0]:
            return 0.0
        for (x0, c0), (x1, c1) in zip(finite, finite[1:], strict=False):
            if x <= x1:
                return c0 + (c1 - c0) * (x - x0) / (x1 - x0) if x1 > x0 else c1
        return finite[-1][1]

    return {repr(b) if math.isfinite(b) else "+Inf": cdf(b) for b in bounds}
