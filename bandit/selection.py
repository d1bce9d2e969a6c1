"""The warm-up gate: which strategy actually chooses a new user's variant."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from bandit.metrics import VariantMetrics
from bandit.strategy import Strategy
from bandit.weighted import WeightedSampling

_WARMUP = WeightedSampling()


@dataclass(frozen=True, slots=True)
class Selection:
    """A pick as it is logged: the variant, the name of the strategy that chose it, and the
    probability that strategy gave it (the propensity)."""

    variant_name: str
    strategy: str
    propensity: float


def select(
    strategy: Strategy,
    metrics: Sequence[VariantMetrics],
    rng: random.Random,
    warmup: int = 0,
) -> Selection:
    """Choose with `strategy` once every variant has more than `warmup` invocations; before
    that with WeightedSampling on the initial weights (a bandit needs feedback first).
    With warmup=0 that means until every variant has been invoked at least once."""
    chooser = deciding_strategy(strategy, metrics, warmup)
    name, propensity = chooser._pick(metrics, rng)
    return Selection(name, chooser.name, propensity)


def deciding_strategy(
    strategy: Strategy, metrics: Sequence[VariantMetrics], warmup: int = 0
) -> Strategy:
    """The strategy that chooses for a new user now: `strategy`, or WeightedSampling in warm-up.

    Its allocation is what a new user would be assigned with, as `/stats` reports it.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup!r}")
    if any(m.invocation_count <= warmup for m in metrics):
        return _WARMUP
    return strategy
