"""Simulated rollouts: the real step loop and gates on synthetic traffic, and the power curve.

:func:`simulate` drives :class:`rollout.analysis.Analysis` — its looks, tests, decisions — with a
simulated clock, backend and Prometheus: requests arrive at ``rps`` (Poisson), are split by the
step's weight, and, with ``shadow``, the champion's requests are also answered by the challenger
(as the local router mirrors them). The figures are those measured on the demo's own pair (the
full ames configuration, seeds 0 and 7, on 3 000 rows of the demo's synthetic traffic): the
champion's answers are log-normal (log-mean 12.03, log-sd 0.18 — the synthetic rows draw each
feature independently, so they spread less than the sale prices); the challenger answers the
same row with ``price × (1 + shift) × exp(ε)``, ``ε ~ N(0, 0.045)`` (the two seeds disagree per
row by 4.5 %, and their means by 0.01 %). Each version's histogram buckets are the deciles
(min … max) of its own 2 000 "training" predictions (log-sd 0.4, the sale prices'), as the
predictors' are, so the rebinning and the pooling of nearly empty tail buckets are exercised too.

``python -m rollout.power`` prints the power curve of ``rollout/README.md``: per requests per
step, how often a +5 % challenger is caught and an equal one passes, for the paired and the
two-sample comparison, and the whole-rollout rates at the demo's settings.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from common.config import DEMO_CANARY
from rollout.analysis import Analysis, Verdict
from rollout.analysis_config import AnalysisConfig, Thresholds
from rollout.backends.base import RolloutStatus

LOG_MEAN, TRAFFIC_LOG_SD, TRAINING_LOG_SD = 12.03, 0.18, 0.4  # measured on the demo's pair (module doc)
DECILES = np.linspace(0.0, 1.0, 11)


@dataclass
class Scenario:
    """One simulated rollout's settings (the demo's by default: ``housing/demo.py``)."""

    steps: list[int] = field(default_factory=lambda: [10, 50, 100])
    rps: float = 40.0
    interval: float = 8.0
    min_requests: int = 20
    max_failures: int = 2
    max_wait_factor: float = 3.0
    shadow: float = 1.0  # share of the champion's requests the challenger also answers (paired comparison)
    thresholds: Thresholds = field(default_factory=Thresholds)
    shift: float = 0.0  # the challenger's prices × (1 + shift)
    disagreement: float = 0.045  # per-row log-sd between the two versions' answers
    traffic_log_sd: float = TRAFFIC_LOG_SD  # spread of the champion's answers on the traffic


class _NullLog:
    path = Path("simulated.jsonl")

    def write(self, event: str, **data: Any) -> dict[str, Any]:
        return {"event": event, **data}


class World:
    """Simulated traffic through a weighted split, counted the way Prometheus sees it."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self.s, self.rng, self.now, self.weight = scenario, rng, 0.0, 0
        train = np.exp(rng.normal(LOG_MEAN, TRAINING_LOG_SD, 2000))
        self.bounds = {
            "champion": np.quantile(train, DECILES),
            "challenger": np.quantile(self._answer(train), DECILES),
        }
        self.t = np.empty(0)
        self.to_challenger = np.empty(0, dtype=bool)
        self.mirrored = np.empty(0, dtype=bool)
        self.a = np.empty(0)
        self.b = np.empty(0)

    def _answer(self, a: np.ndarray) -> np.ndarray:
        return a * (1 + self.s.shift) * np.exp(self.rng.normal(0.0, self.s.disagreement, a.size))

    def sleep(self, seconds: float) -> None:
        n = self.rng.poisson(self.s.rps * seconds)
        t = np.sort(self.now + self.rng.uniform(0, seconds, n))
        a = np.exp(self.rng.normal(LOG_MEAN, self.s.traffic_log_sd, n))
        to_challenger = self.rng.uniform(0, 100, n) < self.weight
        mirrored = ~to_challenger & (self.rng.uniform(0, 1, n) < self.s.shadow) & (self.weight < 100)
        self.t = np.concatenate([self.t, t])
        self.to_challenger = np.concatenate([self.to_challenger, to_challenger])
        self.mirrored = np.concatenate([self.mirrored, mirrored])
        self.a = np.concatenate([self.a, a])
        self.b = np.concatenate([self.b, self._answer(a)])
        self.now += seconds

    def clock(self) -> float:
        return self.now

    @staticmethod
    def _histogram(values: np.ndarray, bounds: np.ndarray) -> dict[str, float]:
        cumulative = np.searchsorted(np.sort(values), bounds, side="right")
        out = {repr(float(b)): float(c) for b, c in zip(bounds, cumulative, strict=True)}
        out["+Inf"] = float(values.size)
        return out

    def read(self, step_window: str, baseline_window: str) -> dict[str, Any]:
        step = self.t > self.now - float(step_window.rstrip("s"))
        base = self.t > self.now - float(baseline_window.rstrip("s"))
        champion = self.a[base & ~self.to_challenger]
        challenger = self.b[step & (self.to_challenger | self.mirrored)]  # the predictor counts mirrored answers
        pairs = base & self.mirrored  # the same rows answered by both: the whole rollout so far
        r = (self.b[pairs] - self.a[pairs]) / self.a[pairs]
        values: dict[str, Any] = {
            "challenger.requests": float(np.sum(step & self.to_challenger)),
            "champion.requests": float(champion.size),
            "challenger.error_rate": 0.0,
            "error_rate": 0.0,
            "p95_latency": 0.01,
            "challenger.buckets": self._histogram(challenger, self.bounds["challenger"]),
            "champion.buckets": self._histogram(champion, self.bounds["champion"]),
            "challenger.prediction_mean": float(challenger.mean()) if challenger.size else None,
            "champion.prediction_mean": float(champion.mean()) if champion.size else None,
        }
        if r.size:
            values.update({"paired.pairs": float(r.size), "paired.sum": float(r.sum()), "paired.squares": float(r @ r)})
        return values


class _Backend:
    name = "simulated"

    def __init__(self, world: World) -> None:
        self.world = world

    def _at(self, percent: int) -> RolloutStatus:
        self.world.weight = percent
        return RolloutStatus("simulated", challenger_percent=percent, champion_percent=100 - percent)

    def start(self, uri: str, percent: int) -> RolloutStatus:
        return self._at(percent)

    def set_weight(self, percent: int) -> RolloutStatus:
        return self._at(percent)

    def promote(self) -> RolloutStatus:
        return self._at(0)

    def rollback(self, reason: str) -> RolloutStatus:
        return self._at(0)

    def status(self) -> RolloutStatus:
        return RolloutStatus("simulated", challenger_percent=self.world.weight)


class _SimulatedAnalysis(Analysis):
    def read_values(self, step_window: str, baseline_window: str) -> tuple[dict[str, Any], dict[str, str]]:
        return self.world.read(step_window, baseline_window), {}


def simulate(scenario: Scenario, seed: int) -> tuple[Verdict, list[dict[str, Any]]]:
    """One simulated rollout: its verdict and its step records."""
    world = World(scenario, np.random.default_rng(seed))
    config = AnalysisConfig(
        steps=list(scenario.steps),
        interval=scenario.interval,
        min_requests=scenario.min_requests,
        max_failures=scenario.max_failures,
        max_wait_factor=scenario.max_wait_factor,
        settle=0.0,
        thresholds=scenario.thresholds,
    )
    analysis = _SimulatedAnalysis(
        _Backend(world), None, config, "1", "2", _NullLog(), sleep=world.sleep, clock=world.clock
    )  # type: ignore[arg-type]
    analysis.world = world  # type: ignore[attr-defined]
    outcome = analysis.run("simulated://challenger")
    return outcome.decision, outcome.steps


def rates(scenario: Scenario, runs: int, seed: int = 0) -> dict[str, float]:
    """Share of ``runs`` simulated rollouts promoted, rolled back and inconclusive."""
    counts = {v.value: 0 for v in Verdict}
    for i in range(runs):
        counts[simulate(scenario, seed + i)[0].value] += 1
    return {k: v / runs for k, v in counts.items()}


def step_power(
    requests: int, weight: int, paired: bool, base: Scenario, runs: int, shift: float = 0.05, seed: int = 0
) -> dict[str, float]:
    """At one step of ``requests`` requests (both versions; one look, at the full ``alpha``): how
    often it passes an equal challenger ("within" on every gate) and fails one shifted by ``shift``."""
    step = replace(
        base,
        steps=[100] if weight == 100 else [weight, 100],
        interval=requests / base.rps,
        max_wait_factor=1.0,
        min_requests=0,  # the gates' own evidence only
        shadow=base.shadow if paired else 0.0,
    )
    out = {}
    for label, scenario in (("equal", replace(step, shift=0.0)), ("shifted", replace(step, shift=shift))):
        hits = 0
        for i in range(runs):
            decision = simulate(scenario, seed + i)[1][0]["decision"]
            hits += decision in (("advance", "promote") if label == "equal" else ("hold", "rollback"))
        out[label] = hits / runs
    return out


def _table(base: Scenario, requests: list[int], weight: int, runs: int, shift: float, pairs: bool) -> None:
    head = ["requests per step", "of them challenger"]
    for name in ("paired", "two-sample") if pairs else ("two-sample",):
        head += [f"{name}: equal passes", f"{name}: +{shift:.0%} caught"]
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---:" for _ in head) + " |")
    for n in requests:
        row: list[Any] = [n, round(n * weight / 100)]
        for paired in (True, False) if pairs else (False,):
            p = step_power(n, weight, paired, base, runs, shift)
            row += [p["equal"], p["shifted"]]
        print("| " + " | ".join(f"{x:.0%}" if isinstance(x, float) else str(x) for x in row) + " |")


def demo_scenario(**overrides: Any) -> Scenario:
    """The demo's settings (``housing/demo.py`` passes the same flags to ``housing rollout run``)."""
    thresholds = Thresholds(max_mean_shift=DEMO_CANARY["max_mean_shift"])
    scenario = Scenario(
        steps=[int(s) for s in DEMO_CANARY["steps"].split(",")],
        rps=DEMO_CANARY["traffic"],
        interval=DEMO_CANARY["interval"],
        min_requests=DEMO_CANARY["min_requests"],
        shadow=DEMO_CANARY["shadow"],
        thresholds=thresholds,
    )
    return replace(scenario, **overrides)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rollout.power", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="simulated steps or rollouts per figure")
    parser.add_argument("--requests", default="50,100,200,400,800,1600,3200", help="requests per step (both versions)")
    parser.add_argument("--weight", type=int, default=10, help="the step's challenger percent")
    args = parser.parse_args(argv)
    requests = [int(x) for x in args.requests.split(",")]
    base = demo_scenario()
    t = base.thresholds
    print(
        f"demo settings: steps {base.steps} at {base.rps:g} req/s, {base.interval:g} s per look, shadow "
        f"{base.shadow:g}, max_mean_shift {t.max_mean_shift:g}, max_psi {t.max_psi:g}, alpha {t.alpha:g}\n"
    )
    print(f"one look at a {args.weight} % step with the demo's thresholds, {args.runs} simulated steps per figure:\n")
    _table(base, requests, args.weight, args.runs, 0.05, pairs=True)
    defaults = replace(base, thresholds=Thresholds(), shadow=0.0)
    print(
        f"\nthe same with the default thresholds (max_mean_shift {defaults.thresholds.max_mean_shift:g}), no pairs:\n"
    )
    _table(defaults, requests, args.weight, args.runs, 0.15, pairs=False)
    print(f"\nwhole rollouts at the demo's settings, {args.runs} each:\n")
    for label, shift in (("equal", 0.0), ("+5 %", 0.05)):
        r = rates(replace(base, shift=shift), args.runs, seed=10_000)
        print(f"- {label}: " + ", ".join(f"{k} {v:.1%}" for k, v in r.items()))


if __name__ == "__main__":
    main()
