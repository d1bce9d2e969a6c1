"""The `ab-testing:*` strategy parameters, as SageMaker endpoint tags or config-file values.

The deployment stack writes these tags; registration reads them. A bad value is a
ConfigError naming the tag: guessing a default would run the wrong experiment silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from abtest.errors import ConfigError

STRATEGY_TAG = "ab-testing:strategy"
EPSILON_TAG = "ab-testing:epsilon"
WARMUP_TAG = "ab-testing:warmup"

STRATEGIES = ("WeightedSampling", "EpsilonGreedy", "UCB1", "ThompsonSampling")

DEFAULT_STRATEGY = "ThompsonSampling"
DEFAULT_EPSILON = 0.1
DEFAULT_WARMUP = 0


def parse_strategy(value: str, *, source: str = STRATEGY_TAG) -> str:
    strategy = value.strip() if isinstance(value, str) else value
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"{source}: unknown strategy {value!r} (expected one of {', '.join(STRATEGIES)})"
        )
    return strategy


def parse_epsilon(value: str | float, *, source: str = EPSILON_TAG) -> float:
    try:
        epsilon = float(value)
    except (TypeError, ValueError):
        epsilon = math.nan
    if isinstance(value, bool) or not 0.0 <= epsilon <= 1.0:  # NaN fails the range check too
        raise ConfigError(f"{source}: {value!r} is not a number between 0 and 1")
    return epsilon


def parse_warmup(value: str | int, *, source: str = WARMUP_TAG) -> int:
    try:
        warmup = int(value) if not isinstance(value, bool | float) else -1
    except (TypeError, ValueError):
        warmup = -1
    if warmup < 0:
        raise ConfigError(f"{source}: {value!r} is not a whole number >= 0")
    return warmup


def parse_strategy_params(tags: Mapping[str, str]) -> tuple[str, float, int]:
    """(strategy, epsilon, warmup) from the tags; absent tags take the documented defaults."""
    strategy = parse_strategy(tags[STRATEGY_TAG]) if STRATEGY_TAG in tags else DEFAULT_STRATEGY
    epsilon = parse_epsilon(tags[EPSILON_TAG]) if EPSILON_TAG in tags else DEFAULT_EPSILON
    warmup = parse_warmup(tags[WARMUP_TAG]) if WARMUP_TAG in tags else DEFAULT_WARMUP
    return strategy, epsilon, warmup
