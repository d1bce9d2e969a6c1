"""The public API other packages code against: names, lookup, and no numpy on import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import bandit
from bandit import (
    STRATEGY_NAMES,
    UCB1,
    EpsilonGreedy,
    Strategy,
    ThompsonSampling,
    WeightedSampling,
    get_strategy,
)


def test_public_api_is_pinned():
    assert sorted(bandit.__all__) == sorted(
        [
            "VariantMetrics",
            "Strategy",
            "WeightedSampling",
            "EpsilonGreedy",
            "UCB1",
            "ThompsonSampling",
            "get_strategy",
            "STRATEGY_NAMES",
            "select",
            "Selection",
            "deciding_strategy",
        ]
    )
    for name in bandit.__all__:
        assert hasattr(bandit, name)


def test_strategy_names_are_the_articles():
    assert STRATEGY_NAMES == ("WeightedSampling", "EpsilonGreedy", "UCB1", "ThompsonSampling")


@pytest.mark.parametrize(
    "name, cls",
    [
        ("WeightedSampling", WeightedSampling),
        ("EpsilonGreedy", EpsilonGreedy),
        ("UCB1", UCB1),
        ("ThompsonSampling", ThompsonSampling),
    ],
)
def test_get_strategy_by_name(name, cls):
    strategy = get_strategy(name)
    assert type(strategy) is cls
    assert isinstance(strategy, Strategy)
    assert strategy.name == name


def test_get_strategy_passes_epsilon_to_epsilon_greedy():
    assert get_strategy("EpsilonGreedy", epsilon=0.25).epsilon == 0.25
    assert get_strategy("EpsilonGreedy").epsilon == 0.1


@pytest.mark.parametrize("name", ["WeightedSampling", "UCB1", "ThompsonSampling"])
def test_get_strategy_accepts_parameters_it_does_not_use(name):
    assert get_strategy(name, epsilon=0.1, warmup=5).name == name


@pytest.mark.parametrize("name", ["WeightedSampling", "EpsilonGreedy", "UCB1", "ThompsonSampling"])
@pytest.mark.parametrize("epsilon", [-0.1, 1.5, float("nan")])
def test_get_strategy_rejects_epsilon_outside_unit_interval(name, epsilon):
    with pytest.raises(ValueError, match="epsilon must be"):
        get_strategy(name, epsilon=epsilon)


def test_unknown_strategy_names_the_valid_choices():
    with pytest.raises(ValueError) as info:
        get_strategy("thompson")
    message = str(info.value)
    assert "'thompson'" in message
    for name in STRATEGY_NAMES:
        assert name in message


def test_request_path_and_stats_import_neither_numpy_nor_scipy():
    script = textwrap.dedent(
        """
        import random, sys
        import bandit
        from bandit.stats import decision
        bandit.get_strategy("ThompsonSampling")
        metrics = (
            bandit.VariantMetrics("A", 1.0, 120, 10, 10.0),
            bandit.VariantMetrics("B", 1.0, 130, 20, 20.0),
        )
        rng = random.Random(0)
        for name in bandit.STRATEGY_NAMES:
            strategy = bandit.get_strategy(name, epsilon=0.1)
            strategy.allocation(metrics)
            strategy.choose(metrics, rng)
            bandit.select(strategy, metrics, rng, warmup=200)
            bandit.select(strategy, metrics, rng, warmup=0)
        decision(metrics).as_dict()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "scipy"))
        assert not loaded, loaded
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
