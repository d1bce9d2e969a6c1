"""Bandit strategies and statistics for A/B tests of model variants.

Standard library only: importing this package (and bandit.stats) never imports numpy or
scipy. bandit.simulate, for benchmarks, does.
"""

from bandit.epsilon_greedy import EpsilonGreedy
from bandit.metrics import BINARY, CONTINUOUS, REWARD_KINDS, VariantMetrics
from bandit.parameters import Parameter, ParameterError
from bandit.registry import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    STRATEGY_NAMES,
    check_params,
    get_strategy,
    strategy_parameters,
)
from bandit.selection import Selection, deciding_strategy, select
from bandit.strategy import Strategy
from bandit.thompson import ThompsonSampling
from bandit.ucb1 import UCB1
from bandit.weighted import WeightedSampling

__all__ = [
    "BINARY",
    "CONTINUOUS",
    "DEFAULT_STRATEGY",
    "REWARD_KINDS",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "UCB1",
    "EpsilonGreedy",
    "Parameter",
    "ParameterError",
    "Selection",
    "Strategy",
    "ThompsonSampling",
    "VariantMetrics",
    "WeightedSampling",
    "check_params",
    "deciding_strategy",
    "get_strategy",
    "select",
    "strategy_parameters",
]
