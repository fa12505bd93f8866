"""Simulated rollouts at the demo's settings (issue 28): the real step loop and gates, seeded, no servers."""

from __future__ import annotations

from dataclasses import replace

from rollout.power import demo_scenario, rates, simulate, step_power

RUNS = 200


def test_an_equal_challenger_is_almost_never_rolled_back():
    """Another seed of the same model (4.5 % per-row disagreement, as the demo's pair)."""
    result = rates(demo_scenario(), RUNS, seed=1)
    print(f"equal challenger, {RUNS} rollouts: {result}")
    assert result["rolled_back"] <= 0.01
    assert result["promoted"] >= 0.95  # and it is promoted, not left without a decision


def test_the_same_model_is_promoted():
    result = rates(demo_scenario(disagreement=0.0), RUNS, seed=2)
    assert result["rolled_back"] == 0 and result["promoted"] >= 0.95


def test_a_challenger_five_percent_pricier_is_caught():
    result = rates(demo_scenario(shift=0.05), RUNS, seed=3)
    print(f"+5 % challenger, {RUNS} rollouts: {result}")
    assert result["rolled_back"] >= 0.95
    assert result["promoted"] <= 0.01


def test_without_pairs_a_small_step_waits_for_evidence_instead_of_rolling_back():
    """The two-sample comparison alone cannot tell 3 % at these counts: the run says so and changes nothing."""
    scenario = demo_scenario(shadow=0.0)
    verdict, steps = simulate(scenario, 4)
    assert verdict == "inconclusive"
    assert [s["decision"] for s in steps] == ["wait", "wait", "inconclusive"]
    assert all(s["failures"] == 0 for s in steps)
    shift = next(g for g in steps[-1]["gates"] if g["name"] == "mean_shift")
    assert shift["evidence"]["comparison"] == "marginal" and shift["evidence"]["verdict"] == "not enough evidence"


def test_each_look_tests_at_alpha_over_the_looks():
    _, steps = simulate(demo_scenario(), 5)
    assert steps[0]["alpha"] == demo_scenario().thresholds.alpha / 3


def test_power_grows_with_requests():
    base = demo_scenario()
    few, many = step_power(50, 10, True, base, 40), step_power(400, 10, True, base, 40)
    assert many["equal"] >= few["equal"] and many["shifted"] >= few["shifted"]
    assert many["equal"] >= 0.95 and many["shifted"] >= 0.95
    defaults = replace(base, thresholds=replace(base.thresholds, max_mean_shift=0.1))
    two_sample = step_power(1600, 10, False, defaults, 40, shift=0.15)
    assert two_sample["equal"] >= 0.9 and two_sample["shifted"] >= 0.75  # the default 10 % from histograms alone
