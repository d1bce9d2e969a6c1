"""TopTwoThompson: the exact allocation, its edge cases, and picks distributed as logged."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from bandit import ThompsonSampling, get_strategy, select
from bandit.posterior import beta_parameters
from bandit.top_two import TopTwoThompson, top_two_allocation
from tests.bandit.helpers import metrics

DRAWS = 40_000


def test_the_formula_on_a_hand_worked_example():
    # p = (0.5, 0.3, 0.2), beta = 0.5:
    # A: 0.25 + 0.5 * (0.3 * 0.5 / 0.7 + 0.2 * 0.5 / 0.8) = 0.25 + 0.5 * (0.2142857 + 0.125)
    expected_a = 0.25 + 0.5 * (0.3 * 0.5 / 0.7 + 0.2 * 0.5 / 0.8)
    expected_b = 0.15 + 0.5 * (0.5 * 0.3 / 0.5 + 0.2 * 0.3 / 0.8)
    expected_c = 0.10 + 0.5 * (0.5 * 0.2 / 0.5 + 0.3 * 0.2 / 0.7)
    allocation = top_two_allocation([0.5, 0.3, 0.2], 0.5)
    assert allocation == pytest.approx([expected_a, expected_b, expected_c], abs=1e-15)
    assert math.fsum(allocation) == pytest.approx(1.0, abs=1e-15)


def test_a_certain_leader_keeps_beta_and_the_others_share_the_rest_evenly():
    assert top_two_allocation([1.0, 0.0, 0.0], 0.7) == pytest.approx([0.7, 0.15, 0.15])
    assert top_two_allocation([0.0, 1.0], 0.25) == pytest.approx([0.75, 0.25])


def test_two_variants_get_beta_and_one_minus_beta_around_the_thompson_split():
    # With two variants the challenger is always the other one: P(A) = beta p + (1 - beta)(1 - p).
    assert top_two_allocation([0.9, 0.1], 0.5) == pytest.approx([0.5, 0.5])
    assert top_two_allocation([0.9, 0.1], 0.8) == pytest.approx([0.74, 0.26])


def test_one_variant_gets_everything():
    assert top_two_allocation([1.0], 0.3) == [1.0]
    assert TopTwoThompson().allocation(metrics(("A", 50, 5))) == {"A": 1.0}


def test_the_runner_up_keeps_traffic_that_thompson_takes_away():
    ms = metrics(("A", 2000, 100), ("B", 2000, 140), ("C", 2000, 60))
    thompson = ThompsonSampling(floor=0.0).allocation(ms)
    top_two = get_strategy("TopTwoThompson", {"beta": 0.5, "floor": 0.0}).allocation(ms)
    assert thompson["B"] > 0.99  # Thompson has all but stopped measuring A
    assert top_two["B"] == pytest.approx(0.5, abs=0.01)
    assert top_two["A"] > 0.45


def russo_pick(ms, beta: float, rng: random.Random) -> str:
    """The algorithm as the paper states it: one posterior draw names the leader; with
    probability 1 - beta, draw again until another variant wins, and play that one."""

    def argmax_draw() -> str:
        draws = {m.variant_name: rng.betavariate(*beta_parameters(m)) for m in ms}
        return max(draws, key=draws.__getitem__)

    leader = argmax_draw()
    if rng.random() < beta:
        return leader
    while (challenger := argmax_draw()) == leader:
        pass
    return challenger


@pytest.mark.parametrize("beta", [0.3, 0.5, 0.8])
def test_the_allocation_is_the_law_of_the_papers_two_draw_algorithm(beta):
    # Posteriors close enough that the resampling loop ends quickly.
    ms = metrics(("A", 60, 10), ("B", 55, 12), ("C", 50, 6))
    allocation = TopTwoThompson(beta, floor=0.0).allocation(ms)
    rng = random.Random(11)
    counts = Counter(russo_pick(ms, beta, rng) for _ in range(DRAWS))
    for name, p in allocation.items():
        # The binomial standard error of a frequency; 4 of them (and the quadrature's error,
        # under 5e-4, is small beside 4 * sqrt(p (1 - p) / 40000) >= 0.005 for these p).
        sigma = math.sqrt(p * (1.0 - p) / DRAWS)
        assert abs(counts[name] / DRAWS - p) <= 4.0 * sigma + 5e-4, (name, counts[name], p)


def test_logged_propensities_are_the_frequencies_of_the_picks():
    ms = metrics(("A", 400, 40), ("B", 380, 49), ("C", 390, 35))
    strategy = get_strategy("TopTwoThompson", {"beta": 0.6})
    rng = random.Random(3)
    picks = [select(strategy, ms, rng) for _ in range(DRAWS)]
    counts = Counter(p.variant_name for p in picks)
    allocation = strategy.allocation(ms)
    for pick in picks[:100]:
        assert pick.strategy == "TopTwoThompson"
        assert pick.propensity == allocation[pick.variant_name]
    for name, p in allocation.items():
        sigma = math.sqrt(p * (1.0 - p) / DRAWS)
        assert abs(counts[name] / DRAWS - p) <= 4.0 * sigma, (name, counts[name], p)


def test_a_revenue_endpoints_default_keeps_three_tenths_of_the_users_on_the_runner_up():
    # Revenue (continuous rewards) whose leader is all but certain after 20,000 users each.
    # The default for continuous rewards is beta 0.7 (bench/decisions.py): with two variants
    # the runner-up gets floor + (1 - 2 floor)(1 - beta) = 0.01 + 0.98 * 0.3 = 0.304 as p -> 1;
    # at binary's 0.9 it gets 0.108, and a difference's variance, 1/p_A + 1/p_B, would be 2.6x
    # an even split's (0.304: 1.2x).
    from bandit import DEFAULT_STRATEGY
    from bandit.metrics import VariantMetrics

    def revenue(name: str, users: int, buyers: int) -> VariantMetrics:
        # Every buyer spends 10: sum y = 10 b, sum y^2 = 100 b.
        return VariantMetrics(name, 1.0, users, buyers, 10.0 * buyers, 100.0 * buyers)

    lead = (revenue("A", 20_000, 1_000), revenue("B", 20_000, 1_400))
    continuous = get_strategy(DEFAULT_STRATEGY, reward="continuous").allocation(lead)
    assert continuous["A"] == pytest.approx(0.304, abs=1e-3)
    assert get_strategy(DEFAULT_STRATEGY).allocation(
        tuple(
            VariantMetrics(m.variant_name, 1.0, 20_000, m.conversion_count, m.reward_sum / 10)
            for m in lead
        )
    )["A"] == pytest.approx(0.108, abs=1e-3)
