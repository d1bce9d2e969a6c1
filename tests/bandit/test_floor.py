"""The exploration floor: every variant keeps a share, and the logged propensity is exact."""

from __future__ import annotations

import math
import random

import pytest

from bandit import STRATEGIES, ParameterError, WeightedSampling, get_strategy, select
from bandit.strategy import FLOOR, AdaptiveStrategy
from tests.bandit.helpers import assert_frequencies_match, metrics

ADAPTIVE = [name for name, cls in STRATEGIES.items() if issubclass(cls, AdaptiveStrategy)]
# A lopsided state: without a floor every adaptive strategy all but abandons A and C.
LOPSIDED = metrics(("A", 3000, 100), ("B", 3000, 400), ("C", 3000, 90))


def test_every_learning_strategy_takes_the_floor_and_the_fixed_split_does_not():
    assert set(ADAPTIVE) == {"EpsilonGreedy", "UCB1", "ThompsonSampling", "TopTwoThompson"}
    assert "floor" not in {p.name for p in WeightedSampling.parameters}
    for name in ADAPTIVE:
        assert FLOOR in STRATEGIES[name].parameters


@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize("floor", [0.05, 0.2])
def test_each_variant_gets_at_least_the_floor_mixed_exactly_into_the_allocation(name, floor):
    bare = get_strategy(name, {"floor": 0.0}).allocation(LOPSIDED)
    floored = get_strategy(name, {"floor": floor}).allocation(LOPSIDED)
    assert min(bare.values()) < floor  # the floor has something to do here
    assert math.fsum(floored.values()) == pytest.approx(1.0, abs=1e-12)
    for variant, share in bare.items():
        assert floored[variant] >= floor - 1e-12
        assert floored[variant] == pytest.approx(floor + (1.0 - 3 * floor) * share, abs=1e-12)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_a_floor_above_an_even_share_is_an_even_split(name):
    allocation = get_strategy(name, {"floor": 0.5}).allocation(LOPSIDED)
    assert allocation == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}, abs=1e-12)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_the_logged_propensity_is_the_probability_the_pick_was_drawn_with(name):
    strategy = get_strategy(name, {"floor": 0.1})
    allocation = strategy.allocation(LOPSIDED)
    rng = random.Random(5)
    for _ in range(200):
        picked = select(strategy, LOPSIDED, rng)
        assert picked.propensity == allocation[picked.variant_name]
    assert_frequencies_match(lambda r: select(strategy, LOPSIDED, r).variant_name, allocation)


@pytest.mark.parametrize("value", [-0.01, 0.51, math.nan, "0.1"])
def test_a_floor_out_of_range_is_an_error_naming_it(value):
    with pytest.raises(ParameterError, match="floor") as raised:
        get_strategy("ThompsonSampling", {"floor": value})
    assert raised.value.parameter == "floor"
