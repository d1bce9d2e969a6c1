"""Bandit strategies and statistics for A/B tests of model variants.

Standard library only: importing this package (and bandit.stats) never imports numpy or
scipy. bandit.simulate, for benchmarks, does.
"""

from bandit.epsilon_greedy import EpsilonGreedy
from bandit.metrics import VariantMetrics
from bandit.registry import STRATEGY_NAMES, get_strategy
from bandit.selection import Selection, deciding_strategy, select
from bandit.strategy import Strategy
from bandit.thompson import ThompsonSampling
from bandit.ucb1 import UCB1
from bandit.weighted import WeightedSampling

__all__ = [
    "STRATEGY_NAMES",
    "UCB1",
    "EpsilonGreedy",
    "Selection",
    "Strategy",
    "ThompsonSampling",
    "VariantMetrics",
    "WeightedSampling",
    "deciding_strategy",
    "get_strategy",
    "select",
]
