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
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup!r}")
    chooser = strategy
    for m in metrics:
        if m.invocation_count <= warmup:
            chooser = _WARMUP
            break
    name, propensity = chooser._pick(metrics, rng)
    return Selection(name, chooser.name, propensity)
