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
from bandit.top_two import TopTwoThompson


def test_public_api_is_pinned():
    assert sorted(bandit.__all__) == sorted(
        [
            "VariantMetrics",
            "BINARY",
            "CONTINUOUS",
            "REWARD_KINDS",
            "Strategy",
            "WeightedSampling",
            "EpsilonGreedy",
            "UCB1",
            "ThompsonSampling",
            "get_strategy",
            "check_params",
            "strategy_parameters",
            "STRATEGIES",
            "STRATEGY_NAMES",
            "DEFAULT_STRATEGY",
            "Parameter",
            "ParameterError",
            "select",
            "Selection",
            "deciding_strategy",
        ]
    )
    for name in bandit.__all__:
        assert hasattr(bandit, name)


def test_the_articles_strategies_come_first_and_every_name_is_its_class_name():
    assert STRATEGY_NAMES[:4] == ("WeightedSampling", "EpsilonGreedy", "UCB1", "ThompsonSampling")
    assert all(bandit.STRATEGIES[name].name == name for name in STRATEGY_NAMES)
    # A new endpoint's strategy: the one that reaches a decision (bench/decisions.py).
    assert bandit.DEFAULT_STRATEGY == "TopTwoThompson"


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


def test_get_strategy_passes_the_declared_parameters():
    assert get_strategy("EpsilonGreedy", {"epsilon": 0.25}).epsilon == 0.25
    assert get_strategy("EpsilonGreedy").epsilon == 0.1
    assert get_strategy("TopTwoThompson", {"beta": 0.7}).params == {"beta": 0.7, "floor": 0.01}
    assert (
        repr(get_strategy("EpsilonGreedy", {"epsilon": 0.5, "floor": 0.1}))
        == "EpsilonGreedy(epsilon=0.5, floor=0.1)"
    )


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_declared_parameter_defaults_and_round_trips(name):
    declared = bandit.strategy_parameters(name)
    defaults = {p.name: p.default for p in declared}
    assert bandit.check_params(name) == defaults
    assert get_strategy(name).params == defaults
    assert get_strategy(name, defaults).params == defaults


@pytest.mark.parametrize("name", ["WeightedSampling", "UCB1", "ThompsonSampling", "TopTwoThompson"])
def test_a_parameter_the_strategy_does_not_declare_is_an_error_naming_it(name):
    with pytest.raises(bandit.ParameterError, match=f"epsilon: not a parameter of {name}") as info:
        get_strategy(name, {"epsilon": 0.1})
    assert info.value.parameter == "epsilon"


@pytest.mark.parametrize(
    ("name", "parameter", "value", "reason"),
    [
        ("EpsilonGreedy", "epsilon", -0.1, r"must be in \[0, 1\], got -0.1"),
        ("EpsilonGreedy", "epsilon", 1.5, r"must be in \[0, 1\]"),
        ("EpsilonGreedy", "epsilon", float("nan"), r"must be in \[0, 1\]"),
        ("EpsilonGreedy", "epsilon", True, "must be a number"),
        ("EpsilonGreedy", "epsilon", "0.2", "must be a number"),
        ("TopTwoThompson", "beta", 0.0, r"must be in \(0, 1\), got 0.0"),
        ("TopTwoThompson", "beta", 1, r"must be in \(0, 1\), got 1"),
    ],
)
def test_a_value_out_of_range_is_a_value_error_naming_the_parameter(name, parameter, value, reason):
    with pytest.raises(ValueError, match=f"^{parameter}: {reason}") as info:
        get_strategy(name, {parameter: value})
    assert info.value.parameter == parameter
    with pytest.raises(ValueError, match=reason):  # the constructor checks the same declaration
        bandit.STRATEGIES[name](**{parameter: value})


def test_bounds_are_allowed_where_the_range_is_closed():
    assert get_strategy("EpsilonGreedy", {"epsilon": 0}).epsilon == 0.0
    assert get_strategy("EpsilonGreedy", {"epsilon": 1}).epsilon == 1.0


def test_unknown_strategy_names_the_valid_choices():
    with pytest.raises(ValueError) as info:
        get_strategy("thompson")
    message = str(info.value)
    assert message.startswith("unknown strategy 'thompson' (expected one of ")
    assert "'thompson'" in message
    for name in STRATEGY_NAMES:
        assert name in message


def test_request_path_and_stats_import_neither_numpy_nor_scipy():
    script = textwrap.dedent(
        """
        import random, sys
        import bandit
        from bandit.stats import decision
        bandit.get_strategy("ThompsonSampling", {"floor": 0.0})
        metrics = (
            bandit.VariantMetrics("A", 1.0, 120, 10, 10.0),
            bandit.VariantMetrics("B", 1.0, 130, 20, 20.0),
        )
        rng = random.Random(0)
        for name in bandit.STRATEGY_NAMES:
            strategy = bandit.get_strategy(name)
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


def test_a_continuous_endpoint_gets_its_own_top_two_default_and_binary_keeps_0_9():
    # Declared once, on the parameter (BETA.by_reward): measured in bench/decisions.py.
    assert bandit.check_params("TopTwoThompson") == {"beta": 0.9, "floor": 0.01}
    assert bandit.check_params("TopTwoThompson", reward="continuous") == {
        "beta": 0.7,
        "floor": 0.01,
    }
    assert get_strategy("TopTwoThompson", reward="continuous").beta == 0.7
    assert get_strategy("TopTwoThompson").beta == 0.9
    assert TopTwoThompson(reward="continuous").beta == 0.7  # built directly, the same default
    # A value given is the value used, whatever the reward.
    assert get_strategy("TopTwoThompson", {"beta": 0.9}, reward="continuous").beta == 0.9
    # Parameters without a per-kind default are the same for both kinds.
    for name in STRATEGY_NAMES:
        if name != "TopTwoThompson":
            assert bandit.check_params(name, reward="continuous") == bandit.check_params(name)
    with pytest.raises(ValueError, match="reward must be one of binary, continuous"):
        bandit.check_params("TopTwoThompson", reward="revenue")
