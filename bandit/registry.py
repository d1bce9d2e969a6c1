"""Strategies looked up by the names the article and the endpoint config use."""

from __future__ import annotations

from typing import Any

from bandit.epsilon_greedy import EpsilonGreedy, check_epsilon
from bandit.strategy import Strategy
from bandit.thompson import ThompsonSampling
from bandit.ucb1 import UCB1
from bandit.weighted import WeightedSampling

_STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (WeightedSampling, EpsilonGreedy, UCB1, ThompsonSampling)
}
STRATEGY_NAMES: tuple[str, ...] = tuple(_STRATEGIES)


def get_strategy(name: str, **params: Any) -> Strategy:
    """A new strategy by its name. `epsilon` is validated (in [0, 1]) whatever the strategy,
    since callers pass the endpoint's setting to every one; other unused parameters are
    ignored."""
    epsilon = params.get("epsilon")
    if epsilon is not None:
        epsilon = check_epsilon(epsilon)
    cls = _STRATEGIES.get(name)
    if cls is None:
        raise ValueError(f"unknown strategy {name!r}; valid choices: {', '.join(STRATEGY_NAMES)}")
    if cls is EpsilonGreedy and epsilon is not None:
        return EpsilonGreedy(epsilon)
    return cls()
