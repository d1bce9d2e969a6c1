"""Allocation rules of the four strategies, their edge cases, and choose() following them."""

from __future__ import annotations

import math
import random

import pytest

from bandit import (
    STRATEGY_NAMES,
    UCB1,
    EpsilonGreedy,
    ThompsonSampling,
    VariantMetrics,
    WeightedSampling,
)
from tests.bandit.helpers import assert_frequencies_match, metrics, strategy_at

ALL = [
    WeightedSampling(),
    EpsilonGreedy(0.2, floor=0.0),
    UCB1(floor=0.0),
    ThompsonSampling(floor=0.0),
]


def test_weighted_sampling_is_proportional_to_initial_weights_and_ignores_feedback():
    ms = (
        VariantMetrics("A", 1.0, 500, 100, 100.0),
        VariantMetrics("B", 3.0, 10, 0, 0.0),
    )
    assert WeightedSampling().allocation(ms) == pytest.approx({"A": 0.25, "B": 0.75})


def test_weighted_sampling_with_all_zero_weights_is_uniform():
    ms = tuple(VariantMetrics(n, 0.0) for n in "ABC")
    assert WeightedSampling().allocation(ms) == pytest.approx({n: 1 / 3 for n in "ABC"})


def test_weighted_sampling_never_picks_a_zero_weight_variant():
    ms = (VariantMetrics("A", 0.0), VariantMetrics("B", 2.0), VariantMetrics("C", 0.0))
    assert WeightedSampling().allocation(ms) == {"A": 0.0, "B": 1.0, "C": 0.0}
    rng = random.Random(3)
    assert {WeightedSampling().choose(ms, rng) for _ in range(1000)} == {"B"}


def test_epsilon_greedy_gives_epsilon_over_k_to_each_and_the_rest_to_the_best():
    ms = metrics(("A", 100, 10), ("B", 100, 20), ("C", 100, 5))
    eps = 0.3
    assert EpsilonGreedy(eps, floor=0.0).allocation(ms) == pytest.approx(
        {"A": eps / 3, "B": eps / 3 + 1 - eps, "C": eps / 3}
    )


def test_epsilon_greedy_splits_the_greedy_share_among_tied_best():
    ms = metrics(("A", 100, 20), ("B", 50, 5), ("C", 200, 40))  # A and C tie at 0.2
    alloc = EpsilonGreedy(0.1, floor=0.0).allocation(ms)
    assert alloc["A"] == pytest.approx(alloc["C"])
    assert alloc["A"] == pytest.approx(0.1 / 3 + 0.45)
    assert alloc["B"] == pytest.approx(0.1 / 3)


def test_epsilon_greedy_treats_an_untried_variant_as_tied_best():
    ms = metrics(("A", 100, 90), ("B", 0, 0))
    assert EpsilonGreedy(0.0, floor=0.0).allocation(ms) == {"A": 0.0, "B": 1.0}


@pytest.mark.parametrize("eps", [0.0, 1.0])
def test_epsilon_bounds_mean_pure_greedy_and_pure_exploration(eps):
    ms = metrics(("A", 100, 10), ("B", 100, 20))
    expected = {"A": 0.0, "B": 1.0} if eps == 0.0 else {"A": 0.5, "B": 0.5}
    assert EpsilonGreedy(eps, floor=0.0).allocation(ms) == pytest.approx(expected)


def test_ucb1_puts_everything_on_the_highest_upper_confidence_bound():
    # A: 0.3 + sqrt(2 ln 110 / 100) = 0.607; B: 0.2 + sqrt(2 ln 110 / 10) = 1.170.
    ms = metrics(("A", 100, 30), ("B", 10, 2))
    bound_a = 0.3 + math.sqrt(2 * math.log(110) / 100)
    bound_b = 0.2 + math.sqrt(2 * math.log(110) / 10)
    assert bound_b > bound_a
    assert UCB1(floor=0.0).allocation(ms) == {"A": 0.0, "B": 1.0}


def test_ucb1_exploits_once_uncertainty_is_small():
    ms = metrics(("A", 10_000, 3_000), ("B", 10_000, 2_000))
    assert UCB1(floor=0.0).allocation(ms) == {"A": 1.0, "B": 0.0}


def test_ucb1_splits_among_untried_variants_first():
    ms = metrics(("A", 100, 90), ("B", 0, 0), ("C", 0, 0))
    assert UCB1(floor=0.0).allocation(ms) == {"A": 0.0, "B": 0.5, "C": 0.5}


def test_ucb1_splits_exact_ties():
    ms = metrics(("A", 40, 10), ("B", 40, 10), ("C", 40, 2))
    assert UCB1(floor=0.0).allocation(ms) == pytest.approx({"A": 0.5, "B": 0.5, "C": 0.0})


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: s.name)
def test_ties_are_not_broken_by_list_order(strategy):
    """Two identical variants get the same share, and choose() really picks both."""
    ms = metrics(("A", 60, 6), ("B", 60, 12), ("C", 60, 12))
    reordered = (ms[2], ms[0], ms[1])
    for order in (ms, reordered):
        alloc = strategy.allocation(order)
        assert alloc["B"] == pytest.approx(alloc["C"], abs=1e-9)
        picks = {strategy.choose(order, random.Random(seed)) for seed in range(200)}
        assert {"B", "C"} <= picks


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: s.name)
def test_no_invocations_yet_gives_equal_shares_for_equal_weights(strategy):
    ms = tuple(VariantMetrics(n) for n in "ABCD")
    assert strategy.allocation(ms) == pytest.approx({n: 0.25 for n in "ABCD"})


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: s.name)
def test_one_variant_gets_everything(strategy):
    ms = metrics(("only", 10, 3))
    assert strategy.allocation(ms) == {"only": 1.0}
    assert strategy.choose(ms, random.Random(0)) == "only"


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: s.name)
def test_rewards_above_invocations_count_as_all_converted(strategy):
    clipped = (VariantMetrics("A", 1.0, 50, 10, 10.0), VariantMetrics("B", 1.0, 40, 40, 40.0))
    excess = (VariantMetrics("A", 1.0, 50, 10, 10.0), VariantMetrics("B", 1.0, 40, 40, 900.0))
    assert strategy.allocation(excess) == pytest.approx(strategy.allocation(clipped), abs=1e-12)


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: s.name)
def test_empty_metrics_are_rejected(strategy):
    with pytest.raises(ValueError, match="at least one variant"):
        strategy.allocation(())
    with pytest.raises(ValueError, match="at least one variant"):
        strategy.choose([], random.Random(0))


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: s.name)
def test_duplicate_variant_names_are_rejected(strategy):
    with pytest.raises(ValueError, match="duplicate variant names: \\['A'\\]"):
        strategy.allocation(metrics(("A", 1, 0), ("B", 1, 0), ("A", 2, 1)))


@pytest.mark.parametrize(
    "field, value",
    [
        ("invocation_count", -1),
        ("conversion_count", -3),
        ("reward_sq_sum", -0.5),
        ("weighted_reward_sq_sum", -1.0),
        ("weight_sum", -1.0),
        ("conversion_count", 1.5),
        ("reward_sum", math.nan),
        ("initial_variant_weight", math.nan),
        ("initial_variant_weight", -1.0),
        ("invocation_count", math.inf),
    ],
)
def test_negative_or_nan_counts_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        VariantMetrics("A", **{field: value})


def test_continuous_sums_may_be_negative():
    """Revenue can be a refund: the plain and weighted reward sums take any finite sign."""
    m = VariantMetrics("A", 1.0, 3, 1, -2.5, 6.25, 6.0, 12.0, -5.0, -10.0, 25.0)
    assert (m.reward_sum, m.weighted_reward_sum, m.weighted_reward_cross_sum) == (-2.5, -5.0, -10.0)


def test_epsilon_outside_unit_interval_is_rejected():
    for bad in (-0.01, 1.01, math.nan, "0.1", True):
        with pytest.raises(ValueError, match="epsilon"):
            EpsilonGreedy(bad)


CASES = {
    "fresh": metrics(("A", 0, 0), ("B", 0, 0), ("C", 0, 0)),
    "early": metrics(("A", 30, 3), ("B", 25, 5), ("C", 20, 1)),
    "late": metrics(("A", 3000, 150), ("B", 2800, 168), ("C", 2900, 160)),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_choose_is_distributed_as_the_allocation(name, case):
    strategy = strategy_at(name, 0.3)
    ms = CASES[case]
    assert_frequencies_match(lambda rng: strategy.choose(ms, rng), strategy.allocation(ms))


def test_allocation_is_a_copy_callers_cannot_corrupt():
    strategy = ThompsonSampling(floor=0.0)
    ms = CASES["early"]
    strategy.allocation(ms)["A"] = 5.0
    assert sum(strategy.allocation(ms).values()) == pytest.approx(1.0)
