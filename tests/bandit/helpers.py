"""Shared helpers of the bandit tests."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

from bandit import Strategy, VariantMetrics, get_strategy, strategy_parameters

PICKS = 20_000


def metrics(*rows: tuple) -> tuple[VariantMetrics, ...]:
    """metrics(("A", invocations, rewards), ...) with initial weight 1 and conversions = rewards."""
    return tuple(VariantMetrics(name, 1.0, n, int(r), float(r)) for name, n, r in rows)


def strategy_at(name: str, fraction: float) -> Strategy:
    """Strategy `name` with every declared parameter at `fraction` (in (0, 1)) of its range,
    so a test covers every registered strategy, parameters and all, without naming them."""
    params = {p.name: p.low + fraction * (p.high - p.low) for p in strategy_parameters(name)}
    return get_strategy(name, params)


def assert_frequencies_match(
    pick: Callable[[random.Random], str], allocation: dict[str, float], seed: int = 1
) -> None:
    """PICKS draws: every variant's frequency within 4 binomial standard errors of its
    allocation, and a variant with probability 0 never drawn."""
    rng = random.Random(seed)
    counts = Counter(pick(rng) for _ in range(PICKS))
    assert set(counts) <= set(allocation)
    for name, p in allocation.items():
        frequency = counts[name] / PICKS
        sigma = math.sqrt(p * (1.0 - p) / PICKS)
        assert abs(frequency - p) <= 4.0 * sigma, (name, frequency, p, sigma)
