"""The one list of strategies, looked up by the names the article and the endpoint config use.

A strategy is its module plus one entry here: names, parameters and their checks all come
from the class (`name`, `parameters`), and every configuration surface reads them from here.
"""

from __future__ import annotations

from collections.abc import Mapping

from bandit.epsilon_greedy import EpsilonGreedy
from bandit.metrics import BINARY, check_reward
from bandit.parameters import Parameter, check_parameters
from bandit.strategy import Strategy
from bandit.thompson import ThompsonSampling
from bandit.top_two import TopTwoThompson
from bandit.ucb1 import UCB1
from bandit.weighted import WeightedSampling

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (WeightedSampling, EpsilonGreedy, UCB1, ThompsonSampling, TopTwoThompson)
}
STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)
# A new endpoint's: it reaches a decision, which plain Thompson sampling rarely does
# (bench/decisions.py, README "How a winner is called").
DEFAULT_STRATEGY = TopTwoThompson.name


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under `name`; ValueError listing the valid names otherwise."""
    cls = STRATEGIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown strategy {name!r} (expected one of {', '.join(STRATEGY_NAMES)})")
    return cls


def strategy_parameters(name: str) -> tuple[Parameter, ...]:
    """The parameters strategy `name` declares (ValueError for an unknown name)."""
    return strategy_class(name).parameters


def check_params(
    name: str, params: Mapping[str, object] | None = None, *, reward: str = BINARY
) -> dict[str, float | int]:
    """Every parameter of strategy `name`: the given ones checked, the others defaulted (to
    their default for rewards of kind `reward`, which may differ by kind: see `Parameter`).

    ValueError for an unknown strategy; ParameterError (a ValueError naming the parameter)
    for an unknown parameter or a value out of its range.
    """
    cls = strategy_class(name)
    return check_parameters(cls.name, cls.parameters, params or {}, check_reward(reward))


def get_strategy(
    name: str, params: Mapping[str, object] | None = None, *, reward: str = BINARY
) -> Strategy:
    """A new strategy by its name, with `params` checked against its declared parameters,
    for rewards of kind `reward` (ValueError for an unknown kind)."""
    return strategy_class(name)(**check_params(name, params, reward=reward), reward=reward)
