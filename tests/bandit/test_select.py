"""The warm-up gate: which strategy chose, and the propensity that is logged."""

from __future__ import annotations

import random

import pytest

from bandit import STRATEGY_NAMES, Selection, VariantMetrics, WeightedSampling, get_strategy, select
from tests.bandit.helpers import assert_frequencies_match, metrics, strategy_at


def test_weighted_sampling_chooses_until_every_variant_passes_warmup():
    strategy = get_strategy("UCB1", {"floor": 0.0})
    ms = (
        VariantMetrics("A", 1.0, 11, 1, 1.0),
        VariantMetrics("B", 3.0, 10, 9, 9.0),  # exactly warmup: still warming up
    )
    sel = select(strategy, ms, random.Random(0), warmup=10)
    assert sel.strategy == "WeightedSampling"
    assert sel.propensity == pytest.approx(WeightedSampling().allocation(ms)[sel.variant_name])


def test_configured_strategy_chooses_after_warmup():
    strategy = get_strategy("UCB1", {"floor": 0.0})
    ms = metrics(("A", 11, 1), ("B", 11, 9))
    sel = select(strategy, ms, random.Random(0), warmup=10)
    assert sel == Selection("B", "UCB1", 1.0)


def test_zero_warmup_still_waits_for_one_invocation_per_variant():
    strategy = get_strategy("ThompsonSampling", {"floor": 0.0})
    assert select(strategy, metrics(("A", 5, 1), ("B", 0, 0)), random.Random(0)).strategy == (
        "WeightedSampling"
    )
    assert select(strategy, metrics(("A", 5, 1), ("B", 1, 0)), random.Random(0)).strategy == (
        "ThompsonSampling"
    )


def test_negative_warmup_is_rejected():
    with pytest.raises(ValueError, match="warmup"):
        select(
            get_strategy("UCB1", {"floor": 0.0}), metrics(("A", 1, 0)), random.Random(0), warmup=-1
        )


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_propensity_is_the_allocation_of_the_pick(name):
    strategy = strategy_at(name, 0.2)
    ms = metrics(("A", 40, 4), ("B", 35, 7), ("C", 30, 2))
    alloc = strategy.allocation(ms)
    rng = random.Random(5)
    for _ in range(200):
        sel = select(strategy, ms, rng, warmup=20)
        assert sel.strategy == name
        assert sel.propensity == pytest.approx(alloc[sel.variant_name], abs=1e-12)
        assert sel.propensity > 0.0


def test_select_is_distributed_as_the_allocation():
    strategy = get_strategy("ThompsonSampling", {"floor": 0.0})
    ms = metrics(("A", 40, 4), ("B", 35, 7), ("C", 30, 2))
    assert_frequencies_match(
        lambda rng: select(strategy, ms, rng).variant_name, strategy.allocation(ms)
    )


def test_warmup_selection_is_distributed_as_the_initial_weights():
    ms = (VariantMetrics("A", 1.0), VariantMetrics("B", 4.0))
    assert_frequencies_match(
        lambda rng: select(get_strategy("UCB1", {"floor": 0.0}), ms, rng).variant_name,
        {"A": 0.2, "B": 0.8},
    )
